"""Account command handlers: get → decide → apply, on the aggregates of one writer batch.

A handler first sweeps the account (expired holds and lots: facts that stand whatever the
command's fate), then calls `session.checkpoint()`, then decides. Any LedgerError raised after
the checkpoint must come before the first event of the decision; the writer checks that and
rolls the batch back if a handler ever breaks the rule.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from uuid import UUID

import msgspec

from ledger.accounts.account import Account
from ledger.accounts.commands import (
    AdjustBalance,
    CaptureHold,
    ConsumeCredits,
    ExpireCredits,
    ExpireDue,
    GetAccount,
    GetHold,
    GrantCredits,
    OpenAccount,
    PlaceHold,
    PurchaseCredits,
    RefundConsumption,
    ReleaseHold,
    ReverseCredits,
)
from ledger.accounts.consumptions import Consumption
from ledger.accounts.holds import HoldRecord
from ledger.accounts.lots import OVERDRAFT_TERMS, ReturnableDraw
from ledger.accounts.reversals import PaymentReversal
from ledger.accounts.views import (
    Entry,
    account_view,
    effective_account_view,
    effective_hold_view,
    entry_from_event,
    hold_view,
)
from ledger.checks import check_still_ahead
from ledger.commands import AccountCommand, Envelope
from ledger.errors import (
    AccountNotFoundError,
    ConsumptionNotFoundError,
    HoldNotActiveError,
    HoldNotFoundError,
    InvalidCommandError,
    PaymentAlreadyCreditedError,
    PaymentNotFoundError,
    RefundExceedsRefundableError,
    TenantNotFoundError,
)
from ledger.ids import (
    account_aggregate_id,
    aggregate_id,
    consumption_event_version,
    new_consumption_id,
    new_id,
)
from ledger.limits import AMOUNT_MAX, PRIORITY_DEFAULT
from ledger.outcome import Outcome
from ledger.pricing import handlers as pricing
from ledger.tenants.settings import TenantSettings
from ledger.topups import handlers as topups
from ledger.unit_of_work import UnitOfWork


def _settings(session: UnitOfWork, tenant_id: str) -> TenantSettings:
    tenant = session.tenant(tenant_id)
    if tenant is None:
        raise TenantNotFoundError(f"tenant {tenant_id} not found")
    return tenant.settings


def _entry(account: Account) -> tuple[Entry, tuple[UUID, int]]:
    """The entry of the account's last event, and that event's (id, version)."""
    event = account.pending_events[-1]
    assert isinstance(event, Account.Event | Account.Opened)
    return entry_from_event(event), (account.id, event.originator_version)


def _entry_outcome(account: Account) -> Outcome:
    value, ref = _entry(account)
    return Outcome(value=value, entry_ref=ref)


def _swept_account(
    envelope: Envelope[AccountCommand], session: UnitOfWork, now: datetime | None = None
) -> Account:
    """The command's account, with its holds and lots expired by `now` (the writer's clock
    unless given) ended first."""
    tenant_id, account_id = envelope.tenant_id, envelope.command.account_id
    account = session.get(Account, account_aggregate_id(tenant_id, account_id))
    if account is None:
        raise AccountNotFoundError(f"account {account_id} not found")
    session.add(account)
    for hold_id in account.expire_due(session.now if now is None else now):
        record = session.get(HoldRecord, aggregate_id(tenant_id, "hold", hold_id))
        assert record is not None, hold_id
        record.end("expired")
        session.add(record)
    session.checkpoint()
    return account


def _consumption_record(
    envelope: Envelope[RefundConsumption], session: UnitOfWork, account: Account
) -> Consumption:
    """The consumption's record: made from its account event on the first refund."""
    consumption_id = envelope.command.consumption_id
    record_id = aggregate_id(envelope.tenant_id, "consumption", consumption_id)
    record = session.get(Consumption, record_id)
    if record is None:
        version = consumption_event_version(consumption_id)
        event = None if version is None else session.account_event(account.id, version)
        if (
            isinstance(event, Account.CreditsConsumed | Account.HoldCaptured)
            and event.consumption_id == consumption_id
        ):
            terms = event.drawn_lots or {}
            draws = []
            for draw in event.draws:
                lot = terms.get(draw.lot_id, OVERDRAFT_TERMS)
                draws.append(
                    ReturnableDraw(
                        lot_id=draw.lot_id,
                        amount=draw.amount,
                        source=lot.source,
                        expires_at=lot.expires_at,
                        priority=lot.priority,
                    )
                )
            record = Consumption._create(
                Consumption.Recorded,
                id=record_id,
                tenant_id=account.tenant_id,
                account_id=account.account_id,
                consumption_id=event.consumption_id,
                amount=-event.amount,
                operation=event.operation,
                draws=draws,
            )  # added to the session only once the refund is decided (refund_consumption)
    if record is None or record.account_id != envelope.command.account_id:
        raise ConsumptionNotFoundError(f"consumption {consumption_id} not found")
    return record


def open_account(envelope: Envelope[OpenAccount], session: UnitOfWork) -> Outcome:
    command = envelope.command
    settings = _settings(session, envelope.tenant_id)
    account_uuid = account_aggregate_id(envelope.tenant_id, command.account_id)
    existing = session.get(Account, account_uuid)
    if existing is not None:
        ref = (account_uuid, existing.version)
        return Outcome(value=account_view(existing), created=False, entry_ref=ref)
    account = Account.open(
        account_uuid, envelope.tenant_id, command.account_id, command.metadata, by=envelope.by
    )
    bonus = command.signup_bonus if command.signup_bonus is not None else settings.signup_bonus
    if bonus > 0:
        days = settings.signup_bonus_expires_in_days
        account.grant(
            lot_id=new_id(),
            amount=bonus,
            reason="signup_bonus",
            expires_at=session.now + timedelta(days=days) if days else None,
            priority=PRIORITY_DEFAULT,
            metadata={},
            by=envelope.by,
        )
    session.add(account)
    return Outcome(value=account_view(account), entry_ref=(account_uuid, 1))


def grant_credits(envelope: Envelope[GrantCredits], session: UnitOfWork) -> Outcome:
    command = envelope.command
    check_still_ahead(command.expires_at, session.now)  # not a replay (execute looked)
    account = _swept_account(envelope, session)
    account.grant(
        lot_id=new_id(),
        amount=command.amount,
        reason=command.reason,
        expires_at=command.expires_at,
        priority=PRIORITY_DEFAULT if command.priority is None else command.priority,
        metadata=command.metadata,
        by=envelope.by,
    )
    return _entry_outcome(account)


def purchase_amount(command: PurchaseCredits, settings: TenantSettings) -> int:
    if command.amount is not None:
        return command.amount
    rate = settings.purchase_rates.get(command.price.currency)
    if rate is None:
        raise InvalidCommandError(
            f"no purchase rate for {command.price.currency}: give an amount or set purchase_rates"
        )
    credits = (Decimal(command.price.amount) * Decimal(rate)).to_integral_value(ROUND_FLOOR)
    if not 1 <= credits <= AMOUNT_MAX:
        raise InvalidCommandError(f"the price buys {credits} credits, outside 1..{AMOUNT_MAX}")
    return int(credits)


def purchase_credits(envelope: Envelope[PurchaseCredits], session: UnitOfWork) -> Outcome:
    """Credits by the purchase's quote, else its `amount`, else the price book's rule in
    effect for its currency, else the tenant's purchase_rates (docs/adr/0008)."""
    command = envelope.command
    settings = _settings(session, envelope.tenant_id)
    if not command.quote_id and command.amount is None:
        priced = pricing.priced_credits(envelope, session)
        amount = priced if priced is not None else purchase_amount(command, settings)
    paid = session.result(aggregate_id(envelope.tenant_id, "payment", command.payment_ref))
    if paid is not None:
        outcome = session.replay(paid)
        assert isinstance(outcome.value, Entry)
        if outcome.value.account_id != command.account_id:
            raise PaymentAlreadyCreditedError(
                f"payment_ref {command.payment_ref!r} was credited to another account"
            )
        return outcome
    quote = None
    if command.quote_id:
        amount, quote = pricing.quoted_credits(envelope, session)
    elif command.amount is not None:
        amount = command.amount
    check_still_ahead(command.expires_at, session.now)
    account = _swept_account(envelope, session)
    account.purchase(
        lot_id=new_id(),
        amount=amount,
        price=msgspec.to_builtins(command.price),
        payment_ref=command.payment_ref,
        expires_at=command.expires_at,
        priority=PRIORITY_DEFAULT,
        metadata=command.metadata,
        by=envelope.by,
    )
    outcome = _entry_outcome(account)
    session.remember("payment", command.payment_ref, envelope, outcome)
    if quote is not None:
        quote.redeem(payment_ref=command.payment_ref, account_id=command.account_id)
        session.add(quote)
    topups.close_open_topup(session, envelope.tenant_id, command.account_id, command.payment_ref)
    return outcome


def reverse_credits(envelope: Envelope[ReverseCredits], session: UnitOfWork) -> Outcome:
    """Takes back (part of) a purchase, never more than it credited in all."""
    command = envelope.command
    settings = _settings(session, envelope.tenant_id)
    paid = session.result(aggregate_id(envelope.tenant_id, "payment", command.payment_ref))
    purchase = None if paid is None else session.replay(paid).value
    if not isinstance(purchase, Entry) or purchase.account_id != command.account_id:
        raise PaymentNotFoundError(
            f"no purchase of account {command.account_id} has payment_ref {command.payment_ref!r}"
        )
    account = _swept_account(envelope, session)
    record_id = aggregate_id(envelope.tenant_id, "reversal", command.payment_ref)
    record = session.get(PaymentReversal, record_id)
    if record is None:
        assert purchase.lot_id is not None
        record = PaymentReversal._create(
            PaymentReversal.Created,
            id=record_id,
            tenant_id=envelope.tenant_id,
            account_id=command.account_id,
            payment_ref=command.payment_ref,
            lot_id=purchase.lot_id,
            purchased=purchase.amount,
        )
    if command.share is not None:
        target = (Decimal(command.share) * record.purchased).to_integral_value(ROUND_CEILING)
        amount = int(target) - record.reversed
    else:
        amount = record.left if command.amount is None else command.amount
    if amount <= 0 or record.left == 0:
        raise RefundExceedsRefundableError(
            f"payment_ref {command.payment_ref!r} has nothing more to reverse"
        )
    if amount > record.left:
        raise RefundExceedsRefundableError(
            f"reversal of {amount} exceeds the {record.left} of the purchase not yet reversed"
        )
    account.reverse(
        payment_ref=command.payment_ref,
        lot_id=record.lot_id,
        amount=amount,
        reason=command.reason,
        policy=settings.reversal,
        by=envelope.by,
    )
    record.record(amount)
    session.add(record)
    return _entry_outcome(account)


def consume_credits(envelope: Envelope[ConsumeCredits], session: UnitOfWork) -> Outcome:
    command = envelope.command
    settings = _settings(session, envelope.tenant_id)
    account = _swept_account(envelope, session)
    account.consume(
        consumption_id=new_consumption_id(account.version + 1),
        amount=command.amount,
        operation=command.operation,
        resource=command.resource,
        user_id=command.user_id,
        metadata=command.metadata,
        overdraft_limit=settings.overdraft_limit,
        by=envelope.by,
    )
    return _entry_outcome(account)


def refund_consumption(envelope: Envelope[RefundConsumption], session: UnitOfWork) -> Outcome:
    command = envelope.command
    account = _swept_account(envelope, session)
    record = _consumption_record(envelope, session, account)
    amount = record.refundable if command.amount is None else command.amount
    if amount == 0:
        raise RefundExceedsRefundableError(
            f"consumption {command.consumption_id} has nothing left to refund"
        )
    if amount > record.refundable:
        raise RefundExceedsRefundableError(
            f"refund of {amount} exceeds the {record.refundable} still refundable"
        )
    account.refund(
        consumption_id=command.consumption_id,
        operation=record.operation,
        amount=amount,
        reason=command.reason,
        returnable=record.returnable,
        refund_lot_id=new_id(),
        now=session.now,
        by=envelope.by,
    )
    record.refund(amount)
    session.add(record)
    return _entry_outcome(account)


def place_hold(envelope: Envelope[PlaceHold], session: UnitOfWork) -> Outcome:
    command = envelope.command
    settings = _settings(session, envelope.tenant_id)
    account = _swept_account(envelope, session)
    hold_id = new_id()
    expires_at = command.expires_at(session.now)
    account.place_hold(
        hold_id=hold_id,
        amount=command.amount,
        operation=command.operation,
        resource=command.resource,
        user_id=command.user_id,
        expires_at=expires_at,
        metadata=command.metadata,
        overdraft_limit=settings.overdraft_limit,
        by=envelope.by,
    )
    _, ref = _entry(account)
    record = HoldRecord._create(
        HoldRecord.Placed,
        id=aggregate_id(envelope.tenant_id, "hold", hold_id),
        tenant_id=envelope.tenant_id,
        account_id=command.account_id,
        hold_id=hold_id,
        amount=command.amount,
        operation=command.operation,
        expires_at=expires_at,
        resource=command.resource,
        user_id=command.user_id,
        metadata=command.metadata,
    )
    session.add(record)
    return Outcome(value=hold_view(record), entry_ref=ref)


def _active_hold_record(
    envelope: Envelope[CaptureHold] | Envelope[ReleaseHold], session: UnitOfWork
) -> HoldRecord:
    command = envelope.command
    record = session.get(HoldRecord, aggregate_id(envelope.tenant_id, "hold", command.hold_id))
    if record is None or record.account_id != command.account_id:
        raise HoldNotFoundError(f"hold {command.hold_id} not found")
    if record.status != "active":
        raise HoldNotActiveError(f"hold {command.hold_id} is {record.status}")
    return record


def capture_hold(envelope: Envelope[CaptureHold], session: UnitOfWork) -> Outcome:
    command = envelope.command
    account = _swept_account(envelope, session)
    record = _active_hold_record(envelope, session)
    amount = record.amount if command.amount is None else command.amount
    if amount > record.amount:
        raise HoldNotActiveError(f"capture of {amount} exceeds the {record.amount} held")
    usage = record.capture_usage(
        operation=command.operation,
        resource=command.resource,
        user_id=command.user_id,
        metadata=command.metadata,
    )
    account.capture_hold(
        hold_id=command.hold_id,
        amount=amount,
        consumption_id=new_consumption_id(account.version + 1),
        usage=usage,
        by=envelope.by,
    )
    outcome = _entry_outcome(account)
    record.end("captured", amount)
    session.add(record)
    account.expire_due(session.now)  # credits the hold kept from expiring lots now expire
    return outcome


def release_hold(envelope: Envelope[ReleaseHold], session: UnitOfWork) -> Outcome:
    account = _swept_account(envelope, session)
    record = _active_hold_record(envelope, session)
    account.release_hold(hold_id=envelope.command.hold_id, by=envelope.by)
    outcome = _entry_outcome(account)
    outcome.created = False
    record.end("released")
    session.add(record)
    account.expire_due(session.now)
    return outcome


def adjust_balance(envelope: Envelope[AdjustBalance], session: UnitOfWork) -> Outcome:
    command = envelope.command
    settings = _settings(session, envelope.tenant_id)
    account = _swept_account(envelope, session)
    account.adjust(
        amount=command.amount,
        reason=command.reason,
        lot_id=new_id(),
        overdraft_limit=settings.overdraft_limit,
        by=envelope.by,
    )
    return _entry_outcome(account)


def expire_credits(envelope: Envelope[ExpireCredits], session: UnitOfWork) -> Outcome:
    account = _swept_account(envelope, session)
    return Outcome(value=account_view(account), created=False)


def expire_due(envelope: Envelope[ExpireDue], session: UnitOfWork) -> Outcome:
    """What the scheduler sends for a due item: the sweep, at the item's due time should the
    writer's clock not have reached it (the scheduler's time decides, docs/adr/0007). With
    nothing left to do (a lot used up before its expiry) it records nothing."""
    account = _swept_account(envelope, session, max(session.now, envelope.command.due_at))
    ref = (account.id, account.version) if account.pending_events else None
    return Outcome(value=account_view(account), created=False, entry_ref=ref)


def get_account(envelope: Envelope[GetAccount], session: UnitOfWork) -> Outcome:
    """The account as it stands at the writer's time: what has expired by then is shown
    expired, though only the sweep (the scheduler's, or the next command's) records it."""
    account_id = envelope.command.account_id
    account_uuid = account_aggregate_id(envelope.tenant_id, account_id)
    account = session.get(Account, account_uuid, fresh=True)
    if account is None:
        raise AccountNotFoundError(f"account {account_id} not found")
    return Outcome(
        value=effective_account_view(account, session.now),
        created=False,
        entry_ref=(account.id, account.version),
    )


def get_hold(envelope: Envelope[GetHold], session: UnitOfWork) -> Outcome:
    """The hold as it stands at the writer's time: an active hold past its expiry is shown
    `expired` before the sweep records it."""
    command = envelope.command
    hold_uuid = aggregate_id(envelope.tenant_id, "hold", command.hold_id)
    record = session.get(HoldRecord, hold_uuid, fresh=True)
    if record is None or record.account_id != command.account_id:
        raise HoldNotFoundError(f"hold {command.hold_id} not found")
    return Outcome(value=effective_hold_view(record, session.now), created=False)

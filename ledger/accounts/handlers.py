"""Command handlers: get → decide → apply, on the aggregates of one writer batch.

A handler first sweeps the account (expired holds and lots: facts that stand whatever the
command's fate), then calls `session.checkpoint()`, then decides. Any LedgerError raised after
the checkpoint must come before the first event of the decision; the writer checks that and
rolls the batch back if a handler ever breaks the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Protocol, TypeVar
from uuid import UUID

import msgspec

from ledger import commands as c
from ledger.accounts.account import Account
from ledger.accounts.records import Consumption, HoldRecord, StoredResult
from ledger.accounts.views import (
    RESULT_NAMES,
    RESULT_TYPES,
    AccountView,
    ApiKeyView,
    Entry,
    account_view,
    api_key_view,
    entry_from_event,
    hold_view,
    tenant_view,
)
from ledger.errors import (
    AccountNotFoundError,
    ConsumptionNotFoundError,
    HoldNotActiveError,
    HoldNotFoundError,
    IdempotencyKeyReusedError,
    InvalidCommandError,
    PaymentAlreadyCreditedError,
    RefundExceedsRefundableError,
    TenantExistsError,
    TenantNotFoundError,
)
from ledger.ids import (
    account_aggregate_id,
    aggregate_id,
    api_key_aggregate_id,
    consumption_event_version,
    new_consumption_id,
    new_id,
    tenant_aggregate_id,
)
from ledger.limits import AMOUNT_MAX, PRIORITY_DEFAULT
from ledger.tenants.tenant import SCOPES, ApiKeyIndex, Tenant, hash_api_key, new_api_key

T = TypeVar("T")

_result_encoder = msgspec.json.Encoder()


class Session(Protocol):
    """The writer's unit of work for one batch (see writer.py)."""

    now: datetime

    def get(self, cls: type[T], aggregate_id: UUID, *, fresh: bool = False) -> T | None:
        """The aggregate, or None. `fresh`: also what other writers committed since caching."""

    def add(self, aggregate: Any) -> None: ...
    def result(self, result_id: UUID) -> StoredResult | None:
        """The answer stored under an idempotency key or payment_ref, or None."""

    def add_result(self, result: StoredResult) -> None: ...
    def account_event(self, account_uuid: UUID, version: int) -> Any:
        """The account's stored event of that version, or None."""

    def tenant(self, tenant_id: str) -> Tenant | None: ...
    def checkpoint(self) -> None: ...


@dataclass
class Outcome:
    """A command's answer: the value, whether it created something, and the account event it
    stands for (whose position the writer fills in after the commit)."""

    value: msgspec.Struct
    created: bool = True
    replayed: bool = False
    entry_ref: tuple[UUID, int] | None = None


def execute(command: c.Command, session: Session) -> Outcome:
    session.checkpoint()  # nothing of this command before here
    key = command.idempotency_key
    if key is None:
        return dispatch(command, session)
    record_id = aggregate_id(command.tenant_id, "idempotency", key)
    stored = session.result(record_id)
    if stored is not None:
        if stored.fingerprint != c.fingerprint(command):
            raise IdempotencyKeyReusedError(
                f"idempotency key {key!r} was used with a different request"
            )
        return replay(stored)
    outcome = dispatch(command, session)
    session.add_result(store_result(command.tenant_id, "idempotency", key, command, outcome))
    return outcome


def store_result(
    tenant_id: str, kind: str, key: str, command: c.Command, outcome: Outcome
) -> StoredResult:
    value = outcome.value
    if isinstance(value, ApiKeyView) or getattr(value, "api_key", None) is not None:
        value = _without_secret(value)  # a key's secret is never written down
    return StoredResult(
        id=aggregate_id(tenant_id, kind, key),
        fingerprint=c.fingerprint(command),
        result_type=RESULT_NAMES[type(value)],
        result=_result_encoder.encode(value),
        created=outcome.created,
        entry_ref=outcome.entry_ref,
    )


def _without_secret(value: Any) -> Any:
    if isinstance(value, ApiKeyView):
        return msgspec.structs.replace(value, key=None)
    return msgspec.structs.replace(value, api_key=_without_secret(value.api_key))


def replay(stored: StoredResult) -> Outcome:
    value = msgspec.json.decode(stored.result, type=RESULT_TYPES[stored.result_type])
    return Outcome(value=value, created=stored.created, replayed=True, entry_ref=stored.entry_ref)


def dispatch(command: c.Command, session: Session) -> Outcome:
    handler = HANDLERS[type(command)]
    outcome: Outcome = handler(command, session)
    return outcome


# --------------------------------------------------------------------- tenants


def create_tenant(command: c.CreateTenant, session: Session) -> Outcome:
    tenant_uuid = tenant_aggregate_id(command.tenant_id)
    if session.get(Tenant, tenant_uuid) is not None:
        raise TenantExistsError(f"tenant {command.tenant_id} exists")
    tenant = Tenant._create(
        Tenant.Created,
        id=tenant_uuid,
        tenant_id=command.tenant_id,
        name=command.name,
        settings=msgspec.to_builtins(command.settings),
    )
    key_view = _add_key(session, tenant, name="first key", scopes=list(SCOPES), expires_at=None)
    session.add(tenant)
    return Outcome(value=tenant_view(tenant, key_view))


def _add_key(
    session: Session, tenant: Tenant, *, name: str, scopes: list[str], expires_at: datetime | None
) -> ApiKeyView:
    key = new_api_key()
    key_id = new_id()
    tenant.add_api_key(key_id=key_id, key=key, name=name, scopes=scopes, expires_at=expires_at)
    session.add(
        ApiKeyIndex._create(
            ApiKeyIndex.Created,
            id=api_key_aggregate_id(hash_api_key(key)),
            tenant_id=tenant.tenant_id,
            key_id=key_id,
        )
    )
    return api_key_view(tenant.api_keys[key_id], key)


def _existing_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_aggregate_id(tenant_id))
    if tenant is None:
        raise TenantNotFoundError(f"tenant {tenant_id} not found")
    return tenant


def update_tenant(command: c.UpdateTenant, session: Session) -> Outcome:
    tenant = _existing_tenant(session, command.tenant_id)
    settings = dict(tenant.settings)
    if command.settings is not None:
        patch = msgspec.to_builtins(command.settings)  # UNSET fields are left out
        settings.update(patch)
    tenant.update(name=command.name or tenant.name, settings=settings)
    session.add(tenant)
    return Outcome(value=tenant_view(tenant), created=False)


def create_api_key(command: c.CreateApiKey, session: Session) -> Outcome:
    c.check_still_ahead(command.expires_at, session.now)  # not a replay (execute looked)
    tenant = _existing_tenant(session, command.tenant_id)
    view = _add_key(
        session, tenant, name=command.name, scopes=command.scopes, expires_at=command.expires_at
    )
    session.add(tenant)
    return Outcome(value=view)


def revoke_api_key(command: c.RevokeApiKey, session: Session) -> Outcome:
    tenant = _existing_tenant(session, command.tenant_id)
    tenant.revoke_api_key(command.key_id)
    session.add(tenant)
    return Outcome(value=api_key_view(tenant.api_keys[command.key_id]), created=False)


# -------------------------------------------------------------------- accounts


def _settings(session: Session, tenant_id: str) -> dict[str, Any]:
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


def _swept_account(command: c.AccountCommand, session: Session) -> Account:
    """The command's account, with its expired holds and lots ended first."""
    account = session.get(Account, account_aggregate_id(command.tenant_id, command.account_id))
    if account is None:
        raise AccountNotFoundError(f"account {command.account_id} not found")
    session.add(account)
    for hold_id in account.expire_due(session.now):
        record = session.get(HoldRecord, aggregate_id(command.tenant_id, "hold", hold_id))
        assert record is not None, hold_id
        record.end("expired")
        session.add(record)
    session.checkpoint()
    return account


def _consumption_record(
    command: c.RefundConsumption, session: Session, account: Account
) -> Consumption:
    """The consumption's record: made from its account event on the first refund."""
    record_id = aggregate_id(command.tenant_id, "consumption", command.consumption_id)
    record = session.get(Consumption, record_id)
    if record is None:
        version = consumption_event_version(command.consumption_id)
        event = None if version is None else session.account_event(account.id, version)
        if (
            isinstance(event, Account.CreditsConsumed | Account.HoldCaptured)
            and event.consumption_id == command.consumption_id
        ):
            overdraft = {"source": "overdraft", "expires_at": None, "priority": 0}
            lots = event.drawn_lots or {}
            record = Consumption._create(
                Consumption.Recorded,
                id=record_id,
                tenant_id=account.tenant_id,
                account_id=account.account_id,
                consumption_id=event.consumption_id,
                amount=-event.amount,
                operation=event.operation,
                draws=[{**draw, **lots.get(draw["lot_id"], overdraft)} for draw in event.draws],
            )  # added to the session only once the refund is decided (refund_consumption)
    if record is None or record.account_id != command.account_id:
        raise ConsumptionNotFoundError(f"consumption {command.consumption_id} not found")
    return record


def open_account(command: c.OpenAccount, session: Session) -> Outcome:
    settings = _settings(session, command.tenant_id)
    account_uuid = account_aggregate_id(command.tenant_id, command.account_id)
    existing = session.get(Account, account_uuid)
    if existing is not None:
        ref = (account_uuid, existing.version)
        return Outcome(value=account_view(existing), created=False, entry_ref=ref)
    account = Account.open(account_uuid, command.tenant_id, command.account_id, command.metadata)
    bonus = command.signup_bonus if command.signup_bonus is not None else settings["signup_bonus"]
    if bonus > 0:
        days = settings.get("signup_bonus_expires_in_days")
        account.grant(
            lot_id=new_id(),
            amount=bonus,
            reason="signup_bonus",
            expires_at=session.now + timedelta(days=days) if days else None,
            priority=PRIORITY_DEFAULT,
            metadata={},
        )
    session.add(account)
    return Outcome(value=account_view(account), entry_ref=(account_uuid, 1))


def grant_credits(command: c.GrantCredits, session: Session) -> Outcome:
    c.check_still_ahead(command.expires_at, session.now)  # not a replay (execute looked)
    account = _swept_account(command, session)
    account.grant(
        lot_id=new_id(),
        amount=command.amount,
        reason=command.reason,
        expires_at=command.expires_at,
        priority=PRIORITY_DEFAULT if command.priority is None else command.priority,
        metadata=command.metadata,
    )
    return _entry_outcome(account)


def purchase_amount(command: c.PurchaseCredits, settings: dict[str, Any]) -> int:
    if command.amount is not None:
        return command.amount
    rate = settings.get("purchase_rates", {}).get(command.price.currency)
    if rate is None:
        raise InvalidCommandError(
            f"no purchase rate for {command.price.currency}: give an amount or set purchase_rates"
        )
    credits = (Decimal(command.price.amount) * Decimal(rate)).to_integral_value(ROUND_FLOOR)
    if not 1 <= credits <= AMOUNT_MAX:
        raise InvalidCommandError(f"the price buys {credits} credits, outside 1..{AMOUNT_MAX}")
    return int(credits)


def purchase_credits(command: c.PurchaseCredits, session: Session) -> Outcome:
    amount = purchase_amount(command, _settings(session, command.tenant_id))
    payment_id = aggregate_id(command.tenant_id, "payment", command.payment_ref)
    paid = session.result(payment_id)
    if paid is not None:
        if replay(paid).value.account_id != command.account_id:  # type: ignore[attr-defined]
            raise PaymentAlreadyCreditedError(
                f"payment_ref {command.payment_ref!r} was credited to another account"
            )
        return replay(paid)
    c.check_still_ahead(command.expires_at, session.now)
    account = _swept_account(command, session)
    account.purchase(
        lot_id=new_id(),
        amount=amount,
        price=msgspec.to_builtins(command.price),
        payment_ref=command.payment_ref,
        expires_at=command.expires_at,
        priority=PRIORITY_DEFAULT,
        metadata=command.metadata,
    )
    outcome = _entry_outcome(account)
    session.add_result(
        store_result(command.tenant_id, "payment", command.payment_ref, command, outcome)
    )
    return outcome


def consume_credits(command: c.ConsumeCredits, session: Session) -> Outcome:
    settings = _settings(session, command.tenant_id)
    account = _swept_account(command, session)
    account.consume(
        consumption_id=new_consumption_id(account.version + 1),
        amount=command.amount,
        operation=command.operation,
        resource=command.resource,
        user_id=command.user_id,
        metadata=command.metadata,
        overdraft_limit=settings["overdraft_limit"],
    )
    return _entry_outcome(account)


def refund_consumption(command: c.RefundConsumption, session: Session) -> Outcome:
    account = _swept_account(command, session)
    record = _consumption_record(command, session, account)
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
    )
    record.refund(amount)
    session.add(record)
    return _entry_outcome(account)


def place_hold(command: c.PlaceHold, session: Session) -> Outcome:
    settings = _settings(session, command.tenant_id)
    account = _swept_account(command, session)
    hold_id = new_id()
    expires_at = c.hold_expiry(command, session.now)
    account.place_hold(
        hold_id=hold_id,
        amount=command.amount,
        operation=command.operation,
        expires_at=expires_at,
        metadata=command.metadata,
        overdraft_limit=settings["overdraft_limit"],
    )
    _, ref = _entry(account)
    record = HoldRecord._create(
        HoldRecord.Placed,
        id=aggregate_id(command.tenant_id, "hold", hold_id),
        tenant_id=command.tenant_id,
        account_id=command.account_id,
        hold_id=hold_id,
        amount=command.amount,
        operation=command.operation,
        expires_at=expires_at,
    )
    session.add(record)
    return Outcome(value=hold_view(record), entry_ref=ref)


def _active_hold_record(command: c.CaptureHold | c.ReleaseHold, session: Session) -> HoldRecord:
    record = session.get(HoldRecord, aggregate_id(command.tenant_id, "hold", command.hold_id))
    if record is None or record.account_id != command.account_id:
        raise HoldNotFoundError(f"hold {command.hold_id} not found")
    if record.status != "active":
        raise HoldNotActiveError(f"hold {command.hold_id} is {record.status}")
    return record


def capture_hold(command: c.CaptureHold, session: Session) -> Outcome:
    account = _swept_account(command, session)
    record = _active_hold_record(command, session)
    amount = record.amount if command.amount is None else command.amount
    if amount > record.amount:
        raise HoldNotActiveError(f"capture of {amount} exceeds the {record.amount} held")
    account.capture_hold(
        hold_id=command.hold_id,
        amount=amount,
        consumption_id=new_consumption_id(account.version + 1),
    )
    outcome = _entry_outcome(account)
    record.end("captured", amount)
    session.add(record)
    account.expire_due(session.now)  # credits the hold kept from expiring lots now expire
    return outcome


def release_hold(command: c.ReleaseHold, session: Session) -> Outcome:
    account = _swept_account(command, session)
    record = _active_hold_record(command, session)
    account.release_hold(hold_id=command.hold_id)
    outcome = _entry_outcome(account)
    outcome.created = False
    record.end("released")
    session.add(record)
    account.expire_due(session.now)
    return outcome


def adjust_balance(command: c.AdjustBalance, session: Session) -> Outcome:
    settings = _settings(session, command.tenant_id)
    account = _swept_account(command, session)
    account.adjust(
        amount=command.amount,
        reason=command.reason,
        lot_id=new_id(),
        overdraft_limit=settings["overdraft_limit"],
    )
    return _entry_outcome(account)


def expire_credits(command: c.ExpireCredits, session: Session) -> Outcome:
    account = _swept_account(command, session)
    value: AccountView = account_view(account)
    return Outcome(value=value, created=False)


# ------------------------------------------------------------------- queries


def get_account(command: c.GetAccount, session: Session) -> Outcome:
    account_uuid = account_aggregate_id(command.tenant_id, command.account_id)
    account = session.get(Account, account_uuid, fresh=True)
    if account is None:
        raise AccountNotFoundError(f"account {command.account_id} not found")
    return Outcome(
        value=account_view(account), created=False, entry_ref=(account.id, account.version)
    )


def get_hold(command: c.GetHold, session: Session) -> Outcome:
    hold_uuid = aggregate_id(command.tenant_id, "hold", command.hold_id)
    record = session.get(HoldRecord, hold_uuid, fresh=True)
    if record is None or record.account_id != command.account_id:
        raise HoldNotFoundError(f"hold {command.hold_id} not found")
    return Outcome(value=hold_view(record), created=False)


def get_tenant(command: c.GetTenant, session: Session) -> Outcome:
    tenant = session.tenant(command.tenant_id)
    if tenant is None:
        raise TenantNotFoundError(f"tenant {command.tenant_id} not found")
    return Outcome(value=tenant_view(tenant), created=False)


HANDLERS: dict[type[c.Command], Any] = {
    c.GetAccount: get_account,
    c.GetHold: get_hold,
    c.GetTenant: get_tenant,
    c.CreateTenant: create_tenant,
    c.UpdateTenant: update_tenant,
    c.CreateApiKey: create_api_key,
    c.RevokeApiKey: revoke_api_key,
    c.OpenAccount: open_account,
    c.GrantCredits: grant_credits,
    c.PurchaseCredits: purchase_credits,
    c.ConsumeCredits: consume_credits,
    c.RefundConsumption: refund_consumption,
    c.PlaceHold: place_hold,
    c.CaptureHold: capture_hold,
    c.ReleaseHold: release_hold,
    c.AdjustBalance: adjust_balance,
    c.ExpireCredits: expire_credits,
}

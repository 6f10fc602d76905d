"""Auto top-up handlers: policies set and read; a crossing asks for a top-up (one per
crossing, within the monthly cap), a due retry asks again with the same topup_id or abandons
it; a purchase closes what is open (`close_open_topup`, called by the purchase handler)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.accounts.account import Account
from ledger.commands import Envelope
from ledger.errors import AccountNotFoundError, TenantNotFoundError
from ledger.ids import account_aggregate_id, aggregate_id, new_id
from ledger.outcome import Outcome
from ledger.topups.commands import (
    GetAccountTopUp,
    GetTenantTopUp,
    RequestTopUp,
    RetryTopUp,
    SetAccountTopUp,
    SetTenantTopUp,
)
from ledger.topups.policy import TopUpPolicy, TopUpSettings
from ledger.topups.record import TOPUP_ATTEMPTS_MAX, TopUpRecord, month_of
from ledger.topups.views import TopUpOutcome, TopUpPolicyView, account_topup_view
from ledger.unit_of_work import UnitOfWork


def policy_id(tenant_id: str, account_id: str) -> UUID:
    return aggregate_id(tenant_id, "topup-policy", account_id)


def record_id(tenant_id: str, account_id: str) -> UUID:
    return aggregate_id(tenant_id, "topup", account_id)


def effective_policy(
    session: UnitOfWork, tenant_id: str, account_id: str
) -> tuple[TopUpSettings | None, str | None]:
    own = session.get(TopUpPolicy, policy_id(tenant_id, account_id))
    if own is not None:
        return own.settings, "account"
    default = session.get(TopUpPolicy, policy_id(tenant_id, ""))
    return (default.settings, "tenant") if default is not None else (None, None)


def _set(session: UnitOfWork, tenant_id: str, account_id: str, settings: TopUpSettings) -> None:
    policy = session.get(TopUpPolicy, policy_id(tenant_id, account_id))
    if policy is None:
        policy = TopUpPolicy._create(
            TopUpPolicy.Created,
            id=policy_id(tenant_id, account_id),
            tenant_id=tenant_id,
            account_id=account_id,
            settings=settings,
        )
    else:
        policy.change(settings)
    session.add(policy)


def _account(session: UnitOfWork, tenant_id: str, account_id: str) -> Account:
    account = session.get(Account, account_aggregate_id(tenant_id, account_id))
    if account is None:
        raise AccountNotFoundError(f"account {account_id} not found")
    return account


def set_account_topup(envelope: Envelope[SetAccountTopUp], session: UnitOfWork) -> Outcome:
    command = envelope.command
    _account(session, envelope.tenant_id, command.account_id)
    _set(session, envelope.tenant_id, command.account_id, command.settings())
    record = session.get(TopUpRecord, record_id(envelope.tenant_id, command.account_id))
    view = account_topup_view(
        command.account_id, command.settings(), "account", record, session.now
    )
    return Outcome(value=view, created=False)


def set_tenant_topup(envelope: Envelope[SetTenantTopUp], session: UnitOfWork) -> Outcome:
    if session.tenant(envelope.tenant_id) is None:
        raise TenantNotFoundError(f"tenant {envelope.tenant_id} not found")
    settings = envelope.command.settings()
    _set(session, envelope.tenant_id, "", settings)
    return Outcome(value=TopUpPolicyView(policy=settings, source="tenant"), created=False)


def get_account_topup(envelope: Envelope[GetAccountTopUp], session: UnitOfWork) -> Outcome:
    account_id = envelope.command.account_id
    _account(session, envelope.tenant_id, account_id)
    settings, source = effective_policy(session, envelope.tenant_id, account_id)
    record = session.get(TopUpRecord, record_id(envelope.tenant_id, account_id), fresh=True)
    view = account_topup_view(account_id, settings, source, record, session.now)
    return Outcome(value=view, created=False)


def get_tenant_topup(envelope: Envelope[GetTenantTopUp], session: UnitOfWork) -> Outcome:
    policy = session.get(TopUpPolicy, policy_id(envelope.tenant_id, ""), fresh=True)
    view = TopUpPolicyView(policy=None if policy is None else policy.settings, source="tenant")
    return Outcome(value=view, created=False)


def _record(session: UnitOfWork, tenant_id: str, account_id: str) -> TopUpRecord:
    record = session.get(TopUpRecord, record_id(tenant_id, account_id))
    if record is None:
        record = TopUpRecord._create(
            TopUpRecord.Created,
            id=record_id(tenant_id, account_id),
            tenant_id=tenant_id,
            account_id=account_id,
        )
    return record


def _ask(account: Account, record: TopUpRecord, session: UnitOfWork, **open_: Any) -> None:
    record.request(now=session.now, **open_)
    account.request_topup(
        metadata={
            "topup_id": open_["topup_id"],
            "credits": open_["credits"],
            "attempt": open_["attempt"],
            "attempts_max": TOPUP_ATTEMPTS_MAX,
        },
    )  # by the ledger itself (the top-up watcher, the scheduler): no key, no principal
    session.add(record)
    session.add(account)


def request_topup(envelope: Envelope[RequestTopUp], session: UnitOfWork) -> Outcome:
    tenant_id, account_id = envelope.tenant_id, envelope.command.account_id
    account = _account(session, tenant_id, account_id)

    def outcome(status: str, **fields: Any) -> Outcome:
        return Outcome(value=TopUpOutcome(account_id=account_id, status=status, **fields))

    settings, _ = effective_policy(session, tenant_id, account_id)
    if settings is None or not settings.enabled:
        return outcome("no_policy")
    if account.available >= settings.below:
        return outcome("not_below")
    record = _record(session, tenant_id, account_id)
    if record.open is not None:
        return outcome("open", topup_id=record.open.topup_id, attempt=record.open.attempt)
    if record.requested_in(month_of(session.now)) >= settings.monthly_max:
        return outcome("capped")
    credits = settings.credits_for(account.available)
    topup_id = "tu_" + new_id().replace("-", "")
    _ask(account, record, session, topup_id=topup_id, credits=credits, attempt=1)
    return outcome("requested", topup_id=topup_id, credits=credits, attempt=1)


def retry_topup(envelope: Envelope[RetryTopUp], session: UnitOfWork) -> Outcome:
    command = envelope.command
    tenant_id, account_id = envelope.tenant_id, command.account_id
    account = _account(session, tenant_id, account_id)
    record = session.get(TopUpRecord, record_id(tenant_id, account_id))
    open_ = None if record is None else record.open
    if record is None or open_ is None or open_.topup_id != command.topup_id:
        return Outcome(value=TopUpOutcome(account_id=account_id, status="closed"))
    if command.attempt > TOPUP_ATTEMPTS_MAX:
        record.abandon()
        session.add(record)
        return Outcome(
            value=TopUpOutcome(account_id=account_id, status="abandoned", topup_id=open_.topup_id)
        )
    if open_.attempt >= command.attempt:
        return Outcome(
            value=TopUpOutcome(
                account_id=account_id, status="open", topup_id=open_.topup_id, attempt=open_.attempt
            )
        )
    _ask(
        account,
        record,
        session,
        topup_id=open_.topup_id,
        credits=open_.credits,
        attempt=command.attempt,
    )
    return Outcome(
        value=TopUpOutcome(
            account_id=account_id,
            status="requested",
            topup_id=open_.topup_id,
            credits=open_.credits,
            attempt=command.attempt,
        )
    )


def close_open_topup(
    session: UnitOfWork, tenant_id: str, account_id: str, payment_ref: str
) -> None:
    """The purchase that follows a request closes it."""
    record = session.get(TopUpRecord, record_id(tenant_id, account_id))
    if record is not None and record.open is not None:
        record.close(payment_ref)
        session.add(record)

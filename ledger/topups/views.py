"""What auto top-up commands answer."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ledger.topups.policy import TopUpSettings
from ledger.topups.record import OpenTopUp, TopUpRecord, month_of


class TopUpPolicyView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A policy: `source` says whose it is ("account" or "tenant"); none is set: null."""

    policy: TopUpSettings | None
    source: str | None = None


class AccountTopUpView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    account_id: str
    policy: TopUpSettings | None
    requested_this_month: int
    source: str | None = None
    open: OpenTopUp | None = None
    last: dict[str, str] | None = None


class TopUpOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a request or retry did: requested, open (one is open already), not_below, capped,
    no_policy, abandoned, closed (nothing open any more)."""

    account_id: str
    status: str
    topup_id: str | None = None
    credits: int | None = None
    attempt: int | None = None


def account_topup_view(
    account_id: str,
    settings: TopUpSettings | None,
    source: str | None,
    record: TopUpRecord | None,
    now: datetime,
) -> AccountTopUpView:
    return AccountTopUpView(
        account_id=account_id,
        policy=settings,
        source=source,
        open=None if record is None else record.open,
        requested_this_month=0 if record is None else record.requested_in(month_of(now)),
        last=None if record is None else record.last,
    )

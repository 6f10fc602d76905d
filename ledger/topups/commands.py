"""The auto top-up commands: set a policy (an account's or the tenant's default), read them,
and the two the ledger sends itself: request one on a crossing (the topups role), retry one
once due (the scheduler)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from msgspec import Meta

from ledger.checks import check_text
from ledger.commands import AccountCommand, Command
from ledger.errors import InvalidCommandError
from ledger.limits import AMOUNT_MAX
from ledger.topups.policy import MONTHLY_MAX_LIMIT, Enabled, TopUpSettings
from ledger.topups.record import TOPUP_ATTEMPTS_MAX

Below = Annotated[
    int, Meta(ge=-AMOUNT_MAX, le=AMOUNT_MAX, description="Ask when available falls below this")
]
Credits = Annotated[int, Meta(ge=1, le=AMOUNT_MAX)]
MonthlyMax = Annotated[
    int, Meta(ge=1, le=MONTHLY_MAX_LIMIT, description="Top-ups per calendar month (UTC), at most")
]


Target = Annotated[Credits | None, Meta(description="Top up to this available balance")]
Amount = Annotated[Credits | None, Meta(description="Or buy this many credits each time")]


def _settings(command: SetAccountTopUp | SetTenantTopUp) -> TopUpSettings:
    return TopUpSettings(
        below=command.below,
        target=command.target,
        amount=command.amount,
        monthly_max=command.monthly_max,
        enabled=command.enabled,
    )


class SetAccountTopUp(AccountCommand, tag="set_account_topup", frozen=True, kw_only=True):
    """Sets the account's own auto top-up policy (it takes precedence over the tenant's)."""

    below: Below
    target: Target = None
    amount: Amount = None
    monthly_max: MonthlyMax = 1
    enabled: Enabled = True

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"account_id", "below", "target", "amount", "monthly_max", "enabled"}
    )

    def settings(self) -> TopUpSettings:
        return _settings(self)

    def check(self, now: datetime) -> None:
        self.settings().check()


class SetTenantTopUp(Command, tag="set_tenant_topup", frozen=True, kw_only=True):
    """Sets the tenant's default auto top-up policy, for accounts without their own."""

    below: Below
    target: Target = None
    amount: Amount = None
    monthly_max: MonthlyMax = 1
    enabled: Enabled = True

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"below", "target", "amount", "monthly_max", "enabled"}
    )

    def settings(self) -> TopUpSettings:
        return _settings(self)

    def check(self, now: datetime) -> None:
        self.settings().check()


class GetAccountTopUp(AccountCommand, tag="get_account_topup", frozen=True, kw_only=True):
    """A read through the writer: the policy that applies to the account, and its state."""


class GetTenantTopUp(Command, tag="get_tenant_topup", frozen=True, kw_only=True):
    """A read through the writer: the tenant's default policy."""


class RequestTopUp(AccountCommand, tag="request_topup", frozen=True, kw_only=True):
    """Sent by the ledger when an entry takes `available` below the policy's `below` (its
    idempotency key names that entry's position)."""

    position: Annotated[int, Meta(ge=1)]

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"account_id", "position"})


class RetryTopUp(AccountCommand, tag="retry_topup", frozen=True, kw_only=True):
    """Sent by the scheduler when an open top-up's retry is due (ledger/topups/schedules.py),
    under the due item's key: asks again with the same topup_id, or abandons it after
    TOPUP_ATTEMPTS_MAX requests."""

    topup_id: Annotated[str, Meta(min_length=1, max_length=64)]
    attempt: Annotated[int, Meta(ge=2, le=TOPUP_ATTEMPTS_MAX + 1)]

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"account_id", "topup_id", "attempt"})

    def check(self, now: datetime) -> None:
        check_text(self.topup_id, "topup_id")
        if not 2 <= self.attempt <= TOPUP_ATTEMPTS_MAX + 1:
            raise InvalidCommandError(f"attempt must be from 2 to {TOPUP_ATTEMPTS_MAX + 1}")

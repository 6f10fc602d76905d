"""Auto top-up policies: per account, or the tenant's default for accounts without one.

A policy `{below, target | amount, monthly_max}` asks for a top-up when an entry takes the
account's `available` from at or above `below` to below it: for `target - available` credits,
or a fixed `amount`; at most `monthly_max` top-ups are requested per calendar month (UTC).
Each policy is a small aggregate, id uuid5(tenant, "topup-policy", account_id or "").
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec
from eventsourcing.domain import Aggregate
from msgspec import Meta

from ledger.errors import InvalidCommandError
from ledger.limits import AMOUNT_MAX
from ledger.topics import stored_as

# Top-ups one policy may request in a calendar month: a bound on runaway charges.
MONTHLY_MAX_LIMIT = 1_000

Enabled = Annotated[
    bool,
    Meta(
        description=(
            "false: the policy stays but asks for nothing (an account's own still stands "
            "before the tenant's default)"
        )
    ),
]


class TopUpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    below: Annotated[int, Meta(ge=-AMOUNT_MAX, le=AMOUNT_MAX, description="Ask below this")]
    target: Annotated[int, Meta(ge=1, le=AMOUNT_MAX, description="Top up to this")] | None = None
    amount: Annotated[int, Meta(ge=1, le=AMOUNT_MAX, description="Or buy this many")] | None = None
    monthly_max: Annotated[
        int,
        Meta(ge=1, le=MONTHLY_MAX_LIMIT, description="Top-ups per calendar month (UTC), at most"),
    ] = 1
    enabled: Enabled = True

    def check(self) -> None:
        if (self.target is None) == (self.amount is None):
            raise InvalidCommandError("give target or amount, not both")
        if not -AMOUNT_MAX <= self.below <= AMOUNT_MAX:
            raise InvalidCommandError(f"below must be from -{AMOUNT_MAX} to {AMOUNT_MAX}")
        if self.target is not None and not self.below < self.target <= AMOUNT_MAX:
            raise InvalidCommandError("target must be above below")
        if self.amount is not None and not 1 <= self.amount <= AMOUNT_MAX:
            raise InvalidCommandError(f"amount must be from 1 to {AMOUNT_MAX}")
        if not 1 <= self.monthly_max <= MONTHLY_MAX_LIMIT:
            raise InvalidCommandError(f"monthly_max must be from 1 to {MONTHLY_MAX_LIMIT}")

    def credits_for(self, available: int) -> int:
        if self.amount is not None:
            return self.amount
        assert self.target is not None
        return max(1, self.target - available)


@stored_as("ledger.topups")
class TopUpPolicy(Aggregate):
    typed_state: ClassVar[dict[str, Any]] = {"settings": TopUpSettings}

    class Created(Aggregate.Created):
        tenant_id: str
        account_id: str  # "" for the tenant's default
        settings: TopUpSettings

    class Changed(Aggregate.Event):
        settings: TopUpSettings

        def apply(self, aggregate: Any) -> None:
            aggregate.settings = self.settings

    def __init__(self, tenant_id: str, account_id: str, settings: TopUpSettings, **_: Any) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.settings = settings

    def change(self, settings: TopUpSettings) -> None:
        if settings != self.settings:
            self.trigger_event(self.Changed, settings=settings)

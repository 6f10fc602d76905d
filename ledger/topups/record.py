"""An account's top-up record: the request open now (if any), how many were requested in each
calendar month, and how the last one ended. Its id is uuid5(tenant, "topup", account_id).

One request is open at a time: a crossing while one is open asks nothing more (one
`topup.requested` per crossing); the purchase that follows closes it; retries repeat it with
the same `topup_id` (the idempotency key the payment side reuses, so a retry never charges
twice) until TOPUP_ATTEMPTS_MAX, then it is abandoned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec
from eventsourcing.domain import Aggregate

from ledger.topics import stored_as

# Requests of one top-up (the first and its retries) before it is abandoned.
TOPUP_ATTEMPTS_MAX = 4
# Months of counts a record keeps (this one and the one before): bounds its state.
MONTHS_KEPT = 2


class OpenTopUp(msgspec.Struct, frozen=True, kw_only=True):
    topup_id: str
    credits: int
    attempt: int
    requested_at: datetime


def month_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


@stored_as("ledger.topups")
class TopUpRecord(Aggregate):
    typed_state: ClassVar[dict[str, Any]] = {"open": OpenTopUp | None}

    class Created(Aggregate.Created):
        tenant_id: str
        account_id: str

    class Requested(Aggregate.Event):
        topup_id: str
        credits: int
        attempt: int
        month: str

        def apply(self, aggregate: Any) -> None:
            aggregate.open = OpenTopUp(
                topup_id=self.topup_id,
                credits=self.credits,
                attempt=self.attempt,
                requested_at=self.timestamp,
            )
            if self.attempt == 1:
                counts = {m: n for m, n in aggregate.months.items() if m >= _previous(self.month)}
                counts[self.month] = counts.get(self.month, 0) + 1
                aggregate.months = counts

    class Closed(Aggregate.Event):
        topup_id: str
        payment_ref: str

        def apply(self, aggregate: Any) -> None:
            aggregate.open = None
            aggregate.last = {"topup_id": self.topup_id, "status": "closed", "by": self.payment_ref}

    class Abandoned(Aggregate.Event):
        topup_id: str
        attempts: int

        def apply(self, aggregate: Any) -> None:
            aggregate.open = None
            aggregate.last = {"topup_id": self.topup_id, "status": "abandoned"}

    def __init__(self, tenant_id: str, account_id: str, **_: Any) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.open: OpenTopUp | None = None
        self.months: dict[str, int] = {}
        self.last: dict[str, str] | None = None

    def requested_in(self, month: str) -> int:
        return self.months.get(month, 0)

    def request(self, *, topup_id: str, credits: int, attempt: int, now: datetime) -> None:
        self.trigger_event(
            self.Requested, topup_id=topup_id, credits=credits, attempt=attempt, month=month_of(now)
        )

    def close(self, payment_ref: str) -> None:
        assert self.open is not None
        self.trigger_event(self.Closed, topup_id=self.open.topup_id, payment_ref=payment_ref)

    def abandon(self) -> None:
        assert self.open is not None
        self.trigger_event(self.Abandoned, topup_id=self.open.topup_id, attempts=self.open.attempt)


def _previous(month: str) -> str:
    year, number = int(month[:4]), int(month[5:])
    year, number = (year - 1, 12) if number == 1 else (year, number - 1)
    return f"{year:04d}-{number:02d}"

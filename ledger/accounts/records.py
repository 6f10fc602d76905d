"""Small aggregates that remember one thing each, with deterministic ids (ids.aggregate_id).

They keep the Account's state bounded: what must be remembered per refunded consumption or per
hold lives here, saved in the same transaction as the account's event. Because
their ids are derived from (tenant, kind, key), two writers creating the same one conflict on
the event store's unique (originator_id, version) and only one commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import Aggregate

from ledger.errors import RefundExceedsRefundableError
from ledger.store.recorder import StoredRow
from ledger.topics import stored_as


@stored_as("ledger.records")
class Consumption(Aggregate):
    """A consumption (or a hold's capture) that may later be refunded."""

    class Recorded(Aggregate.Created):
        tenant_id: str
        account_id: str
        consumption_id: str
        amount: int
        operation: str
        draws: list[dict[str, Any]]  # {"lot_id", "amount", "expires_at", "priority", "source"}

    class Refunded(Aggregate.Event):
        amount: int

        def apply(self, aggregate: Any) -> None:
            aggregate.refunded += self.amount
            left = self.amount
            while left > 0:
                last = aggregate.returnable[-1]
                take = min(left, last["amount"])
                last["amount"] -= take
                left -= take
                if last["amount"] == 0:
                    aggregate.returnable.pop()

    def __init__(
        self,
        tenant_id: str,
        account_id: str,
        consumption_id: str,
        amount: int,
        operation: str,
        draws: list[dict[str, Any]],
        **_: Any,
    ) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.consumption_id = consumption_id
        self.amount = amount
        self.operation = operation
        self.refunded = 0
        self.returnable = [dict(draw) for draw in draws]

    @property
    def refundable(self) -> int:
        return self.amount - self.refunded

    def refund(self, amount: int) -> None:
        if amount > self.refundable:
            raise RefundExceedsRefundableError(
                f"refund of {amount} exceeds the {self.refundable} still refundable "
                f"of consumption {self.consumption_id}"
            )
        self.trigger_event(self.Refunded, amount=amount)


@stored_as("ledger.records")
class HoldRecord(Aggregate):
    """A hold's life: active, then captured, released or expired."""

    class Placed(Aggregate.Created):
        tenant_id: str
        account_id: str
        hold_id: str
        amount: int
        operation: str
        expires_at: datetime

    class Ended(Aggregate.Event):
        status: str
        captured: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = self.status
            aggregate.captured = self.captured

    def __init__(
        self,
        tenant_id: str,
        account_id: str,
        hold_id: str,
        amount: int,
        operation: str,
        expires_at: datetime,
        **_: Any,
    ) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.hold_id = hold_id
        self.amount = amount
        self.operation = operation
        self.expires_at = expires_at
        self.status = "active"
        self.captured = 0

    def end(self, status: str, captured: int = 0) -> None:
        assert self.status == "active", self.status
        self.trigger_event(self.Ended, status=status, captured=captured)


class StoredResult(msgspec.Struct, frozen=True, kw_only=True):
    """A command's answer kept for as long as the ledger: per idempotency key or payment_ref.

    Not an event: a row of `ledger_results`, written in the same statement as the batch's
    events (ledger/recorder.py), so it commits with them or not at all, and its primary key
    makes a key or payment_ref usable once across every writer (ADR 0002). `fingerprint`
    identifies the request; `result` is the answer's JSON without its position, which
    `entry_ref` (the account event's id and version) finds again on a replay.
    """

    id: UUID
    fingerprint: str
    result_type: str
    result: bytes
    created: bool
    entry_ref: tuple[UUID, int] | None

    def to_row(self) -> StoredRow:
        ref = self.entry_ref
        return StoredRow(
            self.id,
            self.fingerprint,
            self.result_type,
            self.result,
            self.created,
            ref[0] if ref else None,
            ref[1] if ref else None,
        )

    @classmethod
    def from_row(cls, row: StoredRow) -> StoredResult:
        ref = None
        if row.entry_id is not None and row.entry_version is not None:
            ref = (row.entry_id, row.entry_version)
        return cls(
            id=row.id,
            fingerprint=row.fingerprint,
            result_type=row.result_type,
            result=bytes(row.result),
            created=row.created,
            entry_ref=ref,
        )

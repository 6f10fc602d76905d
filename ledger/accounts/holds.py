"""The HoldRecord aggregate: a hold's life, active, then captured, released or expired.

A small aggregate with a deterministic id (ids.aggregate_id(tenant, "hold", hold_id)), saved
with the account's event that places or ends the hold: `GET .../holds/{hold_id}` reads it long
after the Account has forgotten the hold, and two writers ending one hold at once conflict on
the event store's unique (originator_id, version): only one commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from ledger.topics import stored_as

HOLD_STATUSES = ("active", "captured", "released", "expired")


@stored_as("ledger.records")
class HoldRecord(Aggregate):
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
        assert status in HOLD_STATUSES, status
        self.trigger_event(self.Ended, status=status, captured=captured)

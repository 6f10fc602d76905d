"""The HoldRecord aggregate: a hold's life, active, then captured, released or expired.

A small aggregate with a deterministic id (ids.aggregate_id(tenant, "hold", hold_id)), saved
with the account's event that places or ends the hold: `GET .../holds/{hold_id}` reads it long
after the Account has forgotten the hold, and two writers ending one hold at once conflict on
the event store's unique (originator_id, version): only one commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec
from eventsourcing.domain import Aggregate

from ledger.checks import check_metadata
from ledger.errors import InvalidCommandError
from ledger.topics import stored_as

HOLD_STATUSES = ("active", "captured", "released", "expired")


class CaptureUsage(msgspec.Struct, frozen=True, kw_only=True):
    """What a capture's credits paid for, as its entry (and usage) says."""

    operation: str
    resource: str | None
    user_id: str | None
    metadata: dict[str, Any]


@stored_as("ledger.records")
class HoldRecord(Aggregate):
    class Placed(Aggregate.Created):
        tenant_id: str
        account_id: str
        hold_id: str
        amount: int
        operation: str
        expires_at: datetime
        # What its capture's entry carries besides the operation. Version 1 (before issue
        # 14) had none: a hold placed then captures without them.
        resource: str | None
        user_id: str | None
        metadata: dict[str, Any]
        class_version: ClassVar[int] = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["resource"] = None
            state["user_id"] = None
            state["metadata"] = {}

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
        resource: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.hold_id = hold_id
        self.amount = amount
        self.operation = operation
        self.expires_at = expires_at
        self.resource = resource
        self.user_id = user_id
        self.metadata = metadata or {}
        self.status = "active"
        self.captured = 0

    def capture_usage(
        self,
        *,
        operation: str | None,
        resource: str | None,
        user_id: str | None,
        metadata: dict[str, Any],
    ) -> CaptureUsage:
        """The hold's operation, resource, user_id and metadata, with a capture's own: each of
        the first three it gives replaces the hold's; its metadata's keys are added to the
        hold's, replacing those of the same name. The result must keep to the metadata limits
        (InvalidCommandError otherwise)."""
        merged = {**self.metadata, **metadata} if metadata else self.metadata
        if metadata and self.metadata:
            try:
                check_metadata(merged)
            except InvalidCommandError as error:
                raise InvalidCommandError(
                    f"the hold's metadata with the capture's: {error.detail}"
                ) from None
        return CaptureUsage(
            operation=self.operation if operation is None else operation,
            resource=self.resource if resource is None else resource,
            user_id=self.user_id if user_id is None else user_id,
            metadata=merged,
        )

    def end(self, status: str, captured: int = 0) -> None:
        assert self.status == "active", self.status
        assert status in HOLD_STATUSES, status
        self.trigger_event(self.Ended, status=status, captured=captured)

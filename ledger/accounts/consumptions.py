"""The Consumption aggregate: a consumption (or a hold's capture) that is being refunded.

A small aggregate with a deterministic id (ids.aggregate_id(tenant, "consumption", id)), made
from the account's consume event on its first refund and saved with the refund's event: what
must be remembered per refunded consumption lives here, so the Account's state stays bounded,
and two writers refunding the same consumption at once conflict on the event store's unique
(originator_id, version): only one commits (ADR 0002).
"""

from __future__ import annotations

from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

from ledger.accounts.lots import ReturnableDraw
from ledger.errors import RefundExceedsRefundableError
from ledger.topics import stored_as


@stored_as("ledger.records")
class Consumption(Aggregate):
    """What of a consumption may still be refunded, and to which lots."""

    typed_state: ClassVar[dict[str, Any]] = {"returnable": list[ReturnableDraw]}

    class Recorded(Aggregate.Created):
        tenant_id: str
        account_id: str
        consumption_id: str
        amount: int
        operation: str
        draws: list[ReturnableDraw]

    class Refunded(Aggregate.Event):
        amount: int

        def apply(self, aggregate: Any) -> None:
            aggregate.refunded += self.amount
            left = self.amount
            while left > 0:
                last = aggregate.returnable[-1]
                take = min(left, last.amount)
                last.amount -= take
                left -= take
                if last.amount == 0:
                    aggregate.returnable.pop()

    def __init__(
        self,
        tenant_id: str,
        account_id: str,
        consumption_id: str,
        amount: int,
        operation: str,
        draws: list[ReturnableDraw],
        **_: Any,
    ) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.consumption_id = consumption_id
        self.amount = amount
        self.operation = operation
        self.refunded = 0
        # Copies: the event's draws stay as they were recorded.
        self.returnable = [
            ReturnableDraw(
                lot_id=d.lot_id,
                amount=d.amount,
                source=d.source,
                expires_at=d.expires_at,
                priority=d.priority,
            )
            for d in draws
        ]

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

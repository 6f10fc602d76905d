"""The record of a purchase's reversals: what it credited and how much of that has been
taken back (or written off), so a payment is never reversed past what it bought, however many
refund and dispute events arrive. Its id is uuid5(tenant, "reversal", payment_ref)."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from ledger.topics import stored_as


@stored_as("ledger.reversal")
class PaymentReversal(Aggregate):
    class Created(Aggregate.Created):
        tenant_id: str
        account_id: str
        payment_ref: str
        lot_id: str
        purchased: int

    class Reversed(Aggregate.Event):
        amount: int

        def apply(self, aggregate: Any) -> None:
            aggregate.reversed += self.amount

    def __init__(
        self,
        tenant_id: str,
        account_id: str,
        payment_ref: str,
        lot_id: str,
        purchased: int,
        **_: Any,
    ) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.payment_ref = payment_ref
        self.lot_id = lot_id
        self.purchased = purchased
        self.reversed = 0

    @property
    def left(self) -> int:
        return self.purchased - self.reversed

    def record(self, amount: int) -> None:
        assert 0 < amount <= self.left, (amount, self.left)
        self.trigger_event(self.Reversed, amount=amount)

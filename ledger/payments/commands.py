"""The payments area's command: find the purchase a payment_ref credited (the account a
provider's refund or dispute must reverse)."""

from __future__ import annotations

from datetime import datetime

from ledger.checks import check_payment_ref
from ledger.commands import Command
from ledger.fields import PaymentRef


class GetPayment(Command, tag="get_payment", frozen=True, kw_only=True):
    """A read through the writer: the purchase entry a payment_ref was credited with."""

    payment_ref: PaymentRef

    def check(self, now: datetime) -> None:
        check_payment_ref(self.payment_ref)

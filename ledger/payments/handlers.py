"""The payments area's handler."""

from __future__ import annotations

from ledger.accounts.views import Entry
from ledger.commands import Envelope
from ledger.errors import PaymentNotFoundError
from ledger.ids import aggregate_id
from ledger.outcome import Outcome
from ledger.payments.commands import GetPayment
from ledger.unit_of_work import UnitOfWork


def get_payment(envelope: Envelope[GetPayment], session: UnitOfWork) -> Outcome:
    ref = envelope.command.payment_ref
    paid = session.result(aggregate_id(envelope.tenant_id, "payment", ref))
    entry = None if paid is None else session.replay(paid).value
    if not isinstance(entry, Entry):
        raise PaymentNotFoundError(f"no purchase was credited with payment_ref {ref!r}")
    return Outcome(value=entry, created=False)

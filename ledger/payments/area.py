"""The payments area: what payment providers' events need of the ledger beyond the account
commands (ledger/payments/stripe_events.py turns a Stripe event into those)."""

from __future__ import annotations

from ledger.accounts.views import Entry
from ledger.payments import commands as c
from ledger.payments import handlers as h
from ledger.registry import Area, CommandSpec

AREA = Area(
    name="payments",
    views={},
    commands=[CommandSpec(c.GetPayment, h.get_payment, Entry, query=True)],
)

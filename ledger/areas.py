"""The product areas of the ledger: a new area is a folder and one line here."""

from __future__ import annotations

from ledger.accounts.area import AREA as ACCOUNTS
from ledger.payments.area import AREA as PAYMENTS
from ledger.pricing.area import AREA as PRICING
from ledger.registry import Registry
from ledger.tenants.area import AREA as TENANTS
from ledger.topups.area import AREA as TOPUPS

REGISTRY = Registry([TENANTS, ACCOUNTS, PRICING, PAYMENTS, TOPUPS])

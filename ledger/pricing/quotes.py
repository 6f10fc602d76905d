"""The Quote aggregate: a price and the credits it buys, held until `expires_at`, redeemable
by one purchase. Its id is uuid5(tenant, "quote", quote_id): one small aggregate per quote, so
two purchases naming it can never both commit (ADR 0002).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from ledger.topics import stored_as

# How long a quote holds by default, and at most (docs/api.md, Quotes).
QUOTE_EXPIRES_IN_S_DEFAULT = 900
QUOTE_EXPIRES_IN_S_MAX = 86_400


@stored_as("ledger.pricing")
class Quote(Aggregate):
    class Created(Aggregate.Created):
        tenant_id: str
        quote_id: str
        credits: int
        price: dict[str, str]  # {"amount": "9.99", "currency": "USD"}
        rule_version: int
        expires_at: datetime
        account_id: str | None

    class Redeemed(Aggregate.Event):
        payment_ref: str
        account_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.redeemed_by = self.payment_ref
            aggregate.redeemed_account = self.account_id

    def __init__(
        self,
        tenant_id: str,
        quote_id: str,
        credits: int,
        price: dict[str, str],
        rule_version: int,
        expires_at: datetime,
        account_id: str | None,
        **_: Any,
    ) -> None:
        self.tenant_id = tenant_id
        self.quote_id = quote_id
        self.credits = credits
        self.price = price
        self.rule_version = rule_version
        self.expires_at = expires_at
        self.account_id = account_id
        self.redeemed_by: str | None = None
        self.redeemed_account: str | None = None

    def redeem(self, *, payment_ref: str, account_id: str) -> None:
        assert self.redeemed_by is None, self.quote_id  # the caller checked
        self.trigger_event(self.Redeemed, payment_ref=payment_ref, account_id=account_id)

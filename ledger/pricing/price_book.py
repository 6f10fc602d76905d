"""The PriceBook aggregate: a tenant's price rules, one immutable version per change.

Each version has an `effective_from`; the version in effect at a time is the one with the
latest `effective_from` at or before it (of two at the same time, the later version). A
version is never changed or removed: the history is the record of what every quote and
purchase was priced by. Its id is uuid5(tenant, "price-book", "").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec
from eventsourcing.domain import Aggregate

from ledger.errors import LimitExceededError
from ledger.pricing.rules import PriceRule
from ledger.topics import stored_as

# Versions one tenant's price book keeps: a change a week for twenty years. The book is one
# aggregate, so this bounds its state.
PRICE_BOOK_VERSIONS_MAX = 1_000


class PriceBookVersion(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    effective_from: datetime
    published_at: datetime
    rules: list[PriceRule]

    def rule(self, currency: str) -> PriceRule | None:
        return next((rule for rule in self.rules if rule.currency == currency), None)


@stored_as("ledger.pricing")
class PriceBook(Aggregate):
    typed_state: ClassVar[dict[str, Any]] = {"versions": list[PriceBookVersion]}

    class Created(Aggregate.Created):
        tenant_id: str

    class Published(Aggregate.Event):
        number: int
        effective_from: datetime
        rules: list[PriceRule]

        def apply(self, aggregate: Any) -> None:
            aggregate.versions.append(
                PriceBookVersion(
                    version=self.number,
                    effective_from=self.effective_from,
                    published_at=self.timestamp,
                    rules=self.rules,
                )
            )

    def __init__(self, tenant_id: str, **_: Any) -> None:
        self.tenant_id = tenant_id
        self.versions: list[PriceBookVersion] = []

    def publish(self, *, effective_from: datetime, rules: list[PriceRule]) -> PriceBookVersion:
        if len(self.versions) >= PRICE_BOOK_VERSIONS_MAX:
            raise LimitExceededError(
                f"a price book keeps at most {PRICE_BOOK_VERSIONS_MAX} versions"
            )
        self.trigger_event(
            self.Published,
            number=len(self.versions) + 1,
            effective_from=effective_from,
            rules=rules,
        )
        return self.versions[-1]

    def in_effect(self, at: datetime) -> PriceBookVersion | None:
        current = [v for v in self.versions if v.effective_from <= at]
        return max(current, key=lambda v: (v.effective_from, v.version), default=None)

    def scheduled(self, at: datetime) -> list[PriceBookVersion]:
        return sorted(
            (v for v in self.versions if v.effective_from > at),
            key=lambda v: (v.effective_from, v.version),
        )

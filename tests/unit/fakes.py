"""An in-memory ledger: the real handlers on a dict instead of PostgreSQL. A fake, not a mock."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from ledger.areas import REGISTRY
from ledger.commands import Envelope, validate
from ledger.ids import tenant_aggregate_id
from ledger.outcome import Outcome
from ledger.store.stored_results import StoredResult
from ledger.tenants.tenant import Tenant
from ledger.writer.answers import Answers

T = TypeVar("T")

START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ANSWERS = Answers(REGISTRY)


class InMemorySession:
    def __init__(
        self,
        store: dict[UUID, Any],
        stored_results: dict[UUID, StoredResult],
        events: list[Any],
        now: datetime,
    ) -> None:
        self.store = store
        self.events = events
        self.stored_results = stored_results
        self.now = now
        self.touched: dict[UUID, Any] = {}
        self.results: dict[UUID, StoredResult] = {}

    def get(self, cls: type[T], aggregate_id: UUID, *, fresh: bool = False) -> T | None:
        if aggregate_id not in self.touched:
            if aggregate_id not in self.store:
                return None
            self.touched[aggregate_id] = copy.deepcopy(self.store[aggregate_id])
        aggregate = self.touched[aggregate_id]
        return aggregate if isinstance(aggregate, cls) else None

    def add(self, aggregate: Any) -> None:
        self.touched.setdefault(aggregate.id, aggregate)

    def result(self, result_id: UUID) -> StoredResult | None:
        return self.results.get(result_id) or self.stored_results.get(result_id)

    def remember(self, kind: str, key: str, envelope: Envelope[Any], outcome: Outcome) -> None:
        result = ANSWERS.stored(kind, key, envelope, outcome)
        self.results[result.id] = result

    def replay(self, stored: StoredResult) -> Outcome:
        return ANSWERS.replay(stored)

    def account_event(self, account_uuid: UUID, version: int) -> Any:
        return next(
            (
                e
                for e in self.events
                if e.originator_id == account_uuid and e.originator_version == version
            ),
            None,
        )

    def tenant(self, tenant_id: str) -> Tenant | None:
        return self.get(Tenant, tenant_aggregate_id(tenant_id))

    def checkpoint(self) -> None:
        pass


class InMemoryLedger:
    """Runs each command in its own session; commits only when it succeeds."""

    def __init__(self, now: datetime = START) -> None:
        self.store: dict[UUID, Any] = {}
        self.results: dict[UUID, StoredResult] = {}
        self.events: list[Any] = []
        self.now = now

    def run(self, envelope: Envelope[Any]) -> Outcome:
        validate(envelope, self.now)
        session = InMemorySession(self.store, self.results, self.events, self.now)
        outcome = ANSWERS.execute(envelope, session)
        for aggregate in session.touched.values():
            self.events.extend(aggregate.collect_events())
            self.store[aggregate.id] = aggregate
        self.results.update(session.results)
        return outcome

    def get(self, aggregate_id: UUID) -> Any:
        return self.store.get(aggregate_id)

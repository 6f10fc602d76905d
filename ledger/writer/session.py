"""The writer's unit of work for one batch (ledger.unit_of_work.UnitOfWork).

A `BatchSession` holds what one batch read or changed, to be saved together. While the batch
before it commits, a batch is applied on top of it (ledger/writer/writer.py): the session then looks
through `behind`, the session of the batch still committing, before the cache, the store or
what its prefetch found absent, so it sees that batch's accounts, new accounts and answers as
that batch left them. If that batch does not commit, this one is thrown away and run again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from ledger import ids
from ledger.commands import Envelope
from ledger.ids import tenant_aggregate_id
from ledger.outcome import Outcome
from ledger.store.application import Ledger
from ledger.store.recorder import StoredRow
from ledger.store.stored_results import StoredResult
from ledger.tenants.tenant import Tenant
from ledger.writer.answers import Answers
from ledger.writer.cache import AggregateCache

T = TypeVar("T")

# Tenant settings (overdraft limit, rates) are re-read at least this often, so a change made
# through another replica applies within this time.
TENANT_CACHE_TTL_S = 1.0


class BatchSession:
    """The unit of work of one batch: the aggregates it read or changed, to save together."""

    def __init__(
        self,
        ledger: Ledger,
        cache: AggregateCache,
        answers: Answers,
        now: datetime,
        behind: BatchSession | None = None,
    ) -> None:
        self.ledger = ledger
        self.cache = cache
        self.answers = answers
        self.now = now
        # The batch still committing that this one is applied on top of (None: none is).
        self.behind = behind
        self.touched: dict[UUID, Any] = {}
        self.loaded_at: dict[UUID, float] = {}
        self.versions_at_load: dict[UUID, int] = {}
        # Touched aggregates that are the cache's own objects: after the commit the cache
        # holds them already, as they are.
        self.from_cache: set[UUID] = set()
        # Stored results: those this batch made (saved with its events), and those it found.
        self.results: dict[UUID, StoredResult] = {}
        self.found_results: dict[UUID, StoredResult] = {}
        self.absent: set[UUID] = set()  # aggregates known, for this batch, to have no events
        # Aggregates loaded together by the prefetch, not yet asked for; when.
        self.preloaded: dict[UUID, Any] = {}
        self.preloaded_at = 0.0
        self.absent_results: set[UUID] = set()
        self.work_results: list[UUID] = []
        # Pending-event counts of the aggregates a command (a work) has seen, as first seen:
        # a failure is clean when none of them changed. Only what the command touched is
        # compared, so a check costs the command's size, not the batch's.
        self.command_seen: dict[UUID, int] = {}
        self.work_seen: dict[UUID, int] = {}

    def prefetch(self, envelopes: Iterable[Envelope[Any]]) -> None:
        """One query finds the batch's idempotency keys and payment refs that have answers, and
        one which accounts to be opened exist, so each new one costs no lookup of its own (the
        usual case: every request a new key, every account opened a new one)."""
        candidates = set()
        opening = set()
        loading: set[UUID] = set()
        registry = self.answers.registry
        for envelope in envelopes:
            command = envelope.command
            spec = registry.spec_of(command)
            if spec.loads is not None:
                loading.update(
                    aggregate_id
                    for aggregate_id in spec.loads(envelope)
                    if self._behind_touched(aggregate_id) is None
                    and self.cache.get(aggregate_id) is None
                )
            if spec.creates is not None:
                created = spec.creates(envelope)
                if (
                    created is not None
                    and self._behind_touched(created) is None
                    and (self.cache.get(created) is None)
                ):
                    opening.add(created)
            if command.idempotency_key is not None:
                candidates.add(
                    ids.aggregate_id(envelope.tenant_id, spec.key_space, command.idempotency_key)
                )
            if spec.result_keys is not None:
                candidates.update(spec.result_keys(envelope))
        if candidates:
            self.found_results = self.ledger.stored_results(candidates)
            self.absent_results = candidates - self.found_results.keys()
        if opening:
            self.absent = opening - self.ledger.stored_ids(opening)
        if loading:
            self.preloaded = self.ledger.load_many(loading)
            self.preloaded_at = time.monotonic()
            self.absent |= loading - self.preloaded.keys()

    def result(self, result_id: UUID) -> StoredResult | None:
        stored = self.results.get(result_id) or self.found_results.get(result_id)
        if stored is None and self.behind is not None:
            stored = self.behind.results.get(result_id)  # made by the batch still committing
        if stored is None and result_id not in self.absent_results:
            # Answers are not cached: a retry is rare, and one query finds it.
            stored = self.ledger.stored_results([result_id]).get(result_id)
            if stored is None:
                self.absent_results.add(result_id)
            else:
                self.found_results[result_id] = stored
        return stored

    def remember(self, kind: str, key: str, envelope: Envelope[Any], outcome: Outcome) -> None:
        result = self.answers.stored(kind, key, envelope, outcome)
        self.results[result.id] = result
        self.work_results.append(result.id)

    def replay(self, stored: StoredResult) -> Outcome:
        return self.answers.replay(stored)

    def account_event(self, account_uuid: UUID, version: int) -> Any:
        """One stored event of an account (a refund's consumption), read by its key."""
        if version < 1:
            return None
        events = list(self.ledger.events.get(account_uuid, gt=version - 1, lte=version))
        return events[0] if events else None

    def drop_work_results(self) -> None:
        """Forgets the results of the work that just failed: they are not saved."""
        for result_id in self.work_results:
            self.results.pop(result_id, None)

    def get(self, cls: type[T], aggregate_id: UUID, *, fresh: bool = False) -> T | None:
        aggregate = self.touched.get(aggregate_id)
        if aggregate is None:
            aggregate, loaded_at = self._load(aggregate_id, fresh)
            if aggregate is None:
                return None
            self.touched[aggregate_id] = aggregate
            self.loaded_at[aggregate_id] = loaded_at
            self.versions_at_load[aggregate_id] = aggregate.version
        if not isinstance(aggregate, cls):
            return None  # an id of another kind: as good as unknown
        self._seen(aggregate_id, len(aggregate.pending_events))  # type: ignore[attr-defined]
        return aggregate

    def _load(self, aggregate_id: UUID, fresh: bool) -> tuple[Any, float]:
        """An aggregate this session has not touched yet, from the batch behind it, the cache
        or the store; (None, 0) when it has no events."""
        behind = self._behind_touched(aggregate_id)
        if behind is not None:
            aggregate, loaded_at = behind
        elif aggregate_id in self.absent:
            return None, 0.0
        elif (cached := self.cache.get(aggregate_id)) is not None:
            aggregate, loaded_at = cached
            self.from_cache.add(aggregate_id)
        elif aggregate_id in self.preloaded:
            aggregate, loaded_at = self.preloaded.pop(aggregate_id), self.preloaded_at
        else:
            try:
                return self.ledger.repository.get(aggregate_id), time.monotonic()
            except AggregateNotFoundError:
                return None, 0.0
        if fresh:  # another replica may have written since: catch up before answering
            for event in self.ledger.events.get(aggregate_id, gt=aggregate.version):
                event.mutate(aggregate)  # type: ignore[attr-defined]
        return aggregate, loaded_at

    def _behind_touched(self, aggregate_id: UUID) -> tuple[Any, float] | None:
        behind = self.behind
        if behind is None:
            return None
        aggregate = behind.touched.get(aggregate_id)
        return None if aggregate is None else (aggregate, behind.loaded_at[aggregate_id])

    def tenant(self, tenant_id: str) -> Tenant | None:
        tenant_uuid = tenant_aggregate_id(tenant_id)
        if tenant_uuid not in self.touched and self._behind_touched(tenant_uuid) is None:
            cached = self.cache.get(tenant_uuid)
            if cached is not None and time.monotonic() - cached[1] > TENANT_CACHE_TTL_S:
                self.cache.evict(tenant_uuid)
        return self.get(Tenant, tenant_uuid)

    def add(self, aggregate: Any) -> None:
        self.absent.discard(aggregate.id)
        if aggregate.id not in self.touched:
            self.touched[aggregate.id] = aggregate
            self.loaded_at[aggregate.id] = time.monotonic()
            self.versions_at_load[aggregate.id] = 0
            self._seen(aggregate.id, 0)  # a new aggregate is itself a change
        else:
            self._seen(aggregate.id, len(aggregate.pending_events))

    def _seen(self, aggregate_id: UUID, pending: int) -> None:
        self.command_seen.setdefault(aggregate_id, pending)
        self.work_seen.setdefault(aggregate_id, pending)

    def begin_work(self) -> None:
        self.work_seen = {}
        self.command_seen = {}
        self.work_results = []

    def begin_command(self) -> None:
        self.command_seen = {}

    def checkpoint(self) -> None:
        """What the command did so far stands whatever follows (an expiry sweep)."""
        if self.command_seen:  # empty at the start of every command
            touched = self.touched
            self.command_seen = {i: len(touched[i].pending_events) for i in self.command_seen}

    def changed(self, seen: dict[UUID, int]) -> bool:
        return any(len(self.touched[i].pending_events) != n for i, n in seen.items())

    def evict_all(self) -> None:
        for aggregate_id in self.touched:
            self.cache.evict(aggregate_id)

    def result_rows(self) -> list[StoredRow]:
        return [result.to_row() for result in self.results.values()]

"""The writer's thread applies a batch: each work's commands on one session, in arrival order,
and what the commit will store encoded (events, answers, snapshots)."""

from __future__ import annotations

import time
from typing import Any

import structlog
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import PersistenceError, StoredEvent

from ledger.accounts.account import Account
from ledger.clock import Clock
from ledger.errors import AtomicBatchFailedError, LedgerError
from ledger.limits import SNAPSHOT_INTERVAL
from ledger.outcome import Outcome
from ledger.store.application import Ledger
from ledger.tenants.tenant import Tenant
from ledger.writer.answers import Answers
from ledger.writer.batch import Batch, Counters, Work
from ledger.writer.cache import AggregateCache
from ledger.writer.session import BatchSession

log = structlog.get_logger("ledger.writer")
# The aggregates whose history grows without end (an account's entries; a tenant's keys as
# they rotate), snapshotted so a cold load replays at most SNAPSHOT_INTERVAL events.
SNAPSHOTTED = (Account, Tenant)


class BatchApplier:
    def __init__(
        self,
        ledger: Ledger,
        cache: AggregateCache,
        answers: Answers,
        clock: Clock,
        counters: Counters,
    ) -> None:
        self.ledger = ledger
        self.cache = cache
        self.answers = answers
        self.clock = clock
        self.counters = counters

    def prepare(self, works: list[Work], behind: BatchSession | None, attempt: int) -> Batch:
        """Applies the works in a new session (on top of `behind`, the batch in flight) and
        encodes what the commit stores. The store failing makes it `unreachable`."""
        started = time.monotonic()
        session = BatchSession(self.ledger, self.cache, self.answers, self.clock(), behind)
        batch = Batch(works=works, session=session, attempt=attempt)
        try:
            session.prefetch(envelope for work in works for envelope in work.commands)
            for work in works:
                if self._apply(work, session, batch.answers):
                    batch.dirty = work
                    return batch
            batch.snapshots = self._snapshots(session)
            batch.columns = self.ledger.collect(session.touched.values())
            batch.rows = session.result_rows()
        except PersistenceError as error:
            batch.unreachable = error
        finally:
            self.counters.apply_us += int((time.monotonic() - started) * 1e6)
        return batch

    def _apply(self, work: Work, session: BatchSession, answers: dict[int, Any]) -> bool:
        """Runs one work's commands and puts its answer, outcome or error, in `answers`.
        True when it failed after changing aggregates."""
        session.begin_work()
        outcomes: list[Outcome] = []
        for index, envelope in enumerate(work.commands):
            session.begin_command()
            try:
                outcomes.append(self.answers.execute(envelope, session))
            except LedgerError as error:
                if work.atomic:
                    error = AtomicBatchFailedError(
                        f"commands[{index}] failed ({error.code}): {error.detail}; "
                        "nothing was applied",
                        index=index,
                        cause=error,
                    )
                    dirty = session.changed(session.work_seen)
                else:
                    dirty = session.changed(session.command_seen)
                session.drop_work_results()
                answers[id(work)] = error
                return dirty
            except PersistenceError:
                raise
            except Exception as error:
                log.exception("command_crashed", command=type(envelope.command).__name__)
                session.drop_work_results()
                answers[id(work)] = error
                return True
        answers[id(work)] = outcomes if work.atomic else outcomes[0]
        return False

    def _snapshots(self, session: BatchSession) -> list[StoredEvent]:
        """Snapshots of the accounts and tenants that crossed a multiple of
        SNAPSHOT_INTERVAL, encoded now: the next batch changes the same objects before this
        one's are stored."""
        store = self.ledger.snapshots
        if store is None:
            return []
        try:
            return [
                store.mapper.to_stored_event(Snapshot.take(aggregate))
                for aggregate_id, aggregate in session.touched.items()
                if isinstance(aggregate, SNAPSHOTTED)
                and aggregate.version // SNAPSHOT_INTERVAL
                > session.versions_at_load[aggregate_id] // SNAPSHOT_INTERVAL
            ]
        except Exception:  # a snapshot is only a shortcut: never fail a batch for one
            log.exception("snapshot_crashed")
            return []

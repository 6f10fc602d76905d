"""The committer's thread stores a batch: its events and answers in one transaction, then
answers its works with their positions, then stores its snapshots."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import msgspec
import structlog
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent

from ledger.errors import UnavailableError
from ledger.outcome import Outcome
from ledger.store.application import Ledger
from ledger.store.stored_results import StoredResult
from ledger.writer.batch import Batch, Commit, Counters, Work, fail, resolve_all

log = structlog.get_logger("ledger.writer")


class Committer:
    def __init__(self, ledger: Ledger, counters: Counters) -> None:
        self.ledger = ledger
        self.counters = counters

    def commit(self, batch: Batch) -> Commit:
        """Stores the batch and answers its works (on the committer's thread)."""
        columns, rows = batch.columns, batch.rows
        started = time.monotonic()
        try:
            positions = self.ledger.record(columns, rows) if columns.states or rows else {}
        except (IntegrityError, PersistenceError) as error:
            # The commit may have succeeded with its acknowledgement lost (the library retries
            # the insert, which then meets its own rows): look before treating it as failed.
            stored = self._committed(batch)
            if stored is not True and isinstance(error, IntegrityError) and stored is False:
                batch.conflict = error
                return Commit.CONFLICT
            if stored is not True:
                log.warning("writer_commit_failed", error=str(error), commands=len(batch.works))
                detail = (
                    "the event store is unreachable; nothing was recorded"
                    if stored is False
                    else "the event store failed during the commit and the outcome is "
                    "unknown; retry with the same Idempotency-Key"
                )
                fail(batch.works, UnavailableError(detail))
                return Commit.FAILED
            log.warning("writer_commit_ack_lost", commands=len(batch.works), error=str(error)[:200])
            positions = {}
        counters = self.counters
        counters.commit_us += int((time.monotonic() - started) * 1e6)
        self._fill_positions(batch.works, batch.answers, positions)
        counters.batches_committed += 1
        counters.commands_committed += sum(
            len(w.commands) for w in batch.works if not isinstance(batch.answers[id(w)], Exception)
        )
        resolve_all(batch.works, batch.answers, counters)
        self._store_snapshots(batch.snapshots)
        return Commit.DONE

    def _committed(self, batch: Batch) -> bool | None:
        """Whether the batch's first event (or, with none, its first result) is stored exactly
        as this batch made it: True (committed), False (not), None (the store cannot tell)."""
        columns = batch.columns
        try:
            if columns.states:
                state = self.ledger.stored_state(
                    columns.originator_ids[0], columns.originator_versions[0]
                )
                return state == columns.states[0]
            if batch.rows:
                first = StoredResult.from_row(batch.rows[0])
                return self.ledger.stored_results([first.id]).get(first.id) == first
        except PersistenceError:
            return None
        return False

    def _store_snapshots(self, snapshots: list[StoredEvent]) -> None:
        if snapshots and self.ledger.snapshots is not None:
            try:
                self.ledger.snapshots.recorder.insert_events(snapshots)
            except (IntegrityError, PersistenceError) as error:  # a snapshot is only a shortcut
                log.warning("snapshot_failed", error=str(error)[:200], count=len(snapshots))

    def _fill_positions(
        self, works: list[Work], answers: dict[int, Any], positions: dict[tuple[UUID, int], int]
    ) -> None:
        outcomes: list[Outcome] = []
        for work in works:
            answer = answers[id(work)]
            if isinstance(answer, Outcome):
                outcomes.append(answer)
            elif isinstance(answer, list):
                outcomes.extend(answer)
        missing = {o.entry_ref for o in outcomes if o.entry_ref and o.entry_ref not in positions}
        if missing:  # replays of answers committed in earlier batches
            try:
                positions.update(self.ledger.positions_of(missing))
            except Exception as error:  # noqa: BLE001 - the answer goes out, without a position
                log.warning("position_lookup_failed", error=str(error))
        for outcome in outcomes:
            if outcome.entry_ref is not None and outcome.entry_ref in positions:
                position = positions[outcome.entry_ref]
                outcome.value = msgspec.structs.replace(outcome.value, position=position)

"""The group-commit writer (DESIGN.md decision 1, docs/adr/0001).

`await writer.submit(command)` hands a command to one worker thread. The thread gathers what
arrives within a short window (or up to a batch limit), applies the commands in arrival order
to cached aggregates, and saves the whole batch with one `Ledger.record(...)` (one
transaction); each caller is answered only then. So every answer means committed.

Two batches are under way at once: while one commits, on the committer's thread, the writer's
thread applies the next on top of it, in memory (ledger/session.py); the next is sent to the
store only once the first has committed, and is thrown away and run again if it did not. So
the store's round trip, its table lock and its fsync no longer stand between two batches.

- A LedgerError (insufficient credits, unknown hold, ...) fails only its own command: handlers
  decide before they change anything, so nothing else in the batch is touched. It is answered
  with its batch, once the batches before it have committed: a refusal may rest on what they
  did.
- A conflict on save (another writer changed the same aggregates, or created the same
  idempotency key) evicts what the batch touched from the cache and runs it again on fresh
  state; if it conflicts again the batch is split in halves until the culprit stands alone.
  Innocent commands never fail because of it, and the cache never keeps unsaved state.
- The event loop never blocks on the database: the library is synchronous and runs here only.
"""

from __future__ import annotations

import asyncio
import enum
import queue
import random
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import msgspec
import structlog
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent

from ledger import commands as c
from ledger.accounts.account import Account
from ledger.accounts.handlers import Outcome, execute
from ledger.accounts.records import StoredResult
from ledger.errors import (
    AtomicBatchFailedError,
    InvalidCommandError,
    LedgerError,
    UnavailableError,
    WriteConflictError,
)
from ledger.limits import SNAPSHOT_INTERVAL
from ledger.store.application import Ledger
from ledger.store.recorder import EventColumns, StoredRow
from ledger.writer.session import AggregateCache, BatchSession

log = structlog.get_logger("ledger.writer.writer")

# Commands one transaction carries at most: bounds the transaction's size and latency.
BATCH_SIZE_MAX = 1_000
# How long the thread waits for more commands once one has arrived. Under load batches fill
# while the previous one commits, so the window matters only when traffic is light.
BATCH_WINDOW_S = 0.001
# Commands waiting for the thread; past this, submit() answers UnavailableError at once.
QUEUE_DEPTH_MAX = 50_000
# Accounts and tenants kept in memory, least recently used evicted (a few KiB each at most).
CACHE_SIZE_MAX = 100_000
# Reruns of a lone command after conflicts before it fails with WriteConflictError, and the
# most a rerun waits (a random part of it: two writers on one hot account must not keep
# colliding in step). A rerun that waits for the table lock behind the other writer's commit
# conflicts again whenever that commit touched the same account, so under a sustained duel
# on a few accounts a lone command can lose many times in a row: 12 reruns were once not
# enough in CI (two writers, four accounts); 30 with waits up to 0.1 s bound it at about 2 s.
CONFLICT_RETRIES_MAX = 30
CONFLICT_BACKOFF_MAX_S = 0.1
# Batches committing at once: one. The next batch is applied on top of it meanwhile, and two
# in the store at once would commit in either order.
COMMITS_IN_FLIGHT_MAX = 1


class Sink(Protocol):
    """Where a batch's answers go: `deliver` gets (token, result) pairs, a result being an
    Outcome, a list of them (atomic) or an exception. Called on the writer's thread."""

    def deliver(self, pairs: list[tuple[Any, Any]]) -> None: ...


class LoopSink:
    """Answers the futures of one event loop: one wake-up of that loop per batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def deliver(self, pairs: list[tuple[Any, Any]]) -> None:
        try:
            self.loop.call_soon_threadsafe(_set_futures, pairs)
        except RuntimeError:  # that loop is closed: its callers are gone, answer the others
            log.warning("writer_answer_loop_closed", commands=len(pairs))


@dataclass(eq=False)
class Work:
    """Commands that succeed or fail together (one, or an atomic batch), and where their
    answer goes: `token` (a future, or a caller's request number) delivered to `sink`."""

    commands: Sequence[c.Command]
    atomic: bool
    sink: Sink
    token: Any
    done: bool = field(default=False)
    queued_at: float = field(default_factory=time.monotonic)


def check_commands(commands: Sequence[c.Command], *, atomic: bool, now: datetime) -> None:
    """Checks each command before it is queued (InvalidCommandError, nothing recorded)."""
    for index, command in enumerate(commands):
        try:
            c.check(command, now)
        except InvalidCommandError as error:
            if atomic:
                error.detail = f"commands[{index}]: {error.detail}"
            raise


class Commit(enum.Enum):
    """How a batch's commit ended."""

    DONE = "done"  # stored, and every work answered
    CONFLICT = "conflict"  # not stored, nothing answered: run again on fresh state
    FAILED = "failed"  # not stored, or not known to be: answered unavailable


@dataclass(eq=False)
class Batch:
    """Works applied on one session: their answers decided, their events and answers encoded
    for the store. `dirty` or `unreachable` set: it cannot be committed as it is."""

    works: list[Work]
    session: BatchSession
    attempt: int  # conflicts met so far by these works
    answers: dict[int, Any] = field(default_factory=dict)  # by id(work): Outcome(s) or error
    columns: EventColumns = field(default_factory=lambda: EventColumns([], [], [], []))
    rows: list[StoredRow] = field(default_factory=list)
    snapshots: list[StoredEvent] = field(default_factory=list)
    dirty: Work | None = None  # the work that failed after changing aggregates
    unreachable: PersistenceError | None = None  # the store failed while applying
    conflict: IntegrityError | None = None  # why the commit conflicted

    @property
    def ready(self) -> bool:
        return self.dirty is None and self.unreachable is None


InFlight = tuple[Batch, "Future[Commit]"]


_STOP = object()
_COMMIT_ENDED = object()  # queued by the committer as each commit ends


class Submitting:
    """What callers use, on top of `_enqueue` (this thread's queue, or a writer process)."""

    def _enqueue(self, commands: Sequence[c.Command], *, atomic: bool) -> asyncio.Future[Any]:
        raise NotImplementedError

    async def submit(self, command: c.Command) -> Outcome:
        """Applies one command; returns once it is committed. Raises its LedgerError."""
        result = await self._enqueue([command], atomic=False)
        assert isinstance(result, Outcome)
        return result

    async def submit_atomic(self, commands: Sequence[c.Command]) -> list[Outcome]:
        """Applies all the commands in one transaction, or none (AtomicBatchFailedError)."""
        result = await self._enqueue(commands, atomic=True)
        assert isinstance(result, list)
        return result

    async def submit_each(self, commands: Sequence[c.Command]) -> list[Outcome | LedgerError]:
        """Applies each command on its own; a failure is returned in its place. Each command
        is a work with its own future, enqueued here in order: no task per command."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        for command in commands:
            try:
                futures.append(self._enqueue([command], atomic=False))
            except LedgerError as error:
                refused: asyncio.Future[Any] = loop.create_future()
                refused.set_exception(error)
                futures.append(refused)
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if not isinstance(result, Outcome | LedgerError):
                raise result
        return list(results)  # type: ignore[arg-type]


class Writer(Submitting):
    def __init__(
        self,
        ledger: Ledger,
        *,
        batch_size_max: int = BATCH_SIZE_MAX,
        batch_window_s: float = BATCH_WINDOW_S,
        cache_size_max: int = CACHE_SIZE_MAX,
        clock: Callable[[], datetime] = c.utc_now,
    ) -> None:
        self.ledger = ledger
        self.batch_size_max = batch_size_max
        self.batch_window_s = batch_window_s
        self.cache = AggregateCache(cache_size_max)
        self.clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._depth = 0
        self._depth_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._committer: ThreadPoolExecutor | None = None
        # One sink per event loop, so a batch wakes each loop once; a closed loop drops out.
        self._sinks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopSink] = (
            weakref.WeakKeyDictionary()
        )
        self.batches_committed = 0
        self.batches_rerun = 0  # after a failure that had changed aggregates (should be rare)
        self.commands_committed = 0
        # Where the writer's time goes, in microseconds summed since it started (GET /metrics):
        # applying and encoding batches on the writer's thread, storing those that commit on
        # the committer's, and each committed work's wait from being queued to being answered.
        self.apply_us = 0
        self.commit_us = 0
        self.queued_us = 0
        self.works_answered = 0

    @property
    def cached_aggregates(self) -> int:
        return len(self.cache)

    @property
    def ready(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ asyncio side

    def start(self) -> None:
        if self._thread is None:
            self._committer = ThreadPoolExecutor(
                max_workers=COMMITS_IN_FLIGHT_MAX, thread_name_prefix="ledger-committer"
            )
            self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        """Answers every command already accepted, then stops the threads."""
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None

    def _enqueue(self, commands: Sequence[c.Command], *, atomic: bool) -> asyncio.Future[Any]:
        """Checks the commands and hands them to the thread as one work; its future answers."""
        check_commands(commands, atomic=atomic, now=self.clock())  # bad input: 400 whatever else
        if self._thread is None:
            raise UnavailableError("the writer is not running")
        loop = asyncio.get_running_loop()
        sink = self._sinks.get(loop)
        if sink is None:
            sink = self._sinks[loop] = LoopSink(loop)
        future = loop.create_future()
        self.enqueue(commands, atomic=atomic, sink=sink, token=future)
        return future

    def enqueue(
        self, commands: Sequence[c.Command], *, atomic: bool, sink: Sink, token: Any
    ) -> None:
        """Queues checked commands as one work; `sink` gets (token, answer) once it is
        committed or has failed. Raises UnavailableError when the queue is full."""
        with self._depth_lock:
            if self._depth + len(commands) > QUEUE_DEPTH_MAX:
                raise UnavailableError("the writer is overloaded; retry shortly")
            self._depth += len(commands)
        self._queue.put(Work(commands=commands, atomic=atomic, sink=sink, token=token))

    # ------------------------------------------------------------- thread side

    def _run(self) -> None:
        in_flight: InFlight | None = None
        stopping = False
        while not (stopping and in_flight is None):
            if stopping:  # nothing more will come: see the last commit through
                assert in_flight is not None
                self._settle(in_flight)
                in_flight = None
                continue
            works, stopping = self._gather()
            if works:
                in_flight = self._advance(works, in_flight)
            elif in_flight is not None and in_flight[1].done():
                self._settle(in_flight)
                in_flight = None

    def _gather(self) -> tuple[list[Work], bool]:
        """The next batch's works: what is queued, up to the batch limit, waiting up to the
        window for more once one has come; none when a commit ended first. The flag says the
        stop came: nothing is queued after it."""
        first = self._queue.get()
        if first is _COMMIT_ENDED:
            return [], False
        if first is _STOP:
            return [], True
        works = [first]
        size = len(first.commands)
        deadline = time.monotonic() + self.batch_window_s
        while size < self.batch_size_max:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return works, True
            if item is not _COMMIT_ENDED:  # the batch on top of it is being gathered: go on
                works.append(item)
                size += len(item.commands)
        return works, False

    def _advance(self, works: list[Work], in_flight: InFlight | None) -> InFlight | None:
        """Applies the works on top of the batch in flight, sees that one through, and sends
        theirs to the committer; the batch now in flight. When they cannot go as they are
        (the one before did not commit, or they failed), they run again on their own."""
        behind = in_flight[0].session if in_flight is not None else None
        try:
            batch = self._prepare(works, behind, attempt=0)
        except Exception as error:  # noqa: BLE001 - a bug, logged; the one in flight may have committed
            if in_flight is not None:
                self._settle(in_flight)
            self._crashed(works, error)
            return None
        committed = in_flight is None or self._settle(in_flight, ahead=batch.session)
        # Seen through: what it did is in the cache now, or evicted. Kept, each batch would
        # keep the one before it alive, and a busy writer every batch since it was last idle.
        batch.session.behind = None
        if committed and batch.ready:
            assert self._committer is not None
            commit = self._committer.submit(self._commit, batch)
            # Wakes the thread if it is waiting for works: the commit can be seen through.
            commit.add_done_callback(lambda _: self._queue.put(_COMMIT_ENDED))
            return batch, commit
        batch.session.evict_all()
        if committed and batch.unreachable is not None:
            self._unreachable(batch)
        else:
            self._run_alone(works)
        self._done(works)
        return None

    def _run_alone(self, works: list[Work]) -> None:
        """Runs the works with nothing in flight, committing before it returns."""
        try:
            self._run_batch(works, attempt=0)
        except Exception as error:  # noqa: BLE001 - a bug, logged by _crashed
            self._crashed(works, error)

    def _crashed(self, works: list[Work], error: Exception) -> None:
        log.exception("writer_batch_crashed", commands=sum(len(w.commands) for w in works))
        self.cache.clear()
        self._fail(works, error)

    def _done(self, works: list[Work]) -> None:
        with self._depth_lock:
            self._depth -= sum(len(w.commands) for w in works)

    def _run_batch(self, works: list[Work], attempt: int) -> None:
        while True:
            works = [work for work in works if not work.done]
            if not works:
                return
            batch = self._prepare(works, None, attempt)
            if batch.unreachable is not None:
                batch.session.evict_all()
                self._unreachable(batch)
                return
            if batch.dirty is None:
                commit: Future[Commit] = Future()
                try:
                    commit.set_result(self._commit(batch))
                except Exception as error:  # noqa: BLE001 - _settle reports it
                    commit.set_exception(error)
                self._settle((batch, commit), done=False)
                return
            # A work failed after changing aggregates: answer it, drop its changes with
            # everything the batch touched, and run the others again on fresh state.
            self._resolve(batch.dirty, batch.answers[id(batch.dirty)])
            batch.session.evict_all()
            self.batches_rerun += 1

    def _prepare(self, works: list[Work], behind: BatchSession | None, attempt: int) -> Batch:
        """Applies the works in a new session (on top of `behind`, the batch in flight) and
        encodes what the commit stores. The store failing makes it `unreachable`."""
        started = time.monotonic()
        session = BatchSession(self.ledger, self.cache, self.clock(), behind)
        batch = Batch(works=works, session=session, attempt=attempt)
        try:
            session.prefetch(command for work in works for command in work.commands)
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
            self.apply_us += int((time.monotonic() - started) * 1e6)
        return batch

    def _apply(self, work: Work, session: BatchSession, answers: dict[int, Any]) -> bool:
        """Runs one work's commands and puts its answer, outcome or error, in `answers`.
        True when it failed after changing aggregates."""
        session.begin_work()
        outcomes: list[Outcome] = []
        for index, command in enumerate(work.commands):
            session.begin_command()
            try:
                outcomes.append(execute(command, session))
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
                log.exception("command_crashed", command=type(command).__name__)
                session.drop_work_results()
                answers[id(work)] = error
                return True
        answers[id(work)] = outcomes if work.atomic else outcomes[0]
        return False

    def _snapshots(self, session: BatchSession) -> list[StoredEvent]:
        """Snapshots of the accounts that crossed a multiple of SNAPSHOT_INTERVAL, encoded
        now: the next batch changes the same objects before this one's are stored."""
        store = self.ledger.snapshots
        if store is None:
            return []
        try:
            return [
                store.mapper.to_stored_event(Snapshot.take(aggregate))
                for aggregate_id, aggregate in session.touched.items()
                if isinstance(aggregate, Account)
                and aggregate.version // SNAPSHOT_INTERVAL
                > session.versions_at_load[aggregate_id] // SNAPSHOT_INTERVAL
            ]
        except Exception:  # a snapshot is only a shortcut: never fail a batch for one
            log.exception("snapshot_crashed")
            return []

    # --------------------------------------------------------- committer side

    def _commit(self, batch: Batch) -> Commit:
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
                log.error("writer_commit_failed", error=str(error), commands=len(batch.works))
                detail = (
                    "the event store is unreachable; nothing was recorded"
                    if stored is False
                    else "the event store failed during the commit and the outcome is "
                    "unknown; retry with the same Idempotency-Key"
                )
                self._fail(batch.works, UnavailableError(detail))
                return Commit.FAILED
            log.warning("writer_commit_ack_lost", commands=len(batch.works), error=str(error)[:200])
            positions = {}
        self.commit_us += int((time.monotonic() - started) * 1e6)
        self._fill_positions(batch.works, batch.answers, positions)
        self.batches_committed += 1
        self.commands_committed += sum(
            len(w.commands) for w in batch.works if not isinstance(batch.answers[id(w)], Exception)
        )
        self._resolve_all(batch.works, batch.answers)
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

    # ----------------------------------------------------- back on the writer

    def _settle(
        self, in_flight: InFlight, ahead: BatchSession | None = None, *, done: bool = True
    ) -> bool:
        """Waits for the batch's commit and acts on how it ended: True when it committed.
        When it did not, what `ahead` (the batch applied on top of it) touched is evicted too,
        before the batch runs again. `done`: its works leave the queue's count."""
        batch, commit = in_flight
        try:
            outcome = commit.result()
        except Exception as error:  # noqa: BLE001 - a bug in the commit, logged by _crashed
            outcome = Commit.FAILED
            self._crashed(batch.works, error)
        if outcome is Commit.DONE:
            session = batch.session
            for aggregate_id, aggregate in session.touched.items():
                if aggregate_id not in session.from_cache:
                    self.cache.put(aggregate, session.loaded_at[aggregate_id])
        else:
            batch.session.evict_all()
            if ahead is not None:
                ahead.evict_all()
            if outcome is Commit.CONFLICT:
                assert batch.conflict is not None
                try:
                    self._on_conflict(batch.works, batch.attempt, batch.conflict)
                except Exception as error:  # noqa: BLE001 - a bug, logged by _crashed
                    self._crashed(batch.works, error)
        if done:
            self._done(batch.works)
        return outcome is Commit.DONE

    def _unreachable(self, batch: Batch) -> None:
        log.error("writer_store_unreachable", error=str(batch.unreachable))
        self._fail(
            batch.works, UnavailableError("the event store is unreachable; nothing was recorded")
        )

    def _on_conflict(self, works: list[Work], attempt: int, error: Exception) -> None:
        """Runs the batch again on fresh state (a stale cache is the usual cause); if it still
        conflicts, in halves until the conflicting command stands alone. Only a command that
        conflicts alone CONFLICT_RETRIES_MAX times fails."""
        works = [work for work in works if not work.done]
        log.info("writer_conflict", commands=len(works), attempt=attempt, error=str(error)[:200])
        if len(works) == 1:
            if attempt >= CONFLICT_RETRIES_MAX:
                self._fail(works, WriteConflictError("concurrent changes kept conflicting; retry"))
            else:
                time.sleep(random.uniform(0, min(CONFLICT_BACKOFF_MAX_S, 0.001 * 2**attempt)))  # noqa: S311
                self._run_batch(works, attempt + 1)
        elif attempt == 0:
            self._run_batch(works, attempt + 1)
        else:
            middle = len(works) // 2
            self._run_batch(works[:middle], attempt)
            self._run_batch(works[middle:], attempt)

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

    def _fail(self, works: list[Work], error: Exception) -> None:
        for work in works:
            if not work.done:
                self._resolve(work, error)

    def _resolve(self, work: Work, result: Any) -> None:
        work.done = True
        work.sink.deliver([(work.token, result)])

    def _resolve_all(self, works: list[Work], answers: dict[int, Any]) -> None:
        """Answers a committed batch with one delivery per sink (one wake-up per event loop,
        one message per writer-process client), not one per command."""
        pairs_of: dict[Sink, list[tuple[Any, Any]]] = {}
        now = time.monotonic()
        for work in works:
            if not work.done:
                work.done = True
                pairs_of.setdefault(work.sink, []).append((work.token, answers[id(work)]))
                self.queued_us += int((now - work.queued_at) * 1e6)
                self.works_answered += 1
        for sink, pairs in pairs_of.items():
            sink.deliver(pairs)


def _set_futures(pairs: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in pairs:
        settle_future(future, result)


def settle_future(future: asyncio.Future[Any], result: Any) -> None:
    """Answers a caller's future with a result or an exception, unless it was cancelled."""
    if future.cancelled():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)

"""The group-commit writer (DESIGN.md decision 1).

`await writer.submit(command)` hands a command to one worker thread. The thread gathers what
arrives within a short window (or up to a batch limit), applies the commands in arrival order
to cached aggregates, saves the whole batch with one `Ledger.record(...)` (one transaction), and
only then answers each caller. So every answer means committed.

- A LedgerError (insufficient credits, unknown hold, ...) fails only its own command: handlers
  decide before they change anything, so nothing else in the batch is touched.
- A conflict on save (another writer changed the same aggregates, or created the same
  idempotency key) evicts what the batch touched from the cache and runs it again on fresh
  state; if it conflicts again the batch is split in halves until the culprit stands alone.
  Innocent commands never fail because of it, and the cache never holds unsaved state.
- The event loop never blocks on the database: the library is synchronous and runs here only.
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

import msgspec
import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import IntegrityError, PersistenceError

from ledger import commands as c
from ledger import ids
from ledger.account import Account
from ledger.application import Ledger
from ledger.errors import (
    AtomicBatchFailedError,
    InvalidCommandError,
    LedgerError,
    UnavailableError,
    WriteConflictError,
)
from ledger.handlers import Outcome, execute
from ledger.ids import tenant_aggregate_id
from ledger.limits import SNAPSHOT_INTERVAL
from ledger.recorder import StoredRow
from ledger.records import StoredResult
from ledger.tenant import ApiKeyIndex, Tenant

log = structlog.get_logger("ledger.writer")
T = TypeVar("T")

# Commands one transaction carries at most: bounds the transaction's size and latency.
BATCH_SIZE_MAX = 1_000
# How long the thread waits for more commands once one has arrived. Under load batches fill
# while the previous one commits, so the window matters only when traffic is light.
BATCH_WINDOW_S = 0.001
# Commands waiting for the thread; past this, submit() answers UnavailableError at once.
QUEUE_DEPTH_MAX = 50_000
# Accounts and tenants kept in memory, least recently used evicted (a few KiB each at most).
CACHE_SIZE_MAX = 100_000
# Consumption and hold records kept in memory: most are never read again.
RECORDS_CACHE_SIZE_MAX = 20_000
# Tenant settings (overdraft limit, rates) are re-read at least this often, so a change made
# through another replica applies within this time.
TENANT_CACHE_TTL_S = 1.0
# Reruns of a lone command after conflicts before it fails with WriteConflictError, and the
# most a rerun waits (a random part of it: two writers on one hot account must not keep
# colliding in step). A rerun that waits for the table lock behind the other writer's commit
# conflicts again whenever that commit touched the same account, so under a sustained duel
# on a few accounts a lone command can lose many times in a row: 12 reruns were once not
# enough in CI (two writers, four accounts); 30 with waits up to 0.1 s bound it at about 2 s.
CONFLICT_RETRIES_MAX = 30
CONFLICT_BACKOFF_MAX_S = 0.1


class LRU:
    """A bounded least-recently-used map of aggregates by id, with each one's load time."""

    def __init__(self, size_max: int) -> None:
        self.size_max = size_max
        self.items: OrderedDict[UUID, tuple[Any, float]] = OrderedDict()

    def get(self, aggregate_id: UUID) -> tuple[Any, float] | None:
        item = self.items.get(aggregate_id)
        if item is not None:
            self.items.move_to_end(aggregate_id)
        return item

    def put(self, aggregate: Any, loaded_at: float) -> None:
        self.items[aggregate.id] = (aggregate, loaded_at)
        self.items.move_to_end(aggregate.id)
        while len(self.items) > self.size_max:
            self.items.popitem(last=False)


class AggregateCache:
    """Accounts and tenants in one bounded LRU; the records of refunded consumptions and of
    holds in a smaller one, so a stream of new holds never pushes accounts out."""

    def __init__(self, size_max: int, records_size_max: int = RECORDS_CACHE_SIZE_MAX) -> None:
        self._main = LRU(size_max)
        self._records = LRU(records_size_max)

    def __len__(self) -> int:
        return len(self._main.items) + len(self._records.items)

    def get(self, aggregate_id: UUID) -> tuple[Any, float] | None:
        return self._main.get(aggregate_id) or self._records.get(aggregate_id)

    def put(self, aggregate: Any, loaded_at: float) -> None:
        lru = self._main if isinstance(aggregate, Account | Tenant | ApiKeyIndex) else self._records
        lru.put(aggregate, loaded_at)

    def evict(self, aggregate_id: UUID) -> None:
        self._main.items.pop(aggregate_id, None)
        self._records.items.pop(aggregate_id, None)

    def clear(self) -> None:
        self._main.items.clear()
        self._records.items.clear()


class BatchSession:
    """The unit of work of one batch: the aggregates it read or changed, to save together."""

    def __init__(self, ledger: Ledger, cache: AggregateCache, now: datetime) -> None:
        self.ledger = ledger
        self.cache = cache
        self.now = now
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
        self.absent_results: set[UUID] = set()
        self.work_results: list[UUID] = []
        # Pending-event counts of the aggregates a command (a work) has seen, as first seen:
        # a failure is clean when none of them changed. Only what the command touched is
        # compared, so a check costs the command's size, not the batch's.
        self.command_seen: dict[UUID, int] = {}
        self.work_seen: dict[UUID, int] = {}

    def prefetch(self, works: list[Work]) -> None:
        """One query finds the batch's idempotency keys and payment refs that have answers, and
        one which accounts to be opened exist, so each new one costs no lookup of its own (the
        usual case: every request a new key, every account opened a new one)."""
        candidates = set()
        opening = set()
        for work in works:
            for command in work.commands:
                if isinstance(command, c.OpenAccount):
                    account_uuid = ids.account_aggregate_id(command.tenant_id, command.account_id)
                    if self.cache.get(account_uuid) is None:
                        opening.add(account_uuid)
                if command.idempotency_key is not None:
                    candidates.add(
                        ids.aggregate_id(command.tenant_id, "idempotency", command.idempotency_key)
                    )
                if isinstance(command, c.PurchaseCredits):
                    candidates.add(
                        ids.aggregate_id(command.tenant_id, "payment", command.payment_ref)
                    )
        if candidates:
            self.found_results = self.ledger.stored_results(candidates)
            self.absent_results = candidates - self.found_results.keys()
        if opening:
            self.absent = opening - self.ledger.stored_ids(opening)

    def result(self, result_id: UUID) -> StoredResult | None:
        stored = self.results.get(result_id) or self.found_results.get(result_id)
        if stored is None and result_id not in self.absent_results:
            # Answers are not cached: a retry is rare, and one query finds it.
            stored = self.ledger.stored_results([result_id]).get(result_id)
            if stored is None:
                self.absent_results.add(result_id)
            else:
                self.found_results[result_id] = stored
        return stored

    def add_result(self, result: StoredResult) -> None:
        self.results[result.id] = result
        self.work_results.append(result.id)

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
            if aggregate_id in self.absent:
                return None
            cached = self.cache.get(aggregate_id)
            if cached is not None:
                aggregate, loaded_at = cached
                self.from_cache.add(aggregate_id)
                if fresh:  # another replica may have written since: catch up before answering
                    for event in self.ledger.events.get(aggregate_id, gt=aggregate.version):
                        event.mutate(aggregate)  # type: ignore[attr-defined]
            else:
                try:
                    aggregate = self.ledger.repository.get(aggregate_id)
                except AggregateNotFoundError:
                    return None
                loaded_at = time.monotonic()
            self.touched[aggregate_id] = aggregate
            self.loaded_at[aggregate_id] = loaded_at
            self.versions_at_load[aggregate_id] = aggregate.version
        if not isinstance(aggregate, cls):
            return None  # an id of another kind: as good as unknown
        self._seen(aggregate_id, len(aggregate.pending_events))  # type: ignore[attr-defined]
        return aggregate

    def tenant(self, tenant_id: str) -> Tenant | None:
        tenant_uuid = tenant_aggregate_id(tenant_id)
        if tenant_uuid not in self.touched:
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

    def has_pending(self) -> bool:
        return bool(self.results) or any(
            aggregate.pending_events for aggregate in self.touched.values()
        )

    def evict_all(self) -> None:
        for aggregate_id in self.touched:
            self.cache.evict(aggregate_id)


def results_rows(session: BatchSession) -> list[StoredRow]:
    return [result.to_row() for result in session.results.values()]


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


def check_commands(commands: Sequence[c.Command], *, atomic: bool, now: datetime) -> None:
    """Checks each command before it is queued (InvalidCommandError, nothing recorded)."""
    for index, command in enumerate(commands):
        try:
            c.check(command, now)
        except InvalidCommandError as error:
            if atomic:
                error.detail = f"commands[{index}]: {error.detail}"
            raise


_STOP = object()


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
        # One sink per event loop, so a batch wakes each loop once; a closed loop drops out.
        self._sinks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopSink] = (
            weakref.WeakKeyDictionary()
        )
        self.batches_committed = 0
        self.batches_rerun = 0  # after a failure that had changed aggregates (should be rare)
        self.commands_committed = 0

    @property
    def cached_aggregates(self) -> int:
        return len(self.cache)

    @property
    def ready(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ asyncio side

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        """Answers every command already accepted, then stops the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

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
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            works = [first]
            size = len(first.commands)
            deadline = time.monotonic() + self.batch_window_s
            while size < self.batch_size_max:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                works.append(item)
                size += len(item.commands)
            self._process(works)

    def _process(self, works: list[Work]) -> None:
        try:
            self._run_batch(works, attempt=0)
        except Exception as error:
            log.exception("writer_batch_crashed", commands=sum(len(w.commands) for w in works))
            self.cache.clear()
            for work in works:
                if not work.done:
                    self._resolve(work, error)
        with self._depth_lock:
            self._depth -= sum(len(w.commands) for w in works)

    def _run_batch(self, works: list[Work], attempt: int) -> None:
        while True:
            works = [work for work in works if not work.done]
            if not works:
                return
            session = BatchSession(self.ledger, self.cache, self.clock())
            results: dict[int, Any] = {}
            try:
                session.prefetch(works)
                rerun = any(self._apply(work, session, results) for work in works)
            except PersistenceError as error:
                session.evict_all()
                log.error("writer_store_unreachable", error=str(error))
                self._fail(
                    works, UnavailableError("the event store is unreachable; nothing was recorded")
                )
                return
            if not rerun:
                self._save(works, session, results, attempt)
                return
            # A work failed after changing aggregates: drop its changes with everything the
            # batch touched, and run the others again on fresh state.
            session.evict_all()
            self.batches_rerun += 1

    def _apply(self, work: Work, session: BatchSession, results: dict[int, Any]) -> bool:
        """Runs one work's commands; True when it failed after changing aggregates."""
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
                self._resolve(work, error)
                return dirty
            except PersistenceError:
                raise
            except Exception as error:
                log.exception("command_crashed", command=type(command).__name__)
                session.drop_work_results()
                self._resolve(work, error)
                return True
        results[id(work)] = outcomes if work.atomic else outcomes[0]
        return False

    def _save(
        self, works: list[Work], session: BatchSession, results: dict[int, Any], attempt: int
    ) -> None:
        pending = [work for work in works if not work.done]
        probe = next(
            (event for aggregate in session.touched.values() for event in aggregate.pending_events),
            None,
        )
        try:
            positions = (
                self.ledger.record(session.touched.values(), results_rows(session))
                if session.has_pending()
                else {}
            )
        except (IntegrityError, PersistenceError) as error:
            # The commit may have succeeded with its acknowledgement lost (the library retries
            # the insert, which then meets its own rows): look before treating it as failed.
            outcome = self._committed(probe, next(iter(session.results.values()), None))
            if outcome is True:
                log.warning("writer_commit_ack_lost", commands=len(pending), error=str(error)[:200])
                positions = {}
            else:
                session.evict_all()
                if isinstance(error, IntegrityError) and outcome is False:
                    self._on_conflict(pending, attempt, error)
                else:
                    log.error("writer_commit_failed", error=str(error), commands=len(pending))
                    detail = (
                        "the event store is unreachable; nothing was recorded"
                        if outcome is False
                        else "the event store failed during the commit and the outcome is "
                        "unknown; retry with the same Idempotency-Key"
                    )
                    self._fail(pending, UnavailableError(detail))
                return
        self._after_commit(pending, session, results, positions)

    def _committed(self, probe: Any, result: StoredResult | None) -> bool | None:
        """Whether the batch's first event (or, with none, its first result) is stored exactly
        as this batch made it: True (committed), False (not), None (the store cannot tell)."""
        try:
            if probe is not None:
                state = self.ledger.stored_state(probe.originator_id, probe.originator_version)
                return (
                    state is not None and state == self.ledger.mapper.to_stored_event(probe).state
                )
            if result is not None:
                return self.ledger.stored_results([result.id]).get(result.id) == result
        except PersistenceError:
            return None
        return False

    def _after_commit(
        self,
        works: list[Work],
        session: BatchSession,
        results: dict[int, Any],
        positions: dict[tuple[UUID, int], int],
    ) -> None:
        for aggregate_id, aggregate in session.touched.items():
            if aggregate_id not in session.from_cache:
                self.cache.put(aggregate, session.loaded_at[aggregate_id])
        self._fill_positions(works, results, positions)
        self.batches_committed += 1
        self.commands_committed += sum(len(work.commands) for work in works)
        self._resolve_all(works, results)
        try:
            self._take_snapshots(session)
        except Exception:
            log.exception("snapshot_crashed")

    def _on_conflict(self, works: list[Work], attempt: int, error: Exception) -> None:
        """Runs the batch again on fresh state (a stale cache is the usual cause); if it still
        conflicts, in halves until the conflicting command stands alone. Only a command that
        conflicts alone CONFLICT_RETRIES_MAX times fails."""
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
        self, works: list[Work], results: dict[int, Any], positions: dict[tuple[UUID, int], int]
    ) -> None:
        outcomes = [o for w in works for o in (results[id(w)] if w.atomic else [results[id(w)]])]
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

    def _take_snapshots(self, session: BatchSession) -> None:
        """Snapshots accounts that crossed a multiple of SNAPSHOT_INTERVAL in this batch."""
        snapshots = []
        for aggregate_id, aggregate in session.touched.items():
            before = session.versions_at_load[aggregate_id]
            if isinstance(aggregate, Account) and (
                aggregate.version // SNAPSHOT_INTERVAL > before // SNAPSHOT_INTERVAL
            ):
                snapshots.append(Snapshot.take(aggregate))
        if snapshots and self.ledger.snapshots is not None:
            try:
                self.ledger.snapshots.put(snapshots)
            except (IntegrityError, PersistenceError) as error:  # a snapshot is only a shortcut
                log.warning("snapshot_failed", error=str(error)[:200], count=len(snapshots))

    def _fail(self, works: list[Work], error: Exception) -> None:
        for work in works:
            if not work.done:
                self._resolve(work, error)

    def _resolve(self, work: Work, result: Any) -> None:
        work.done = True
        work.sink.deliver([(work.token, result)])

    def _resolve_all(self, works: list[Work], results: dict[int, Any]) -> None:
        """Answers a committed batch with one delivery per sink (one wake-up per event loop,
        one message per writer-process client), not one per command."""
        answers: dict[Sink, list[tuple[Any, Any]]] = {}
        for work in works:
            work.done = True
            answers.setdefault(work.sink, []).append((work.token, results[id(work)]))
        for sink, pairs in answers.items():
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

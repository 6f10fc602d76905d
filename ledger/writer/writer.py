"""The group-commit writer (docs/adr/0001, docs/architecture.md).

`await writer.submit(command)` hands a command to one worker thread. The thread gathers what
arrives within a short window (or up to a batch limit), applies the commands in arrival order
to cached aggregates, and saves the whole batch with one `Ledger.record(...)` (one
transaction); each caller is answered only then. So every answer means committed.

Two batches are under way at once: while one commits, on the committer's thread, the writer's
thread applies the next on top of it, in memory (ledger/writer/session.py); the next is sent to the
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
import queue
import random
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog

from ledger.areas import REGISTRY
from ledger.clock import Clock, utc_now
from ledger.commands import Envelope
from ledger.errors import UnavailableError, WriteConflictError
from ledger.registry import Registry
from ledger.store.application import Ledger
from ledger.writer.answers import Answers
from ledger.writer.applying import BatchApplier
from ledger.writer.batch import Batch, Commit, Counters, InFlight, Sink, Work, fail, resolve
from ledger.writer.cache import AggregateCache
from ledger.writer.committing import Committer
from ledger.writer.session import BatchSession
from ledger.writer.submitting import LoopSink, Submitting, check_commands

log = structlog.get_logger("ledger.writer")

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

_STOP = object()
_COMMIT_ENDED = object()  # queued by the committer as each commit ends


class Writer(Submitting):
    def __init__(
        self,
        ledger: Ledger,
        *,
        batch_size_max: int = BATCH_SIZE_MAX,
        batch_window_s: float = BATCH_WINDOW_S,
        cache_size_max: int = CACHE_SIZE_MAX,
        clock: Clock = utc_now,
        registry: Registry = REGISTRY,
    ) -> None:
        self.ledger = ledger
        self.batch_size_max = batch_size_max
        self.batch_window_s = batch_window_s
        self.cache = AggregateCache(cache_size_max)
        self.clock = clock
        self.counters = Counters()
        self.applier = BatchApplier(ledger, self.cache, Answers(registry), clock, self.counters)
        self.committer = Committer(ledger, self.counters)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._depth = 0
        self._depth_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._commits: ThreadPoolExecutor | None = None
        # One sink per event loop, so a batch wakes each loop once; a closed loop drops out.
        self._sinks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopSink] = (
            weakref.WeakKeyDictionary()
        )

    # Counters for GET /metrics (api/roles/writer_process.py mirrors them for a child).
    @property
    def batches_committed(self) -> int:
        return self.counters.batches_committed

    @property
    def commands_committed(self) -> int:
        return self.counters.commands_committed

    @property
    def batches_rerun(self) -> int:
        return self.counters.batches_rerun

    @property
    def apply_us(self) -> int:
        return self.counters.apply_us

    @property
    def commit_us(self) -> int:
        return self.counters.commit_us

    @property
    def queued_us(self) -> int:
        return self.counters.queued_us

    @property
    def works_answered(self) -> int:
        return self.counters.works_answered

    @property
    def cached_aggregates(self) -> int:
        return len(self.cache)

    @property
    def ready(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ asyncio side

    def start(self) -> None:
        if self._thread is None:
            self._commits = ThreadPoolExecutor(
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
        if self._commits is not None:
            self._commits.shutdown(wait=True)
            self._commits = None

    def _enqueue(self, envelopes: Sequence[Envelope[Any]], *, atomic: bool) -> asyncio.Future[Any]:
        """Checks the commands and hands them to the thread as one work; its future answers."""
        check_commands(envelopes, atomic=atomic, now=self.clock())  # bad input: 400 whatever else
        if self._thread is None:
            raise UnavailableError("the writer is not running")
        loop = asyncio.get_running_loop()
        sink = self._sinks.get(loop)
        if sink is None:
            sink = self._sinks[loop] = LoopSink(loop)
        future = loop.create_future()
        self.enqueue(envelopes, atomic=atomic, sink=sink, token=future)
        return future

    def enqueue(
        self, envelopes: Sequence[Envelope[Any]], *, atomic: bool, sink: Sink, token: Any
    ) -> None:
        """Queues checked commands as one work; `sink` gets (token, answer) once it is
        committed or has failed. Raises UnavailableError when the queue is full."""
        with self._depth_lock:
            if self._depth + len(envelopes) > QUEUE_DEPTH_MAX:
                raise UnavailableError("the writer is overloaded; retry shortly")
            self._depth += len(envelopes)
        self._queue.put(Work(commands=envelopes, atomic=atomic, sink=sink, token=token))

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
            batch = self.applier.prepare(works, behind, attempt=0)
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
            assert self._commits is not None
            commit = self._commits.submit(self.committer.commit, batch)
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
        fail(works, error)

    def _done(self, works: list[Work]) -> None:
        with self._depth_lock:
            self._depth -= sum(len(w.commands) for w in works)

    def _run_batch(self, works: list[Work], attempt: int) -> None:
        while True:
            works = [work for work in works if not work.done]
            if not works:
                return
            batch = self.applier.prepare(works, None, attempt)
            if batch.unreachable is not None:
                batch.session.evict_all()
                self._unreachable(batch)
                return
            if batch.dirty is None:
                commit: Future[Commit] = Future()
                try:
                    commit.set_result(self.committer.commit(batch))
                except Exception as error:  # noqa: BLE001 - _settle reports it
                    commit.set_exception(error)
                self._settle((batch, commit), done=False)
                return
            # A work failed after changing aggregates: answer it, drop its changes with
            # everything the batch touched, and run the others again on fresh state.
            resolve(batch.dirty, batch.answers[id(batch.dirty)])
            batch.session.evict_all()
            self.counters.batches_rerun += 1

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
        # Expected while the store is down (its gate logs the outage once): not an ERROR.
        log.warning("writer_store_unreachable", error=str(batch.unreachable))
        fail(batch.works, UnavailableError("the event store is unreachable; nothing was recorded"))

    def _on_conflict(self, works: list[Work], attempt: int, error: Exception) -> None:
        """Runs the batch again on fresh state (a stale cache is the usual cause); if it still
        conflicts, in halves until the conflicting command stands alone. Only a command that
        conflicts alone CONFLICT_RETRIES_MAX times fails."""
        works = [work for work in works if not work.done]
        log.info("writer_conflict", commands=len(works), attempt=attempt, error=str(error)[:200])
        if len(works) == 1:
            if attempt >= CONFLICT_RETRIES_MAX:
                fail(works, WriteConflictError("concurrent changes kept conflicting; retry"))
            else:
                time.sleep(random.uniform(0, min(CONFLICT_BACKOFF_MAX_S, 0.001 * 2**attempt)))  # noqa: S311
                self._run_batch(works, attempt + 1)
        elif attempt == 0:
            self._run_batch(works, attempt + 1)
        else:
            middle = len(works) // 2
            self._run_batch(works[:middle], attempt)
            self._run_batch(works[middle:], attempt)

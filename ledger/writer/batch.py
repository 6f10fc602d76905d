"""What the writer moves around: works (commands that succeed or fail together, and where their
answer goes), batches (works applied on one session, ready to store), and its counters."""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent

from ledger.commands import Envelope
from ledger.store.recorder import EventColumns, StoredRow
from ledger.writer.session import BatchSession


class Sink(Protocol):
    """Where a batch's answers go: `deliver` gets (token, result) pairs, a result being an
    Outcome, a list of them (atomic) or an exception. Called on the writer's thread."""

    def deliver(self, pairs: list[tuple[Any, Any]]) -> None: ...


@dataclass(eq=False)
class Work:
    """Commands that succeed or fail together (one, or an atomic batch), and where their
    answer goes: `token` (a future, or a caller's request number) delivered to `sink`."""

    commands: Sequence[Envelope[Any]]
    atomic: bool
    sink: Sink
    token: Any
    done: bool = field(default=False)
    queued_at: float = field(default_factory=time.monotonic)


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


@dataclass
class Counters:
    """Where the writer's work and time go, summed since it started (GET /metrics): batches
    and commands committed, batches run again after a failure that had changed aggregates
    (should be rare), microseconds applying and encoding batches (the writer's thread),
    storing those that commit (the committer's), and each committed work's wait from being
    queued to being answered."""

    batches_committed: int = 0
    commands_committed: int = 0
    batches_rerun: int = 0
    apply_us: int = 0
    commit_us: int = 0
    queued_us: int = 0
    works_answered: int = 0


def fail(works: list[Work], error: Exception) -> None:
    for work in works:
        if not work.done:
            resolve(work, error)


def resolve(work: Work, result: Any) -> None:
    work.done = True
    work.sink.deliver([(work.token, result)])


def resolve_all(works: list[Work], answers: dict[int, Any], counters: Counters) -> None:
    """Answers a committed batch with one delivery per sink (one wake-up per event loop,
    one message per writer-process client), not one per command."""
    pairs_of: dict[Sink, list[tuple[Any, Any]]] = {}
    now = time.monotonic()
    for work in works:
        if not work.done:
            work.done = True
            pairs_of.setdefault(work.sink, []).append((work.token, answers[id(work)]))
            counters.queued_us += int((now - work.queued_at) * 1e6)
            counters.works_answered += 1
    for sink, pairs in pairs_of.items():
        sink.deliver(pairs)

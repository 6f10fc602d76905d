"""The scheduler: time that acts on its own (docs/adr/0007).

One process role (`ledger schedule`, started by `serve` like the follower and the relay) runs
two loops:
- the due model (projections/due_times.py `DueTimes`) on the shared tailer, which also keeps
  the scheduler's advisory lock: one scheduler active per database, the others standby;
- while it is the active one, the sweep: it finds the items due by its time, sends the
  command each one's schedule names (ledger/registry.py) through a writer of its own, in
  batches (`submit_each`), each under the item's deterministic key (`due_key`), and marks
  them done once committed. The same item sent twice (a restart, a failover mid-sweep, an
  old active one that has not noticed yet) is answered from the answer stored under its key:
  applied once. A command that failed is tried again after a back-off.

It wakes at the next due time, when the due model has added an item, or after
SWEEP_POLL_MAX_S at most. Its time is the database's clock unless a clock is given (tests
move one): every scheduler, and every read of the read models, goes by the same clock.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from eventsourcing.persistence import Mapper

from ledger.areas import REGISTRY
from ledger.clock import Clock, utc_now
from ledger.commands import Command, Envelope
from ledger.errors import LedgerError
from ledger.outcome import Outcome
from ledger.registry import DueItem, Registry
from ledger.store.application import Ledger
from ledger.writer.writer import Writer
from projections.due_times import (
    DueTimes,
    due_now,
    mark_done,
    mark_failed,
    next_due_at,
    purge_done,
)
from projections.tailer import (
    CONNECT_TIMEOUT_S,
    CONNECTION_ERRORS,
    RECONNECT_BACKOFF_MAX_S,
    Tailer,
    close_quickly,
    wait_any,
)

log = structlog.get_logger("projections.scheduler")

# Advisory lock key: "ledg" "schd".
ADVISORY_LOCK_KEY = 0x6C656467_73636864
# Due items sent per round (one `submit_each`): about one writer batch.
SWEEP_BATCH_MAX = 1_000
# The longest the sweep sleeps: it looks again at least this often, whatever it expects.
SWEEP_POLL_MAX_S = 1.0
# After marking items done, the sweep looks again this soon to purge them once projected.
PURGE_AFTER_S = 0.05
# A standby looks this often whether it has become the active one.
STANDBY_POLL_S = 0.5
# Back-off of an item whose command failed: doubling from the first to the last.
RETRY_BACKOFF_FIRST_S = 1.0
RETRY_BACKOFF_MAX_S = 300.0
# Accounts the scheduler's writer keeps cached: it touches each rarely.
WRITER_CACHE_SIZE_MAX = 10_000


class Scheduler:
    def __init__(
        self,
        database_url: str,
        schema: str,
        mapper: Mapper[UUID],
        *,
        clock: Clock | None = None,
        registry: Registry = REGISTRY,
        batch_size_max: int = SWEEP_BATCH_MAX,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.registry = registry
        self.clock = clock  # None: the database's
        self.batch_size_max = batch_size_max
        self.due = DueTimes(schema, mapper, registry, ADVISORY_LOCK_KEY, on_added=self.wake)
        self._tailer = Tailer(database_url, schema, self.due)
        self._wake = asyncio.Event()
        # Items sent and answered, and sent and failed, since it started (logs and tests).
        self.sent = 0
        self.failed = 0

    @property
    def active(self) -> bool:
        """Whether this scheduler holds the lock (not a standby) and its due model has caught
        up on every kind (a schedule new since it was built: docs/adr/0007)."""
        return self._tailer.active and self.due.ready

    async def create_tables(self, conn: asyncpg.Connection) -> None:
        """The due model's tables (and the read models' it reads), if missing."""
        await self._tailer.create_tables(conn)

    def wake(self) -> None:
        """Makes the sweep look now (a new item, or a test that moved its clock)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Standby until it holds the lock, then keeps the due model and sweeps, until
        `stop`; its writer answers every command it accepted before it returns."""
        ledger = await asyncio.to_thread(Ledger, self.database_url, self.schema)
        writer = Writer(
            ledger,
            clock=self.clock or utc_now,
            cache_size_max=WRITER_CACHE_SIZE_MAX,
            registry=self.registry,
        )
        writer.start()
        try:
            async with asyncio.TaskGroup() as tasks:  # one failing cancels the other
                tasks.create_task(self._tailer.run(stop))
                tasks.create_task(self._sweeps(stop, writer))
        finally:
            await writer.stop()
            await asyncio.to_thread(ledger.close)

    async def _sweeps(self, stop: asyncio.Event, writer: Writer) -> None:
        conn: asyncpg.Connection | None = None
        backoff_s = 0.1
        try:
            while not stop.is_set():
                try:
                    if not self.active:
                        await wait_any(self._wake, stop, STANDBY_POLL_S)
                        self._wake.clear()
                        continue
                    if conn is None or conn.is_closed():
                        conn = await self._connect()
                    # Cleared before the sweep reads: an item added meanwhile leaves it set.
                    self._wake.clear()
                    wait_s = await self.sweep(conn, writer)
                    backoff_s = 0.1
                    if wait_s > 0:
                        await wait_any(self._wake, stop, wait_s)
                except CONNECTION_ERRORS as error:
                    log.warning(
                        "scheduler_connection_lost", error=str(error) or type(error).__name__
                    )
                    if conn is not None:
                        await close_quickly(conn)
                    conn = None
                    await wait_any(stop, None, backoff_s)
                    backoff_s = min(RECONNECT_BACKOFF_MAX_S, backoff_s * 2)
                except asyncpg.PostgresError as error:  # a deadlock, a statement timeout
                    log.warning("scheduler_sweep_failed", error=str(error))
                    await wait_any(stop, None, backoff_s)
                    backoff_s = min(RECONNECT_BACKOFF_MAX_S, backoff_s * 2)
        finally:
            if conn is not None:
                await close_quickly(conn)

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.database_url,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={
                "search_path": self.schema,
                "application_name": "ledger scheduler sweep",
            },
        )
        return conn

    async def now(self, conn: asyncpg.Connection) -> datetime:
        if self.clock is not None:
            return self.clock()
        value: datetime = await conn.fetchval("SELECT clock_timestamp()")
        return value

    async def sweep(self, conn: asyncpg.Connection, writer: Writer) -> float:
        """One round: sends what is due (at most a batch), marks it done or to be retried,
        purges what the read models hold. Returns how long to wait before the next round (0:
        more is due now)."""
        schema = self.schema
        now = await self.now(conn)
        await purge_done(conn, schema)
        items = await due_now(conn, schema, now, self.batch_size_max)
        if items:
            await self._send(conn, writer, items, now)
            if len(items) == self.batch_size_max:
                return 0.0  # more may be due now
            return min(PURGE_AFTER_S, await self._wait_s(conn))
        return await self._wait_s(conn)

    async def _wait_s(self, conn: asyncpg.Connection) -> float:
        following = await next_due_at(conn, self.schema)
        if following is None:
            return SWEEP_POLL_MAX_S
        wait_s = (following - await self.now(conn)).total_seconds()
        return min(SWEEP_POLL_MAX_S, max(0.0, wait_s))

    async def _send(
        self, conn: asyncpg.Connection, writer: Writer, items: list[DueItem], now: datetime
    ) -> None:
        started = time.monotonic()
        envelopes: list[Envelope[Command]] = [
            Envelope(tenant_id=item.tenant_id, command=self.registry.scheduled_command(item))
            for item in items
        ]
        results = await self._submit(writer, envelopes)
        done = [
            item for item, result in zip(items, results, strict=True) if isinstance(result, Outcome)
        ]
        failed = [
            (item, result)
            for item, result in zip(items, results, strict=True)
            if not isinstance(result, Outcome)
        ]
        # Every command answered has committed: its events are at or below this position.
        position = int(
            await conn.fetchval(
                f'SELECT coalesce(max(notification_id), 0) FROM "{self.schema}".ledger_events'
            )
        )
        async with self.due.lock:
            if done:
                await mark_done(conn, self.schema, done, position)
            if failed:
                await mark_failed(
                    conn,
                    self.schema,
                    [item for item, _ in failed],
                    now,
                    RETRY_BACKOFF_FIRST_S,
                    RETRY_BACKOFF_MAX_S,
                )
        for item, error in failed:
            log.error(
                "scheduled_command_failed",
                tenant_id=item.tenant_id,
                account_id=item.account_id,
                kind=item.kind,
                key=item.key,
                due_at=item.due_at.isoformat(),
                error=_describe(error),
            )
        self.sent += len(done)
        self.failed += len(failed)
        took_s = time.monotonic() - started
        log.info(
            "scheduler_swept",
            done=len(done),
            failed=len(failed),
            # From the earliest item's due time to its commit, about.
            lag_s_max=round((now - min(i.due_at for i in items)).total_seconds() + took_s, 3),
            took_s=round(took_s, 3),
        )

    async def _submit(
        self, writer: Writer, envelopes: list[Envelope[Command]]
    ) -> list[Outcome | BaseException]:
        """Each command's answer, or what it failed with. A command that crashes (a bug, not
        a LedgerError) makes `submit_each` raise: then each is sent again on its own (those
        that committed are answered from their keys), so one bad item fails alone."""
        try:
            return list(await writer.submit_each(envelopes))
        except Exception:
            log.exception("scheduler_batch_crashed", items=len(envelopes))
        return list(
            await asyncio.gather(*(writer.submit(e) for e in envelopes), return_exceptions=True)
        )


def _describe(error: Any) -> str:
    if isinstance(error, LedgerError):
        return f"{error.code}: {error.detail}"
    return str(error) or type(error).__name__

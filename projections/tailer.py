"""The tailer: the one loop that reads the event store in order for each of its consumers.

The follower (projections/follower.py) and the relay (events/relay.py) are consumers, and so is
anything later that acts on every committed event. For its consumer a tailer
- connects and creates the consumer's tables under the schema's DDL lock;
- takes the consumer's advisory lock for its schema (`schema_lock_key`), waiting as a standby
  until it gets it (one active per schema, the others ready to take over when its session
  ends; deployments in other schemas of the same database have locks of their own);
- LISTENs on the event store's NOTIFY channel and reads the consumer's recorded position;
- then, until stopped, reads the next batch after that position and hands it to the consumer,
  which applies it and records the position it reached: its own transaction and order, so its
  own guarantee (the follower's rows and position in one transaction, exactly once; the
  relay's position after NATS's acks, at least once). After a short batch it waits for a
  NOTIFY, or the consumer's poll interval should one be missed.

The wake-up is cleared before each read, never after one: a commit that lands while a read
runs, which that read may not see, leaves it set, and a batch shorter than the limit means
caught up as of the read (docs/adr/0004).

A lost connection (PostgreSQL restarted, the session terminated, the network cut: any of
CONNECTION_ERRORS) ends neither the loop nor the process: the tailer drops the connection,
logs one `tailer_connection_lost` warning for the outage, waits RECONNECT_BACKOFF_FIRST_S
(doubling to RECONNECT_BACKOFF_MAX_S while it keeps failing, each attempt logged at debug
only) and starts again from the top: tables, lock (standby if another took it meanwhile),
LISTEN, and the position read again from the consumer's tracking row, so what the consumer
recorded, not what it was doing, decides where it resumes; `tailer_reconnected` says how long
it was away. The back-off's cap is what bounds the time from the store answering to the
consumer working again (issue 18: within 1 s), so it stays short: an attempt on a store that
is down is one refused connect. Its session is named `ledger <consumer name>`
(pg_stat_activity.application_name).

`Tailer`, `Consumer` and `CONNECTION_ERRORS` are the public seam: consumers outside
projections/ use nothing else of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import structlog

from projections.ddl_lock import run_ddl
from projections.event_store import EVENTS_CHANNEL, events_after, events_of
from projections.role_status import Status, StatusReporter

__all__ = ["CONNECTION_ERRORS", "Consumer", "Tailer", "schema_lock_key"]

log = structlog.get_logger("projections.tailer")

# How often a standby tries to take its consumer's lock.
STANDBY_RETRY_S = 1.0
# A connection that does not close politely within this is cut.
CLOSE_TIMEOUT_S = 5.0
# A connect that takes longer is given up and tried again (and a stop waits for it no longer).
CONNECT_TIMEOUT_S = 10.0
# After a lost connection: the first wait before connecting again (a terminated session is
# usually over by then), doubled after each failed attempt up to the last, so a database that
# stays down costs one refused connect every RECONNECT_BACKOFF_MAX_S, and one that answers
# again is tailed again within that (plus a connect).
RECONNECT_BACKOFF_FIRST_S = 0.05
RECONNECT_BACKOFF_MAX_S = 0.25

# What a lost connection raises, in asyncpg or under it: the server gone or going
# (restart, shutdown, a terminated session: 08xxx, 57P01-57P03), a connection already
# closed or never made, a socket error, a connect that timed out; and a connection the lost
# server left mid-operation (asyncpg's InternalClientError "cannot switch to state …; another
# operation is in progress", seen on the relay's connection after a PostgreSQL restart).
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,  # ConnectionDoesNotExistError among them
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,  # ConnectionError among them
    TimeoutError,
)


class Consumer(Protocol):
    """What a tailer hands the event store to."""

    @property
    def name(self) -> str:
        """Its role in logs ("follower", "relay")."""

    @property
    def lock_key(self) -> int:
        """The consumer's kind: with the schema, the session advisory lock that keeps one
        consumer of its kind active per schema (`schema_lock_key`)."""

    @property
    def batch_size_max(self) -> int:
        """Stored events read at most per batch."""

    @property
    def poll_interval_s(self) -> float:
        """How long a caught-up tailer waits for a NOTIFY before it reads again anyway."""

    @property
    def accounts_only(self) -> bool:
        """Whether it is handed only the Account's events (skipped by the read, not after)."""

    @property
    def state_topics(self) -> frozenset[str] | None:
        """The topics whose stored state it reads (None: all); the other rows come with an
        empty state, which is all their position needs."""

    def table_statements(self) -> list[str]:
        """Its tables' DDL (`CREATE … IF NOT EXISTS`), run under the schema's DDL lock."""

    async def read_position(self, conn: asyncpg.Connection) -> int:
        """The position it recorded last (0 if none): the tailer reads after it."""

    async def activate(self, conn: asyncpg.Connection, position: int) -> None:
        """Called once it is the active consumer, with the position its batches follow."""

    async def handle(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> int:
        """Applies a batch of stored rows (never empty) and records the position it reached;
        returns that position (the one before, should it stop first)."""

    # Optional, read with getattr (projections.role_status reports them):
    # `trouble() -> tuple[str, str] | None`: what keeps the active consumer from its work
    # besides the store, as (state, error) (the relay: ("waiting_for_nats", ...));
    # `counters() -> dict[str, int]`: its own counters.


class Tailer:
    def __init__(self, database_url: str, schema: str, consumer: Consumer) -> None:
        self.database_url = database_url
        self.schema = schema
        self.consumer = consumer
        self.position = 0  # the last position the consumer recorded, as far as this tailer knows
        self.active = False
        self._wake = asyncio.Event()
        self._read_once = False  # whether the current session has read from the store
        self.connected = False  # a session is up (tables made, the lock taken or waited for)
        self.lost_at: float | None = None  # when the connection was lost, while it is
        self.last_error: str | None = None  # the last lost connection's error
        self.reconnects = 0  # outages it came back from

    async def create_tables(self, conn: asyncpg.Connection) -> None:
        await run_ddl(conn, self.schema, self.consumer.table_statements())

    async def aggregate_events(
        self, conn: asyncpg.Connection, originator_id: UUID
    ) -> list[asyncpg.Record]:
        """One aggregate's stored events in version order, for a consumer that needs an
        aggregate's state to handle a batch (the relay: a tenant's low-balance threshold)."""
        return await events_of(conn, self.schema, originator_id)

    def status(self) -> Status:
        """What this tailer's consumer is doing, for its row in ledger_role_status."""
        consumer: Any = self.consumer
        counters = consumer.counters() if hasattr(consumer, "counters") else {}
        if self.lost_at is not None:
            return Status("store_unreachable", False, self.position, self.last_error, counters)
        if not self.connected:
            return Status("starting", False, self.position, self.last_error, counters)
        if not self.active:
            return Status("standby", False, self.position, None, counters)
        trouble = consumer.trouble() if hasattr(consumer, "trouble") else None
        if trouble is not None:
            return Status(trouble[0], True, self.position, trouble[1], counters)
        return Status("active", True, self.position, None, counters)

    async def run(self, stop: asyncio.Event) -> None:
        """Waits to become the active consumer, then tails until `stop` is set, connecting
        again after each lost connection; its state is reported all along
        (projections.role_status)."""
        reporter_stop = asyncio.Event()
        reporter = StatusReporter(self.database_url, self.schema, self.consumer.name, self.status)
        reporting = asyncio.create_task(reporter.run(reporter_stop))
        try:
            await self._run(stop)
        finally:
            reporter_stop.set()
            await reporting

    async def _run(self, stop: asyncio.Event) -> None:
        backoff_s = RECONNECT_BACKOFF_FIRST_S
        while not stop.is_set():
            self._read_once = False
            try:
                await self._session(stop)
            except CONNECTION_ERRORS as error:
                self.last_error = str(error) or type(error).__name__
                if self._read_once or self.lost_at is None:  # a new outage
                    backoff_s = RECONNECT_BACKOFF_FIRST_S
                    self.lost_at = time.monotonic()
                    log.warning(
                        "tailer_connection_lost", role=self.consumer.name, error=self.last_error
                    )
                else:
                    log.debug(
                        "tailer_reconnect_failed",
                        role=self.consumer.name,
                        error=self.last_error,
                        retry_in_s=backoff_s,
                    )
                await wait_any(stop, None, backoff_s)
                backoff_s = min(RECONNECT_BACKOFF_MAX_S, backoff_s * 2)
            else:
                return

    async def _session(self, stop: asyncio.Event) -> None:
        """One connection's life: from connecting to `stop`, or to an error."""
        consumer = self.consumer
        conn = await asyncpg.connect(
            self.database_url,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={
                "search_path": self.schema,
                "application_name": f"ledger {consumer.name}",
            },
        )
        try:
            await self.create_tables(conn)
            self.connected = True
            if not await take_lock_or_stop(
                conn,
                schema_lock_key(consumer.lock_key, self.schema),
                stop,
                STANDBY_RETRY_S,
                consumer.name,
            ):
                return
            await conn.add_listener(EVENTS_CHANNEL, self._notified)
            # A connection lost while the tailer waits wakes it: its next read fails at once
            # instead of at the next poll.
            conn.add_termination_listener(self._notified)
            self.position = await consumer.read_position(conn)
            self.active = True
            await consumer.activate(conn, self.position)
            await self._follow(conn, stop)
        finally:
            self.active = self.connected = False
            await close_quickly(conn)  # ends the session: the advisory lock goes with it

    async def _follow(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        consumer = self.consumer
        while not stop.is_set():
            # Cleared before the read, so a commit that lands while it runs (and that it may
            # not see) leaves the wake-up set; a short batch means caught up as of the read.
            self._wake.clear()
            limit = consumer.batch_size_max
            rows = await events_after(
                conn,
                self.schema,
                self.position,
                limit,
                accounts_only=consumer.accounts_only,
                state_topics=consumer.state_topics,
            )
            if not self._read_once:
                self._read_once = True
                self._reconnected()
            if rows:
                self.position = await consumer.handle(conn, rows)
            if len(rows) < limit:
                await wait_any(self._wake, stop, consumer.poll_interval_s)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    def _reconnected(self) -> None:
        if self.lost_at is not None:
            self.reconnects += 1
            log.info(
                "tailer_reconnected",
                role=self.consumer.name,
                outage_s=round(time.monotonic() - self.lost_at, 3),
            )
            self.lost_at = None


def schema_lock_key(lock_key: int, schema: str) -> int:
    """The advisory lock of a consumer kind in one schema: a non-negative 63-bit key from both
    (two deployments in one database, in two schemas, each keep their own follower and relay
    active; with one key for the kind, one deployment's follower kept the other's standing by
    for good)."""
    digest = hashlib.blake2b(f"{lock_key}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


async def take_lock_or_stop(
    conn: asyncpg.Connection, key: int, stop: asyncio.Event, retry_s: float, role: str
) -> bool:
    """Waits in standby until this session holds the advisory lock `key` (True) or `stop` is
    set (False)."""
    while not stop.is_set():
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key) is True:
            return True
        log.info("standby", role=role)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(retry_s):
                await stop.wait()
    return False


async def wait_any(first: asyncio.Event, second: asyncio.Event | None, timeout_s: float) -> None:
    """Returns when either event is set or after timeout_s."""
    waiters = [asyncio.ensure_future(first.wait())]
    if second is not None:
        waiters.append(asyncio.ensure_future(second.wait()))
    await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()


async def close_quickly(conn: asyncpg.Connection) -> None:
    """Closes a connection (ending its session and advisory lock) even mid-query, lost or
    cancelled: what does not close politely within CLOSE_TIMEOUT_S is cut."""
    if conn.is_closed():
        return
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await asyncio.shield(conn.close())
    except asyncio.CancelledError:
        conn.terminate()
        raise
    except (*CONNECTION_ERRORS, asyncpg.PostgresError):
        conn.terminate()  # the session ends with the socket: nothing more to wait for

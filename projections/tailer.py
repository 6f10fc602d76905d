"""The tailer: the one loop that reads the event store in order for each of its consumers.

The follower (projections/follower.py) and the relay (events/relay.py) are consumers, and so is
anything later that acts on every committed event. For its consumer a tailer
- connects and creates the consumer's tables under the schema's DDL lock;
- takes the consumer's advisory lock, waiting as a standby until it gets it (one active per
  database, the others ready to take over when its session ends);
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
logs one `tailer_connection_lost` warning, waits RECONNECT_BACKOFF_FIRST_S (doubling to
RECONNECT_BACKOFF_MAX_S while it keeps failing) and starts again from the top: tables, lock
(standby if another took it meanwhile), LISTEN, and the position read again from the
consumer's tracking row, so what the consumer recorded, not what it was doing, decides where
it resumes. Its session is named `ledger <consumer name>` (pg_stat_activity.application_name).

`Tailer`, `Consumer` and `CONNECTION_ERRORS` are the public seam: consumers outside
projections/ use nothing else of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import structlog

from projections.ddl_lock import run_ddl
from projections.event_store import EVENTS_CHANNEL, events_after, events_of

__all__ = ["CONNECTION_ERRORS", "Consumer", "Tailer"]

log = structlog.get_logger("projections.tailer")

# How often a standby tries to take its consumer's lock.
STANDBY_RETRY_S = 1.0
# A connection that does not close politely within this is cut.
CLOSE_TIMEOUT_S = 5.0
# A connect that takes longer is given up and tried again (and a stop waits for it no longer).
CONNECT_TIMEOUT_S = 10.0
# After a lost connection: the first wait before connecting again (a restart or a terminated
# session is usually over by then), doubled after each failed attempt up to the last, so a
# database that stays down costs one attempt and one warning every RECONNECT_BACKOFF_MAX_S.
RECONNECT_BACKOFF_FIRST_S = 0.1
RECONNECT_BACKOFF_MAX_S = 5.0

# What a lost connection raises, in asyncpg or under it: the server gone or going
# (restart, shutdown, a terminated session: 08xxx, 57P01-57P03), a connection already
# closed or never made, a socket error, a connect that timed out.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
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
        """The session advisory lock that keeps one consumer of its kind active."""

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


class Tailer:
    def __init__(self, database_url: str, schema: str, consumer: Consumer) -> None:
        self.database_url = database_url
        self.schema = schema
        self.consumer = consumer
        self.position = 0  # the last position the consumer recorded, as far as this tailer knows
        self.active = False
        self._wake = asyncio.Event()
        self._read_once = False  # whether the current session has read from the store

    async def create_tables(self, conn: asyncpg.Connection) -> None:
        await run_ddl(conn, self.schema, self.consumer.table_statements())

    async def aggregate_events(
        self, conn: asyncpg.Connection, originator_id: UUID
    ) -> list[asyncpg.Record]:
        """One aggregate's stored events in version order, for a consumer that needs an
        aggregate's state to handle a batch (the relay: a tenant's low-balance threshold)."""
        return await events_of(conn, self.schema, originator_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Waits to become the active consumer, then tails until `stop` is set, connecting
        again after each lost connection."""
        backoff_s = RECONNECT_BACKOFF_FIRST_S
        while not stop.is_set():
            self._read_once = False
            try:
                await self._session(stop)
            except CONNECTION_ERRORS as error:
                if self._read_once:  # the session worked: this is a new outage
                    backoff_s = RECONNECT_BACKOFF_FIRST_S
                log.warning(
                    "tailer_connection_lost",
                    role=self.consumer.name,
                    error=str(error) or type(error).__name__,
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
            if not await take_lock_or_stop(
                conn, consumer.lock_key, stop, STANDBY_RETRY_S, consumer.name
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
            self.active = False
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
            self._read_once = True
            if rows:
                self.position = await consumer.handle(conn, rows)
            if len(rows) < limit:
                await wait_any(self._wake, stop, consumer.poll_interval_s)

    def _notified(self, *_: Any) -> None:
        self._wake.set()


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

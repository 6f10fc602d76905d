"""The relay: every committed entry to NATS JetStream, in ledger order (docs/architecture.md decision 6).

PostgreSQL is the record; NATS is a copy. The relay is a consumer of the event store's tailer
(projections/tailer.py), handed only the Account's events after its stored position: for each
window of at most PUBLISH_IN_FLIGHT_MAX of them it publishes their messages with
`Nats-Msg-Id = position`, waits for every ack, and only then stores the window's last position.
A crash re-sends the window: JetStream drops duplicates within its duplicate window, and
consumers can always dedupe by position. NATS down: the relay waits with backoff and resumes
from its position, however long the outage. One relay is active per database (advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from eventsourcing.persistence import Mapper

from events.contract import encode, entry_message, low_balance_message
from events.jetstream import (
    DUPLICATE_WINDOW_S,
    STREAM_NAME,
    JetStream,
    Message,
    StreamUnavailableError,
)
from events.low_balance import HOLD_ENDED_TYPES, crossed_below
from events.subjects import entry_subject
from ledger.accounts.account import Account
from ledger.accounts.stored_entries import entries_of_rows, event_of_row
from ledger.accounts.views import Entry
from ledger.ids import tenant_aggregate_id
from ledger.tenants.tenant import Tenant
from projections.tailer import CONNECTION_ERRORS, Tailer

log = structlog.get_logger("events.relay")

# Account events published per window, at most: their messages are in flight, unacknowledged,
# together (a low-balance alert adds one to its entry's).
PUBLISH_IN_FLIGHT_MAX = 256
# Backoff while NATS is down (or the position cannot be stored): doubles from the first to the
# last.
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
# The back-up poll, should a NOTIFY be missed.
POLL_INTERVAL_S = 0.5
# Tenant thresholds are re-read at least this often.
TENANT_CACHE_TTL_S = 1.0
TRACKING_NAME = "nats_relay"
ADVISORY_LOCK_KEY = 0x6C656467_72656C61  # "ledg" "rela"


class Relay:
    name = "relay"
    lock_key = ADVISORY_LOCK_KEY
    accounts_only = True
    state_topics = None  # publishes every Account event

    def __init__(
        self,
        database_url: str,
        schema: str,
        mapper: Mapper[UUID],
        connect: Callable[[], Awaitable[Any]],
        *,
        stream_name: str = STREAM_NAME,
        duplicate_window_s: float = DUPLICATE_WINDOW_S,
        in_flight_max: int = PUBLISH_IN_FLIGHT_MAX,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.mapper = mapper
        self.stream = JetStream(connect, stream_name, duplicate_window_s)
        self.in_flight_max = in_flight_max
        self.position = 0
        self.published = 0
        self._s = f'"{schema}"'
        self._thresholds: dict[str, tuple[float, int | None]] = {}
        self._tailer = Tailer(database_url, schema, self)
        self._stop = asyncio.Event()  # the running relay's

    @property
    def active(self) -> bool:
        """Whether this relay holds the lock and publishes (not a standby)."""
        return self._tailer.active

    @property
    def batch_size_max(self) -> int:
        return self.in_flight_max

    @property
    def poll_interval_s(self) -> float:
        return POLL_INTERVAL_S

    def table_statements(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self._s}.relay_tracking "
            "(name text PRIMARY KEY, position bigint NOT NULL)"
        ]

    async def create_table(self, conn: asyncpg.Connection) -> None:
        await self._tailer.create_tables(conn)

    async def read_position(self, conn: asyncpg.Connection) -> int:
        value = await conn.fetchval(
            f"SELECT position FROM {self._s}.relay_tracking WHERE name = $1", TRACKING_NAME
        )
        return int(value or 0)

    async def store_position(self, conn: asyncpg.Connection, position: int) -> None:
        await conn.execute(
            f"INSERT INTO {self._s}.relay_tracking (name, position) VALUES ($1, $2) "
            f"ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
            TRACKING_NAME,
            position,
        )

    # ---------------------------------------------------------------- running

    async def run(self, stop: asyncio.Event) -> None:
        """Waits to become the active relay, then publishes until `stop` is set."""
        self._stop = stop
        try:
            await self._tailer.run(stop)
        finally:
            await self.stream.close()

    async def activate(self, conn: asyncpg.Connection, position: int) -> None:
        """Connects to NATS at once (creating the stream), not only once there is an entry."""
        self.position = position
        log.info("relay_active")
        await self._retried(self.stream.open)

    async def handle(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> int:
        """Publishes the window and, once every message is acknowledged, stores its position;
        returns the position stored (the one before, should the relay be stopped first)."""
        last = int(rows[-1][0])

        async def relay_window() -> None:
            await self.stream.publish(await self.messages_of(conn, rows))
            await self.store_position(conn, last)

        if not await self._retried(relay_window):
            return self.position
        self.position = last
        self.published += len(rows)
        return last

    async def _retried(self, attempt: Callable[[], Awaitable[Any]]) -> bool:
        """Runs `attempt` until it succeeds (True) or the relay is stopped (False), backing off
        after each failure of NATS or of storing the position. A lost database connection is
        not retried here, on a connection that is gone, but raised to the tailer."""
        backoff_s = BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                await attempt()
                return True
            except StreamUnavailableError as error:
                log.warning("relay_publish_failed", error=str(error), position=self.position)
            except CONNECTION_ERRORS:
                raise  # the tailer's: it connects again and reads the stored position again
            except asyncpg.PostgresError as error:
                log.warning("relay_store_failed", error=str(error))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff_s):
                    await self._stop.wait()
            backoff_s = min(BACKOFF_MAX_S, backoff_s * 2)
        return False

    async def messages_of(
        self, conn: asyncpg.Connection, rows: list[asyncpg.Record]
    ) -> list[Message]:
        """The window's messages in order: each entry's, then its low-balance alert when it
        takes `available` below the tenant's threshold."""
        messages: list[Message] = []
        rows_at: dict[int, Any] = {}
        # Entries decoded as the follower decodes them (msgspec, the library's mapper only for
        # what that path does not know): the same entry on NATS as in the read models.
        for tenant_id, entry in entries_of_rows(self.mapper, rows):
            messages.append(entry_message_of(tenant_id, entry))
            threshold = await self._threshold(conn, tenant_id)
            if threshold is None or entry.type in HOLD_ENDED_TYPES:
                continue
            crossing: Any = entry
            if entry.type == Account.HoldPlaced.entry_type:  # held-before needs hold_amount
                rows_at = rows_at or {int(row[0]): row for row in rows}
                crossing = event_of_row(self.mapper, *rows_at[entry.position][1:])
            if crossed_below(crossing, threshold):
                messages.append(low_balance_message_of(tenant_id, entry, threshold))
        return messages

    async def _threshold(self, conn: asyncpg.Connection, tenant_id: str) -> int | None:
        cached = self._thresholds.get(tenant_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < TENANT_CACHE_TTL_S:
            return cached[1]
        tenant: Any = None
        for row in await self._tailer.aggregate_events(conn, tenant_aggregate_id(tenant_id)):
            tenant = event_of_row(self.mapper, *row).mutate(tenant)
        threshold = tenant.settings.low_balance_threshold if isinstance(tenant, Tenant) else None
        self._thresholds[tenant_id] = (now, threshold)
        return threshold


def entry_message_of(tenant_id: str, entry: Entry) -> Message:
    position = str(entry.position)
    return Message(
        subject=entry_subject(tenant_id, entry.account_id, entry.type),
        payload=encode(entry_message(tenant_id, entry)),
        headers={"Nats-Msg-Id": position, "Ledger-Position": position},
        token=position,
    )


def low_balance_message_of(tenant_id: str, entry: Entry, threshold: int) -> Message:
    message_id = f"{entry.position}-low_balance"
    return Message(
        subject=entry_subject(tenant_id, entry.account_id, "low_balance"),
        payload=encode(low_balance_message(tenant_id, entry, threshold)),
        headers={"Nats-Msg-Id": message_id, "Ledger-Position": str(entry.position)},
        token=message_id,
    )

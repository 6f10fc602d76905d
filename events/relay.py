"""The relay: every committed entry to NATS JetStream, in ledger order (docs/architecture.md decision 6).

PostgreSQL is the record; NATS is a copy. The relay is a consumer of the event store's tailer
(projections/tailer.py), handed only the Account's events after its stored position: for each
window of at most PUBLISH_IN_FLIGHT_MAX of them it publishes their messages with
`Nats-Msg-Id = position`, waits for every ack, and only then stores the window's last position.
A crash re-sends the window: JetStream drops duplicates within its duplicate window, and
consumers can always dedupe by position. NATS down: the relay waits with backoff and resumes
from its position, however long the outage. One relay is active per schema (advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from eventsourcing.persistence import Mapper

from events.contract import encode, entry_message, low_balance_message
from events.jetstream import (
    DEPLOYMENT_HEADER,
    JetStream,
    Message,
    StreamConfig,
    StreamUnavailableError,
)
from events.low_balance import HOLD_ENDED_TYPES, crossed_below
from events.subjects import PREFIX, entry_subject
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
BACKOFF_MAX_S = 2.0
# While it waits for NATS, the relay says so this often (and once when it starts waiting).
WAITING_LOG_EVERY_S = 10.0
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
        stream: StreamConfig | None = None,
        message_id_namespace: str | None = None,
        in_flight_max: int = PUBLISH_IN_FLIGHT_MAX,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.mapper = mapper
        self.stream = JetStream(connect, stream or StreamConfig())
        self.subject_prefix = self.stream.config.subject_prefix
        # Nats-Msg-Id is `<namespace>:<position>` (two deployments' ids never collide on one
        # stream); the namespace is the configured one, else a configured subject prefix, else
        # none: the bare position of docs/api.md.
        self.namespace = message_id_namespace or (
            self.subject_prefix if self.subject_prefix != PREFIX else ""
        )
        self.deployment_id = ""  # this database's and schema's, read (or made) on activation
        self.in_flight_max = in_flight_max
        self.position = 0
        self.published = 0
        self.waiting_since: float | None = None  # waiting for NATS since (monotonic)
        self.last_error: str | None = None  # the last failure of NATS or of the store
        self._s = f'"{schema}"'
        self._thresholds: dict[str, tuple[float, int | None]] = {}
        self._tailer = Tailer(database_url, schema, self)
        self._stop = asyncio.Event()  # the running relay's

    @property
    def active(self) -> bool:
        """Whether this relay holds the lock and publishes (not a standby)."""
        return self._tailer.active

    def trouble(self) -> tuple[str, str] | None:
        """Waiting for NATS (tailer.Consumer's optional `trouble`)."""
        if self.waiting_since is not None:
            return ("waiting_for_nats", self.last_error or "nats unavailable")
        return None

    def counters(self) -> dict[str, int]:
        return {
            "published": self.published,
            "own_duplicates": self.stream.own_duplicates,
            "foreign_duplicates": self.stream.foreign_duplicates,
        }

    @property
    def identity(self) -> Identity:
        return Identity(self.subject_prefix, self.namespace, self.deployment_id)

    @property
    def batch_size_max(self) -> int:
        return self.in_flight_max

    @property
    def poll_interval_s(self) -> float:
        return POLL_INTERVAL_S

    def table_statements(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self._s}.relay_tracking "
            "(name text PRIMARY KEY, position bigint NOT NULL)",
            # One row: the id this deployment's messages carry (Ledger-Deployment), made once.
            f"CREATE TABLE IF NOT EXISTS {self._s}.relay_deployment "
            "(id text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())",
            f"INSERT INTO {self._s}.relay_deployment (id) "
            f"SELECT md5(random()::text || clock_timestamp()::text) "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self._s}.relay_deployment)",
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
        self.deployment_id = str(
            await conn.fetchval(
                f"SELECT id FROM {self._s}.relay_deployment ORDER BY created_at, id LIMIT 1"
            )
        )
        log.info("relay_active", position=position, stream=self.stream.stream_name)
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
        not retried here, on a connection that is gone, but raised to the tailer. While it
        waits it says so: a warning when NATS fails, `relay_waiting_for_nats` every
        WAITING_LOG_EVERY_S, `relay_nats_back` once it got through."""
        backoff_s = BACKOFF_FIRST_S
        last_said = 0.0
        while not self._stop.is_set():
            try:
                await attempt()
            except StreamUnavailableError as error:
                self.last_error = f"nats: {error}"
                now = time.monotonic()
                if self.waiting_since is None:
                    self.waiting_since = last_said = now
                    log.warning(
                        "relay_nats_unavailable",
                        error=str(error),
                        position=self.position,
                        stream=self.stream.stream_name,
                        retry_in_s=backoff_s,
                    )
                elif now - last_said >= WAITING_LOG_EVERY_S:
                    last_said = now
                    log.info(
                        "relay_waiting_for_nats",
                        error=str(error),
                        position=self.position,
                        waiting_s=round(now - self.waiting_since, 1),
                        retry_in_s=backoff_s,
                    )
            except CONNECTION_ERRORS:
                raise  # the tailer's: it connects again and reads the stored position again
            except asyncpg.PostgresError as error:
                self.last_error = f"store: {error}"
                log.warning("relay_store_failed", error=str(error))
            else:
                if self.waiting_since is not None:
                    log.info(
                        "relay_nats_back",
                        position=self.position,
                        waited_s=round(time.monotonic() - self.waiting_since, 3),
                    )
                    self.waiting_since = None
                return True
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
            messages.append(entry_message_of(tenant_id, entry, self.identity))
            threshold = await self._threshold(conn, tenant_id)
            if threshold is None or entry.type in HOLD_ENDED_TYPES:
                continue
            crossing: Any = entry
            if entry.type == Account.HoldPlaced.entry_type:  # held-before needs hold_amount
                rows_at = rows_at or {int(row[0]): row for row in rows}
                crossing = event_of_row(self.mapper, *rows_at[entry.position][1:])
            if crossed_below(crossing, threshold):
                messages.append(low_balance_message_of(tenant_id, entry, threshold, self.identity))
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


@dataclass(frozen=True, slots=True)
class Identity:
    """What tells one deployment's messages from another's."""

    subject_prefix: str = PREFIX
    namespace: str = ""  # of Nats-Msg-Id: none, the bare position
    deployment_id: str = ""  # Ledger-Deployment

    def message_id(self, token: str) -> str:
        return f"{self.namespace}:{token}" if self.namespace else token


def entry_message_of(tenant_id: str, entry: Entry, identity: Identity = Identity()) -> Message:
    position = str(entry.position)
    return Message(
        subject=entry_subject(tenant_id, entry.account_id, entry.type, identity.subject_prefix),
        payload=encode(entry_message(tenant_id, entry)),
        headers={
            "Nats-Msg-Id": identity.message_id(position),
            "Ledger-Position": position,
            DEPLOYMENT_HEADER: identity.deployment_id,
        },
        token=position,
    )


def low_balance_message_of(
    tenant_id: str, entry: Entry, threshold: int, identity: Identity = Identity()
) -> Message:
    token = f"{entry.position}-low_balance"
    return Message(
        subject=entry_subject(tenant_id, entry.account_id, "low_balance", identity.subject_prefix),
        payload=encode(low_balance_message(tenant_id, entry, threshold)),
        headers={
            "Nats-Msg-Id": identity.message_id(token),
            "Ledger-Position": str(entry.position),
            DEPLOYMENT_HEADER: identity.deployment_id,
        },
        token=token,
    )

"""The relay: every committed entry to NATS JetStream, in ledger order (DESIGN.md decision 6).

PostgreSQL is the record; NATS is a copy. The relay reads the event store after its stored
position, publishes a window of at most PUBLISH_IN_FLIGHT_MAX messages with
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
from events.publisher import AckedPublisher
from events.subjects import entry_subject
from ledger.accounts.account import Account
from ledger.accounts.stored_entries import entries_of_rows, event_of_row
from ledger.accounts.views import Entry
from ledger.ids import tenant_aggregate_id
from ledger.tenants.tenant import Tenant
from projections.ddl_lock import run_ddl
from projections.event_store import EVENTS_CHANNEL, events_after, events_of
from projections.tailing import close_quickly, take_lock_or_stop, wait_any

log = structlog.get_logger("events.relay")

STREAM_NAME = "LEDGER"
STREAM_SUBJECTS = ["ledger.>"]
# JetStream drops a re-sent message id within this window (seconds).
DUPLICATE_WINDOW_S = 120.0
# Messages published and not yet acknowledged, at most.
PUBLISH_IN_FLIGHT_MAX = 256
# How long to wait for a window's acks before treating NATS as down.
ACK_TIMEOUT_S = 5.0
# Backoff while NATS is down: doubles from the first to the last.
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
POLL_INTERVAL_S = 0.5
STANDBY_RETRY_S = 1.0
# Tenant thresholds are re-read at least this often.
TENANT_CACHE_TTL_S = 1.0
TRACKING_NAME = "nats_relay"
ADVISORY_LOCK_KEY = 0x6C656467_72656C61  # "ledg" "rela"


# Ending a hold never lowers `available` (a capture takes at most what the hold reserved), so
# its entries cannot cross a threshold. Placing one lowers it by the hold's amount, which the
# entry does not carry: for that entry the event is decoded.
HOLD_ENDED_TYPES = frozenset(
    cls.entry_type for cls in (Account.HoldCaptured, Account.HoldReleased, Account.HoldExpired)
)


def held_before(event: Any) -> int:
    """The account's held credits before the event (events carry what is after)."""
    if isinstance(event, Account.HoldPlaced):
        return int(event.held - event.hold_amount)
    if isinstance(event, Account.HoldEnded):
        return int(event.held + event.hold_amount)
    return int(event.held)


def crossed_below(event: Any, threshold: int) -> bool:
    """True when this event takes `available` from at or above the threshold to below it. An
    Entry will do instead of the event, but not for a hold (see HOLD_ENDED_TYPES)."""
    available_after: int = event.balance - event.held
    available_before: int = (event.balance - event.amount) - held_before(event)
    return available_after < threshold <= available_before


class Relay:
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
        self.connect = connect  # returns a connected nats-py client
        self.stream_name = stream_name
        self.duplicate_window_s = duplicate_window_s
        self.in_flight_max = in_flight_max
        self.position = 0
        self.active = False
        self.published = 0
        self._s = f'"{schema}"'
        self._thresholds: dict[str, tuple[float, int | None]] = {}
        self._wake = asyncio.Event()

    async def create_table(self, conn: asyncpg.Connection) -> None:
        statement = f"CREATE TABLE IF NOT EXISTS {self._s}.relay_tracking (name text PRIMARY KEY, position bigint NOT NULL)"
        await run_ddl(conn, self.schema, [statement])

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

    async def ensure_stream(self, js: Any) -> None:
        from nats.js.api import StorageType, StreamConfig  # noqa: PLC0415
        from nats.js.errors import NotFoundError  # noqa: PLC0415

        config = StreamConfig(
            name=self.stream_name,
            subjects=STREAM_SUBJECTS,
            storage=StorageType.FILE,
            duplicate_window=self.duplicate_window_s,
        )
        try:
            await js.stream_info(self.stream_name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)

    # ---------------------------------------------------------------- running

    async def run(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self.database_url)
        try:
            await self.create_table(conn)
            if not await take_lock_or_stop(conn, ADVISORY_LOCK_KEY, stop, STANDBY_RETRY_S, "relay"):
                return
            self.active = True
            log.info("relay_active")
            await conn.add_listener(EVENTS_CHANNEL, lambda *_: self._wake.set())
            self.position = await self.read_position(conn)
            await self._follow(conn, stop)
        finally:
            self.active = False
            await close_quickly(conn)

    async def _follow(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        backoff = BACKOFF_FIRST_S
        nc: Any = None
        publisher: AckedPublisher | None = None
        while not stop.is_set():
            try:
                if nc is None or publisher is None or not nc.is_connected:
                    nc = await self.connect()
                    await self.ensure_stream(nc.jetstream())
                    publisher = AckedPublisher(nc)
                    await publisher.start()
                    log.info("relay_connected", position=self.position)
                # Cleared before the read, as the follower does: a commit landing during it
                # keeps its wake-up, and a short window means caught up as of the read.
                self._wake.clear()
                read = await self.step(conn, publisher)
                backoff = BACKOFF_FIRST_S
                if read < self.in_flight_max:
                    await wait_any(self._wake, stop, POLL_INTERVAL_S)
            except (asyncpg.PostgresError, OSError) as error:
                log.warning("relay_store_failed", error=str(error))
                await wait_any(stop, None, backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
            except Exception as error:  # noqa: BLE001 - NATS errors of every kind: wait, resume
                log.warning(
                    "relay_publish_failed",
                    error=str(error) or type(error).__name__,
                    position=self.position,
                )
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                    nc = None
                await wait_any(stop, None, backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def step(self, conn: asyncpg.Connection, publisher: AckedPublisher) -> int:
        """Publishes the next window and stores its position; returns how many events it read."""
        rows = await events_after(
            conn, self.schema, self.position, self.in_flight_max, accounts_only=True
        )
        if not rows:
            return 0
        acks = []
        rows_at: dict[int, Any] = {}
        # Entries decoded as the follower decodes them (msgspec, the library's mapper only for
        # what that path does not know): the same entry on NATS as in the read models.
        for tenant_id, entry in entries_of_rows(self.mapper, rows):
            acks.append(await self._publish(publisher, tenant_id, entry))
            threshold = await self._threshold(conn, tenant_id)
            if threshold is None or entry.type in HOLD_ENDED_TYPES:
                continue
            crossing: Any = entry
            if entry.type == Account.HoldPlaced.entry_type:  # held-before needs hold_amount
                rows_at = rows_at or {int(row[0]): row for row in rows}
                crossing = event_of_row(self.mapper, *rows_at[entry.position][1:])
            if crossed_below(crossing, threshold):
                acks.append(await self._publish_low_balance(publisher, tenant_id, entry, threshold))
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as the acks complete, and a cancelled relay then never stops.
        async with asyncio.timeout(ACK_TIMEOUT_S):
            await asyncio.gather(*acks)
        last = int(rows[-1][0])
        await self.store_position(conn, last)
        self.position = last
        self.published += len(rows)
        return len(rows)

    async def _publish(self, publisher: AckedPublisher, tenant_id: str, entry: Entry) -> Any:
        position = str(entry.position)
        headers = {"Nats-Msg-Id": position, "Ledger-Position": position}
        subject = entry_subject(tenant_id, entry.account_id, entry.type)
        payload = encode(entry_message(tenant_id, entry))
        return await publisher.publish(subject, payload, headers, token=position)

    async def _publish_low_balance(
        self, publisher: AckedPublisher, tenant_id: str, entry: Entry, threshold: int
    ) -> Any:
        message_id = f"{entry.position}-low_balance"
        headers = {"Nats-Msg-Id": message_id, "Ledger-Position": str(entry.position)}
        subject = entry_subject(tenant_id, entry.account_id, "low_balance")
        payload = encode(low_balance_message(tenant_id, entry, threshold))
        return await publisher.publish(subject, payload, headers, token=message_id)

    async def _threshold(self, conn: asyncpg.Connection, tenant_id: str) -> int | None:
        cached = self._thresholds.get(tenant_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < TENANT_CACHE_TTL_S:
            return cached[1]
        tenant: Any = None
        for row in await events_of(conn, self.schema, tenant_aggregate_id(tenant_id)):
            tenant = event_of_row(self.mapper, *row).mutate(tenant)
        threshold = (
            tenant.settings.get("low_balance_threshold") if isinstance(tenant, Tenant) else None
        )
        self._thresholds[tenant_id] = (now, threshold)
        return threshold

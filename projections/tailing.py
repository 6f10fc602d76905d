"""What every reader that tails the event store shares (the follower, the NATS relay)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from eventsourcing.persistence import Mapper, StoredEvent

# A connection that does not close politely within this is cut.
CLOSE_TIMEOUT_S = 5.0
log = structlog.get_logger("projections.tailing")

# The event store's NOTIFY channel (the library names it after the events table).
EVENTS_CHANNEL = "ledger_events"


async def close_quickly(conn: asyncpg.Connection) -> None:
    """Closes a connection (ending its session and advisory lock) even mid-query or cancelled."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await asyncio.shield(conn.close())
    except (TimeoutError, asyncio.CancelledError, asyncpg.PostgresError, OSError):
        conn.terminate()
        raise


async def take_lock_or_stop(
    conn: asyncpg.Connection, key: int, stop: asyncio.Event, retry_s: float, role: str
) -> bool:
    """Waits in standby until this session holds the advisory lock `key` (True) or `stop` is
    set (False): one follower, one relay active, the others ready to take over."""
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


# Topics of the Account's events: the only ones that make entries.
ACCOUNT_TOPIC_PREFIX = "ledger.account:Account."


async def events_after(
    conn: asyncpg.Connection, schema: str, position: int, limit: int, *, accounts_only: bool = False
) -> list[asyncpg.Record]:
    """Stored events after a position, in notification_id order:
    rows of (notification_id, originator_id, originator_version, topic, state)."""
    topic_filter = f" AND topic LIKE '{ACCOUNT_TOPIC_PREFIX}%'" if accounts_only else ""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT notification_id, originator_id, originator_version, topic, state "
        f'FROM "{schema}".ledger_events WHERE notification_id > $1{topic_filter} '
        f"ORDER BY notification_id LIMIT $2",
        position,
        limit,
    )
    return rows


async def read_ahead(
    conn: asyncpg.Connection, schema: str, limit: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """Every stored event from position 0, in batches of `limit` rows from `events_after`,
    the next batch's fetch in flight while the caller works on the one it was given."""
    rows = await events_after(conn, schema, 0, limit)
    following: asyncio.Task[list[asyncpg.Record]] | None = None
    try:
        while rows:
            following = asyncio.create_task(events_after(conn, schema, rows[-1][0], limit))
            yield rows
            rows = await following
    finally:
        if following is not None and not following.done():
            following.cancel()  # the caller stopped early; its connection goes with it


async def events_of(
    conn: asyncpg.Connection, schema: str, originator_id: UUID
) -> list[asyncpg.Record]:
    """One aggregate's stored events in version order: rows of (id, version, topic, state)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f'SELECT originator_id, originator_version, topic, state FROM "{schema}".ledger_events '
        f"WHERE originator_id = $1 ORDER BY originator_version",
        originator_id,
    )
    return rows


def decode(
    mapper: Mapper[UUID], originator_id: UUID, version: int, topic: str, state: bytes
) -> Any:
    """The domain event of one stored row."""
    stored = StoredEvent(
        originator_id=originator_id, originator_version=version, topic=topic, state=bytes(state)
    )
    return mapper.to_domain_event(stored)


def account_events(mapper: Mapper[UUID], rows: Iterable[Any]) -> list[tuple[int, Any]]:
    """(position, event) of the Account's events among rows from `events_after`; the others
    are skipped by topic, before decoding."""
    return [
        (position, decode(mapper, originator_id, version, topic, state))
        for position, originator_id, version, topic, state in rows
        if topic.startswith(ACCOUNT_TOPIC_PREFIX)
    ]

"""The session of a reader that tails the event store (the follower, the NATS relay): its
advisory lock, its wake-ups, its close."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

# A connection that does not close politely within this is cut.
CLOSE_TIMEOUT_S = 5.0
log = structlog.get_logger("projections.tailing")


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

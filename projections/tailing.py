"""What every reader that tails the event store shares (the follower, the NATS relay)."""

from __future__ import annotations

import asyncio

import asyncpg

# A connection that does not close politely within this is cut.
CLOSE_TIMEOUT_S = 5.0
# The event store's NOTIFY channel (the library names it after the events table).
EVENTS_CHANNEL = "ledger_events"


async def close_quickly(conn: asyncpg.Connection) -> None:
    """Closes a connection (ending its session and advisory lock) even mid-query or cancelled."""
    try:
        await asyncio.wait_for(asyncio.shield(conn.close()), CLOSE_TIMEOUT_S)
    except (TimeoutError, asyncio.CancelledError, asyncpg.PostgresError, OSError):
        conn.terminate()
        raise


async def wait_any(first: asyncio.Event, second: asyncio.Event | None, timeout_s: float) -> None:
    """Returns when either event is set or after timeout_s."""
    waiters = [asyncio.ensure_future(first.wait())]
    if second is not None:
        waiters.append(asyncio.ensure_future(second.wait()))
    await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()

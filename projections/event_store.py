"""Reads of the event store's table (`ledger_events`), for everything that tails or replays it.

Rows are `(notification_id, originator_id, originator_version, topic, state)` in
`notification_id` order: the library takes a table lock per insert, so ids commit in order and
a reader after a position never skips one (docs/adr/0004). ledger/accounts/stored_entries.py
decodes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from uuid import UUID

import asyncpg

from ledger.accounts.stored_entries import ACCOUNT_TOPIC_PREFIX

# The event store's NOTIFY channel (the library names it after the events table).
EVENTS_CHANNEL = "ledger_events"


async def events_after(
    conn: asyncpg.Connection,
    schema: str,
    position: int,
    limit: int,
    *,
    accounts_only: bool = False,
    state_topics: frozenset[str] | None = None,
) -> list[asyncpg.Record]:
    """At most `limit` stored events after a position, in notification_id order (only the
    Account's with `accounts_only`; with `state_topics`, the state of those topics only, the
    others' empty: a consumer that skips most events by topic is not sent their states)."""
    topic_filter = f" AND topic LIKE '{ACCOUNT_TOPIC_PREFIX}%'" if accounts_only else ""
    args: list[object]
    if state_topics is None:
        state, args = "state", [position, limit]
    else:
        state = "CASE WHEN topic = ANY($3::text[]) THEN state ELSE ''::bytea END"
        args = [position, limit, sorted(state_topics)]
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT notification_id, originator_id, originator_version, topic, {state} "
        f'FROM "{schema}".ledger_events WHERE notification_id > $1{topic_filter} '
        f"ORDER BY notification_id LIMIT $2",
        *args,
    )
    return rows


async def events_of_topics(
    conn: asyncpg.Connection,
    schema: str,
    after: int,
    through: int,
    topics: list[str],
    limit: int,
) -> list[asyncpg.Record]:
    """At most `limit` stored events of the given topics after one position and up to
    another, in notification_id order: a consumer catching up on a few topics it did not keep
    before (one pass over the range, since each batch starts after the last one's)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT notification_id, originator_id, originator_version, topic, state "
        f'FROM "{schema}".ledger_events WHERE notification_id > $1 AND notification_id <= $2 '
        f"AND topic = ANY($3::text[]) ORDER BY notification_id LIMIT $4",
        after,
        through,
        topics,
        limit,
    )
    return rows


async def read_ahead(
    conn: asyncpg.Connection, schema: str, limit: int
) -> AsyncGenerator[list[asyncpg.Record], None]:
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

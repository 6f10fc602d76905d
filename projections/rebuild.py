"""`ledger rebuild`: the read models filled again from position 0, in one transaction.

A crash leaves them empty with no position, and the follower starts again from 0. What makes it
faster than the follower's `catch_up` (docs/BENCHMARKS.md "The rebuild"):
- while one batch is decoded, the one before it goes in by COPY and the one after it is
  fetched on a second connection, so Python and PostgreSQL work at once;
- entries go in by binary COPY alone; accounts and usage add up in memory over the whole
  history and are written once, by COPY, instead of an upsert per row and batch;
- the indexes whose keys come in random order are built after the load, in one pass each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import asyncpg

from projections.changes import Changes
from projections.ddl_lock import lock_ddl
from projections.event_store import read_ahead
from projections.schema import ACCOUNT_COLUMNS, USAGE_COLUMNS

# Events a rebuild reads per round trip (~10 MiB of stored JSON; at most three batches are in
# memory: one going in by COPY, one being decoded, one fetched ahead). Over 2.1 M events,
# 3,000 and 30,000 were no faster (medians 57,900 and 60,200 against 61,100 events/s).
REBUILD_BATCH_SIZE_MAX = 10_000
# Usage rows (tenant, day, operation, account) a rebuild sums in memory (~0.4 KiB each) before
# it appends them to a staging table, summed again at the end: at most ~80 MiB. Accounts are
# not bounded: a rebuild keeps one row per account (~0.5 KiB), ~470 MiB at a million.
REBUILD_USAGE_KEYS_MAX = 200_000


class ReadModelWriter(Protocol):
    """What a rebuild uses of the follower (`Follower.rebuild` passes itself): the same
    decoding, entry COPY, indexes and tracking row as it follows with."""

    @property
    def database_url(self) -> str: ...

    @property
    def schema(self) -> str: ...

    async def decode(self, rows: list[asyncpg.Record], changes: Changes) -> None: ...

    async def copy_entries(self, conn: asyncpg.Connection, changes: Changes) -> None: ...

    async def create_tables(self, conn: asyncpg.Connection, *, indexes: bool = True) -> None: ...

    async def track(self, conn: asyncpg.Connection, last: int) -> None: ...


async def load(
    follower: ReadModelWriter,
    conn: asyncpg.Connection,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Fills the empty read models with every event there is, in one transaction; returns
    the number of events read and the position they reach."""
    reader = await asyncpg.connect(follower.database_url)
    try:
        async with conn.transaction():
            # Held to the commit: a role starting meanwhile would otherwise build the missing
            # indexes row by row, or wait on these tables while holding the lock that the
            # indexes below need.
            await lock_ddl(conn, follower.schema)
            total, last = await _load(follower, conn, reader, progress)
            await follower.create_tables(conn)  # the indexes, each built in one pass
            await follower.track(conn, last)
        return total, last
    finally:
        await reader.close()


async def _load(
    follower: ReadModelWriter,
    conn: asyncpg.Connection,
    reader: asyncpg.Connection,
    progress: Callable[[int, int], None] | None,
) -> tuple[int, int]:
    """Writes the read models of every event; returns (events read, last position).
    While one batch is decoded, the one before it goes in by COPY on `conn` and the one
    after it is fetched on `reader`, so neither Python nor PostgreSQL waits for the other
    to finish a batch before it starts on its part of the next."""
    totals = Changes()
    usage = StagedUsage(follower.schema)
    total = last = 0
    copying: asyncio.Task[None] | None = None
    batches = read_ahead(reader, follower.schema, REBUILD_BATCH_SIZE_MAX)
    try:
        async for rows in batches:
            changes = Changes([], totals.accounts, totals.usage)
            await follower.decode(rows, changes)
            if copying is not None:
                await copying
            if len(totals.usage) >= REBUILD_USAGE_KEYS_MAX:
                await usage.stage(conn, totals.usage)
            copying = asyncio.create_task(follower.copy_entries(conn, changes))
            total, last = total + len(rows), int(rows[-1][0])
            if progress is not None:
                progress(total, last)
        if copying is not None:
            await copying
    except BaseException:
        if copying is not None and not copying.done():
            copying.cancel()  # the transaction rolls back: nothing of it stays
            await asyncio.wait([copying])
        raise
    finally:
        await batches.aclose()
    await conn.copy_records_to_table(
        "rm_accounts",
        schema_name=follower.schema,
        columns=ACCOUNT_COLUMNS,
        records=in_key_order(totals.accounts),
    )
    totals.accounts.clear()
    await usage.finish(conn, totals.usage)
    return total, last


def in_key_order(rows: dict[tuple[Any, ...], Any]) -> list[Any]:
    """The values of `rows` sorted by key: in the primary key's order where the database's
    collation orders text by code point, as C and C.UTF-8 do (the bench's and the dev
    database's), so COPY appends to the key's index instead of inserting at random places
    (1.3 s against 1.6 s for 250,000 accounts). Any other collation gets the same rows, only
    more slowly."""
    return [rows[key] for key in sorted(rows)]


class StagedUsage:
    """A rebuild's usage past REBUILD_USAGE_KEYS_MAX rows: those go to a staging table,
    dropped at commit, and the end sums it into rm_usage, as `Follower.apply` would have."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.staged = False

    async def stage(
        self, conn: asyncpg.Connection, usage: dict[tuple[Any, ...], list[int]]
    ) -> None:
        rows = [(*key, *sums) for key, sums in usage.items()]
        usage.clear()  # before any await: the batch being decoded adds to it
        if not self.staged:
            await conn.execute(
                f'CREATE TEMP TABLE rebuild_usage (LIKE "{self.schema}".rm_usage) ON COMMIT DROP'
            )
            self.staged = True
        await conn.copy_records_to_table("rebuild_usage", columns=USAGE_COLUMNS, records=rows)

    async def finish(
        self, conn: asyncpg.Connection, usage: dict[tuple[Any, ...], list[int]]
    ) -> None:
        if not self.staged:
            rows = [(*key, *usage[key]) for key in sorted(usage)]  # as in_key_order
            usage.clear()
            await conn.copy_records_to_table(
                "rm_usage", schema_name=self.schema, columns=USAGE_COLUMNS, records=rows
            )
            return
        await self.stage(conn, usage)
        await conn.execute(
            f'INSERT INTO "{self.schema}".rm_usage '
            "(tenant_id, day, operation, account_id, count, credits, refunded, expired) "
            "SELECT tenant_id, day, operation, account_id, sum(count), sum(credits), "
            "sum(refunded), sum(expired) FROM rebuild_usage "
            "GROUP BY tenant_id, day, operation, account_id"
        )

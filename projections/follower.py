"""The follower: tails the event store in notification_id order into the read models.

Each batch is applied and its position recorded in one transaction, so the read models hold
every event exactly once whatever happens to the process: a crash before the commit leaves
nothing, after it leaves the position, and the next run continues from there. LISTEN wakes the
follower when the writer commits (the event store NOTIFYs its table's channel); a poll every
POLL_INTERVAL_S is the back-up. One follower is active per database (an advisory lock); others
wait as standbys and take over when the active one's session ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from eventsourcing.persistence import Mapper

from projections.entries import Changes
from projections.schema import (
    create_read_models,
    create_statements,
    drop_statements,
    lock_ddl,
    run_ddl,
)
from projections.tailing import (
    EVENTS_CHANNEL,
    close_quickly,
    events_after,
    read_ahead,
    take_lock_or_stop,
    wait_any,
)

log = structlog.get_logger("projections.follower")

ACCOUNT_COLUMNS = (
    "tenant_id",
    "account_id",
    "balance",
    "held",
    "version",
    "position",
    "created_at",
    "updated_at",
)
USAGE_COLUMNS = ("tenant_id", "day", "operation", "account_id", "count", "credits", "refunded")
ENTRY_COLUMNS = (
    "position",
    "tenant_id",
    "account_id",
    "type",
    "amount",
    "balance",
    "held",
    "version",
    "recorded_at",
    "entry",
)

# Events read and applied per transaction: bounds the transaction's size and memory.
BATCH_SIZE_MAX = 2_000
# Events a rebuild reads per round trip (~10 MiB of stored JSON; at most three batches are in
# memory: one going in by COPY, one being decoded, one fetched ahead). 3,000 and 30,000 were
# no faster (docs/BENCHMARKS.md).
REBUILD_BATCH_SIZE_MAX = 10_000
# Rows decoded between two yields to the event loop, so a COPY in flight keeps sending.
DECODE_CHUNK = 1_000
# Usage rows (tenant, day, operation, account) a rebuild sums in memory (~0.4 KiB each) before
# it appends them to a staging table, summed again at the end: at most ~80 MiB. Accounts are
# not bounded: a rebuild keeps one row per account (~0.5 KiB), ~470 MiB at a million.
REBUILD_USAGE_KEYS_MAX = 200_000
# The back-up poll, should a NOTIFY be missed.
POLL_INTERVAL_S = 1.0
# How often a standby tries to become the active follower.
STANDBY_RETRY_S = 1.0
TRACKING_NAME = "read_models"
# Advisory lock key: "ledger follower" (any constant both processes agree on).
ADVISORY_LOCK_KEY = 0x6C656467_666F6C6C


class Follower:
    def __init__(
        self,
        database_url: str,
        schema: str,
        mapper: Mapper[UUID],
        *,
        batch_size_max: int = BATCH_SIZE_MAX,
        before_commit: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.mapper = mapper
        self.batch_size_max = batch_size_max
        self.before_commit = before_commit  # a test's hook: called inside the transaction
        self.position = 0
        self.active = False
        self._wake = asyncio.Event()
        self._caught_up = asyncio.Condition()
        self._s = f'"{schema}"'

    # ------------------------------------------------------------ set-up

    async def create_tables(self, conn: asyncpg.Connection, *, indexes: bool = True) -> None:
        await create_read_models(conn, self.schema, indexes=indexes)

    async def recreate_tables(self, conn: asyncpg.Connection) -> None:
        """Empty read models without the indexes a rebuild creates after loading."""
        statements = drop_statements(self.schema) + create_statements(self.schema, indexes=False)
        await run_ddl(conn, self.schema, statements)

    async def read_position(self, conn: asyncpg.Connection) -> int:
        row = await conn.fetchval(
            f"SELECT position FROM {self._s}.rm_tracking WHERE name = $1", TRACKING_NAME
        )
        return int(row or 0)

    # ------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        """Waits to become the active follower, then follows until `stop` is set."""
        conn = await asyncpg.connect(
            self.database_url, server_settings={"search_path": self.schema}
        )
        try:
            await self.create_tables(conn)
            if not await take_lock_or_stop(
                conn, ADVISORY_LOCK_KEY, stop, STANDBY_RETRY_S, "follower"
            ):
                return
            self.active = True
            log.info("follower_active")
            await conn.add_listener(EVENTS_CHANNEL, self._notified)
            self.position = await self.read_position(conn)
            while not stop.is_set():
                applied = await self.step(conn)
                if applied == 0:
                    self._wake.clear()
                    await wait_any(self._wake, stop, POLL_INTERVAL_S)
        finally:
            self.active = False
            await close_quickly(conn)  # ends the session: the advisory lock goes with it

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def step(self, conn: asyncpg.Connection) -> int:
        """Applies the next batch of events; returns how many events it read."""
        batch = await self.read_batch(conn, self.position)
        if batch is None:
            return 0
        changes, last, count = batch
        await self.apply_batch(conn, changes, last)
        return count

    async def read_batch(
        self, conn: asyncpg.Connection, after: int
    ) -> tuple[Changes, int, int] | None:
        """The changes of the events after `after`, the last position and how many events."""
        rows = await events_after(conn, self.schema, after, self.batch_size_max)
        if not rows:
            return None
        changes = Changes()
        await self.decode(rows, changes)
        return changes, int(rows[-1][0]), len(rows)

    async def decode(self, rows: list[asyncpg.Record], changes: Changes) -> None:
        """Adds the entries of `rows` to `changes`, yielding to the event loop between chunks
        so that a COPY or a fetch in flight goes on."""
        for start in range(0, len(rows), DECODE_CHUNK):
            changes.add_rows(self.mapper, rows[start : start + DECODE_CHUNK])
            await asyncio.sleep(0)

    async def apply_batch(self, conn: asyncpg.Connection, changes: Changes, last: int) -> None:
        async with conn.transaction():
            await self.apply(conn, changes, last)
            if self.before_commit is not None:
                await self.before_commit(last)
        self.position = last
        async with self._caught_up:
            self._caught_up.notify_all()

    async def apply(self, conn: asyncpg.Connection, changes: Changes, last: int) -> None:
        s = self._s
        await self._copy_entries(conn, changes)
        if changes.accounts:
            await conn.executemany(
                f"INSERT INTO {s}.rm_accounts (tenant_id, account_id, balance, held, version, position, "
                f"created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                f"ON CONFLICT (tenant_id, account_id) DO UPDATE SET balance = EXCLUDED.balance, "
                f"held = EXCLUDED.held, version = EXCLUDED.version, position = EXCLUDED.position, "
                f"updated_at = EXCLUDED.updated_at",
                list(changes.accounts.values()),
            )
        if changes.usage:
            await conn.executemany(
                f"INSERT INTO {s}.rm_usage (tenant_id, day, operation, account_id, count, credits, refunded) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7) "
                f"ON CONFLICT (tenant_id, day, operation, account_id) DO UPDATE SET "
                f"count = rm_usage.count + EXCLUDED.count, credits = rm_usage.credits + EXCLUDED.credits, "
                f"refunded = rm_usage.refunded + EXCLUDED.refunded",
                [(*key, *totals) for key, totals in changes.usage.items()],
            )
        await self._track(conn, last)

    async def _copy_entries(self, conn: asyncpg.Connection, changes: Changes) -> None:
        if changes.entry_rows:
            # Binary COPY, not an INSERT per row: entries are only ever appended.
            await conn.copy_records_to_table(
                "rm_entries",
                schema_name=self.schema,
                columns=ENTRY_COLUMNS,
                records=changes.entry_rows,
            )

    async def _track(self, conn: asyncpg.Connection, last: int) -> None:
        await conn.execute(
            f"INSERT INTO {self._s}.rm_tracking (name, position) VALUES ($1, $2) "
            f"ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
            TRACKING_NAME,
            last,
        )

    async def catch_up(
        self, conn: asyncpg.Connection, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Applies everything there is now; returns the number of events read."""
        total = 0
        self.position = await self.read_position(conn)
        while applied := await self.step(conn):
            total += applied
            if progress is not None:
                progress(total, self.position)
        return total

    async def load(
        self, conn: asyncpg.Connection, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Fills the empty read models with every event there is, in one transaction: a crash
        leaves them empty with no position, and the follower starts again from 0.

        What makes it faster than `catch_up`: the next batch is read and decoded on a second
        connection while this one writes the current one, so PostgreSQL and Python work at
        once; entries go in by COPY alone, while accounts and usage add up in memory over the
        whole history and are written once, by COPY, instead of an upsert per row and batch;
        the indexes with keys in random order are built after the load, in one pass each."""
        reader = await asyncpg.connect(self.database_url)
        try:
            async with conn.transaction():
                # Held to the commit: a role starting meanwhile would otherwise build the
                # missing indexes row by row, or wait on these tables while holding the lock
                # that the indexes below need.
                await lock_ddl(conn, self.schema)
                total, last = await self._load(conn, reader, progress)
                await self.create_tables(conn)  # the indexes, each built in one pass
                await self._track(conn, last)
            self.position = last
            return total
        finally:
            await reader.close()

    async def _load(
        self,
        conn: asyncpg.Connection,
        reader: asyncpg.Connection,
        progress: Callable[[int, int], None] | None,
    ) -> tuple[int, int]:
        """Writes the read models of every event; returns (events read, last position).
        While one batch is decoded, the one before it goes in by COPY on `conn` and the one
        after it is fetched on `reader`, so neither Python nor PostgreSQL waits for the other
        to finish a batch before it starts on its part of the next."""
        totals = Changes()
        usage = StagedUsage(self.schema)
        total = last = 0
        copying: asyncio.Task[None] | None = None
        batches = read_ahead(reader, self.schema, REBUILD_BATCH_SIZE_MAX)
        try:
            async for rows in batches:
                changes = Changes([], totals.accounts, totals.usage)
                await self.decode(rows, changes)
                if copying is not None:
                    await copying
                if len(totals.usage) >= REBUILD_USAGE_KEYS_MAX:
                    await usage.stage(conn, totals.usage)
                copying = asyncio.create_task(self._copy_entries(conn, changes))
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
            schema_name=self.schema,
            columns=ACCOUNT_COLUMNS,
            records=in_key_order(totals.accounts),
        )
        totals.accounts.clear()
        await usage.finish(conn, totals.usage)
        return total, last

    async def rebuild(
        self, progress: Callable[[int, int], None] | None = None
    ) -> tuple[int, float]:
        """Drops the read models and builds them again from position 0, holding the lock."""
        conn = await asyncpg.connect(
            self.database_url, server_settings={"search_path": self.schema}
        )
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
            started = time.perf_counter()
            await self.recreate_tables(conn)
            total = await self.load(conn, progress)
            return total, time.perf_counter() - started
        finally:
            await conn.close()


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
            "(tenant_id, day, operation, account_id, count, credits, refunded) "
            "SELECT tenant_id, day, operation, account_id, sum(count), sum(credits), "
            "sum(refunded) FROM rebuild_usage GROUP BY tenant_id, day, operation, account_id"
        )

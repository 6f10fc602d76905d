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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from eventsourcing.persistence import Mapper

from projections.changes import Changes
from projections.ddl_lock import run_ddl
from projections.event_store import EVENTS_CHANNEL, events_after
from projections.rebuild import load
from projections.schema import (
    ACCOUNT_COLUMNS,
    ENTRY_COLUMNS,
    TRACKING_NAME,
    USAGE_COLUMNS,
    create_read_models,
    create_statements,
    drop_statements,
)
from projections.tailing import close_quickly, take_lock_or_stop, wait_any

log = structlog.get_logger("projections.follower")

# Events read and applied per transaction: bounds the transaction's size and memory.
BATCH_SIZE_MAX = 2_000
# Rows decoded between two yields to the event loop, so a COPY in flight keeps sending.
DECODE_CHUNK = 1_000
# The back-up poll, should a NOTIFY be missed.
POLL_INTERVAL_S = 1.0
# How often a standby tries to become the active follower.
STANDBY_RETRY_S = 1.0
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
                # Cleared before the read, so a commit that lands while it runs (and that it may
                # not see) leaves the wake-up set; a short batch means caught up as of the read.
                self._wake.clear()
                if await self.step(conn) < self.batch_size_max:
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
        """One statement per table, whatever the batch's size: the rows go as arrays, unnested
        by the server (an upsert per row cost PostgreSQL about twice the CPU, most of it
        per statement)."""
        s = self._s
        await self.copy_entries(conn, changes)
        if changes.accounts:
            await conn.execute(
                f"INSERT INTO {s}.rm_accounts (tenant_id, account_id, balance, held, version, position, "
                f"created_at, updated_at) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], "
                f"$4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[], $8::timestamptz[]) "
                f"ON CONFLICT (tenant_id, account_id) DO UPDATE SET balance = EXCLUDED.balance, "
                f"held = EXCLUDED.held, version = EXCLUDED.version, position = EXCLUDED.position, "
                f"updated_at = EXCLUDED.updated_at",
                *columns_of(changes.accounts.values(), len(ACCOUNT_COLUMNS)),
            )
        if changes.usage:
            await conn.execute(
                f"INSERT INTO {s}.rm_usage (tenant_id, day, operation, account_id, count, credits, refunded) "
                f"SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::bigint[], "
                f"$6::bigint[], $7::bigint[]) "
                f"ON CONFLICT (tenant_id, day, operation, account_id) DO UPDATE SET "
                f"count = rm_usage.count + EXCLUDED.count, credits = rm_usage.credits + EXCLUDED.credits, "
                f"refunded = rm_usage.refunded + EXCLUDED.refunded",
                *columns_of(
                    ((*key, *totals) for key, totals in changes.usage.items()), len(USAGE_COLUMNS)
                ),
            )
        await self.track(conn, last)

    async def copy_entries(self, conn: asyncpg.Connection, changes: Changes) -> None:
        if changes.entry_rows:
            # Binary COPY, not an INSERT per row: entries are only ever appended.
            await conn.copy_records_to_table(
                "rm_entries",
                schema_name=self.schema,
                columns=ENTRY_COLUMNS,
                records=changes.entry_rows,
            )

    async def track(self, conn: asyncpg.Connection, last: int) -> None:
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

    async def rebuild(
        self, progress: Callable[[int, int], None] | None = None
    ) -> tuple[int, float]:
        """Drops the read models and builds them again from position 0 (projections.rebuild),
        holding the follower's lock; returns the events read and the seconds it took."""
        conn = await asyncpg.connect(
            self.database_url, server_settings={"search_path": self.schema}
        )
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
            started = time.perf_counter()
            await self.recreate_tables(conn)
            total, self.position = await load(self, conn, progress)
            return total, time.perf_counter() - started
        finally:
            await conn.close()


def columns_of(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into `width` columns, one list each, for an `unnest` of arrays. Each key
    appears once (the batch's dicts are keyed by it), as ON CONFLICT DO UPDATE requires."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns

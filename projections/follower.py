"""The follower: the read models' consumer of the event store (projections/tailer.py).

Each batch is applied and its position recorded in one transaction, so the read models hold
every event exactly once whatever happens to the process: a crash before the commit leaves
nothing, after it leaves the position, and the next run continues from there. The tailer wakes
it when the writer commits (LISTEN) or every POLL_INTERVAL_S, and keeps one follower active per
schema (an advisory lock); others wait as standbys and take over when the active one's
session ends.
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
from projections.event_store import events_after
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
from projections.tailer import Tailer, schema_lock_key

log = structlog.get_logger("projections.follower")

# Events read and applied per transaction: bounds the transaction's size and memory.
BATCH_SIZE_MAX = 2_000
# Rows decoded between two yields to the event loop, so a COPY in flight keeps sending.
DECODE_CHUNK = 1_000
# The back-up poll, should a NOTIFY be missed.
POLL_INTERVAL_S = 1.0
# Advisory lock key: "ledger follower" (any constant both processes agree on).
ADVISORY_LOCK_KEY = 0x6C656467_666F6C6C


class Follower:
    name = "follower"
    lock_key = ADVISORY_LOCK_KEY
    accounts_only = False  # every event moves the position; only the Account's make rows
    state_topics = None  # decodes every Account event

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
        self._s = f'"{schema}"'
        self._tailer = Tailer(database_url, schema, self)

    @property
    def active(self) -> bool:
        """Whether this follower holds the lock and tails (not a standby)."""
        return self._tailer.active

    @property
    def poll_interval_s(self) -> float:
        return POLL_INTERVAL_S

    # ------------------------------------------------------------ set-up

    def table_statements(self) -> list[str]:
        return create_statements(self.schema)

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
        await self._tailer.run(stop)

    async def activate(self, conn: asyncpg.Connection, position: int) -> None:
        self.position = position
        log.info("follower_active")

    async def handle(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> int:
        """Applies a batch the tailer read and records its position, in one transaction."""
        changes = Changes()
        await self.decode(rows, changes)
        await self.apply_batch(conn, changes, int(rows[-1][0]))
        return self.position

    async def step(self, conn: asyncpg.Connection) -> int:
        """Applies the next batch of events; returns how many events it read."""
        rows = await events_after(conn, self.schema, self.position, self.batch_size_max)
        if rows:
            await self.handle(conn, rows)
        return len(rows)

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
                f"INSERT INTO {s}.rm_usage (tenant_id, day, operation, account_id, count, credits, refunded, "
                f"expired) SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::bigint[], "
                f"$6::bigint[], $7::bigint[], $8::bigint[]) "
                f"ON CONFLICT (tenant_id, day, operation, account_id) DO UPDATE SET "
                f"count = rm_usage.count + EXCLUDED.count, credits = rm_usage.credits + EXCLUDED.credits, "
                f"refunded = rm_usage.refunded + EXCLUDED.refunded, "
                f"expired = rm_usage.expired + EXCLUDED.expired",
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
            await conn.execute(
                "SELECT pg_advisory_lock($1)", schema_lock_key(ADVISORY_LOCK_KEY, self.schema)
            )
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

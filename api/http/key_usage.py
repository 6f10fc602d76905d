"""When each API key was last used: kept in a small table, written in the background.

Recording a use on every request would put a write on the hot path; instead uses are gathered
in memory and flushed every USAGE_FLUSH_INTERVAL_S. The time is operational data, not part of
the ledger's record, so it lives beside the event store, not in it.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import structlog
from psycopg import sql

from ledger.store.application import STORE_DDL_LOCK_CLASS, Ledger

log = structlog.get_logger("api.http.key_usage")

USAGE_FLUSH_INTERVAL_S = 5.0
TABLE = "ledger_api_key_usage"


class KeyUsage:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._pending: dict[tuple[str, str], datetime] = {}
        self._task: asyncio.Task[None] | None = None
        datastore: Any = ledger.recorder.datastore  # type: ignore[attr-defined]
        self._datastore = datastore
        self._table = sql.Identifier(datastore.schema, TABLE)

    def create_table(self) -> None:
        """Under the event store's DDL lock: replicas starting at once on a fresh schema would
        otherwise race on `CREATE TABLE IF NOT EXISTS` (ledger.store.application.store_ddl_lock)."""
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (STORE_DDL_LOCK_CLASS, self._datastore.schema),
            )
            cursor.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (tenant_id text NOT NULL, key_id text NOT NULL, "
                    "last_used_at timestamptz NOT NULL, PRIMARY KEY (tenant_id, key_id))"
                ).format(self._table)
            )

    def used(self, tenant_id: str, key_id: str) -> None:
        self._pending[(tenant_id, key_id)] = datetime.now(tz=UTC)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(USAGE_FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            await asyncio.to_thread(self._write, pending)
        except Exception as error:  # noqa: BLE001 - a lost last-used time is not worth a crash
            log.warning("key_usage_flush_failed", error=str(error), keys=len(pending))

    def _write(self, pending: dict[tuple[str, str], datetime]) -> None:
        rows = [(tenant, key, at) for (tenant, key), at in pending.items()]
        statement = sql.SQL(
            "INSERT INTO {} (tenant_id, key_id, last_used_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (tenant_id, key_id) DO UPDATE SET last_used_at = "
            "GREATEST({}.last_used_at, EXCLUDED.last_used_at)"
        ).format(self._table, self._table)
        with self._datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.executemany(statement, rows)

    def last_used(self, tenant_id: str) -> dict[str, datetime]:
        """Runs in a thread: the tenant's keys' last-used times, this process's newest included."""
        with self._datastore.get_connection() as conn:
            rows = conn.execute(
                sql.SQL("SELECT key_id, last_used_at FROM {} WHERE tenant_id = %s").format(
                    self._table
                ),
                (tenant_id,),
            ).fetchall()
        times = {row["key_id"]: row["last_used_at"] for row in rows}
        for (tenant, key), at in self._pending.items():
            if tenant == tenant_id and (key not in times or times[key] < at):
                times[key] = at
        return times

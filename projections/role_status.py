"""Each background role's state, where every API replica can read it: one row per role
instance in `ledger_role_status`, written by the role itself every HEARTBEAT_INTERVAL_S.

The follower and the relay run as child processes of `serve`, or alone on other machines
(`ledger project`, `ledger relay`); readiness and /metrics (api/http/health.py) need their
state wherever they run, so each tailer reports it through the store they all share: whether
it is the active one or a standby, its position, what it is doing (`active`, `standby`,
`store_unreachable`, `waiting_for_nats`, ...), its last error and counters. A row not written
for STALE_AFTER_S is an instance that is gone (killed, or cut off from the store).

The reporter has a connection of its own, apart from the tailer's (which is busy with the
consumer's work, or lost): it reconnects quietly when the store is down, so the row says what
the role went through once the store answers again.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from projections.ddl_lock import run_ddl

log = structlog.get_logger("projections.role_status")

TABLE = "ledger_role_status"
# How often a role writes its row.
HEARTBEAT_INTERVAL_S = 1.0
# A row older than this is an instance that is gone.
STALE_AFTER_S = 5.0
# Rows of instances gone this long are deleted (by any reporter, when it starts).
FORGET_AFTER_S = 24 * 3600.0
# A heartbeat's connect or write gives up after this (the next one tries again).
WRITE_TIMEOUT_S = 2.0
# Characters of an error kept in the row.
ERROR_LENGTH_MAX = 500


@dataclass(frozen=True)
class Status:
    """What a role says of itself."""

    state: str  # active | standby | starting | store_unreachable | waiting_for_nats | stopped
    active: bool
    position: int
    last_error: str | None = None
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RoleRow:
    """A role instance's row as read back, with its age."""

    role: str
    instance: str
    state: str
    active: bool
    position: int
    last_error: str | None
    error_age_s: float | None
    age_s: float
    counters: dict[str, int]

    @property
    def gone(self) -> bool:
        return self.age_s > STALE_AFTER_S


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def table_statements(schema: str) -> list[str]:
    return [
        f'CREATE TABLE IF NOT EXISTS "{schema}".{TABLE} ('
        "role text NOT NULL, instance text NOT NULL, state text NOT NULL, "
        "active boolean NOT NULL, position bigint NOT NULL, last_error text, "
        "error_at timestamptz, counters jsonb NOT NULL DEFAULT '{}', "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (role, instance))"
    ]


class StatusReporter:
    """Writes one role instance's row every HEARTBEAT_INTERVAL_S until stopped, the last
    time with `stopped`."""

    def __init__(
        self, database_url: str, schema: str, role: str, status: Callable[[], Status]
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.role = role
        self.instance = instance_name()
        self.status = status
        self._conn: asyncpg.Connection | None = None
        self._last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self._write(self.status())
                try:
                    async with asyncio.timeout(HEARTBEAT_INTERVAL_S):
                        await stop.wait()
                except TimeoutError:
                    pass
            last = self.status()
            await self._write(
                Status("stopped", False, last.position, last.last_error, last.counters)
            )
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.terminate()

    async def _write(self, status: Status) -> None:
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                conn = await self._connection()
                error = (status.last_error or "")[:ERROR_LENGTH_MAX] or None
                await conn.execute(
                    f'INSERT INTO "{self.schema}".{TABLE} AS s (role, instance, state, active, '
                    "position, last_error, error_at, counters, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6::text IS NULL THEN NULL "
                    "ELSE now() END, $7::jsonb, now()) ON CONFLICT (role, instance) DO UPDATE SET "
                    "state = EXCLUDED.state, active = EXCLUDED.active, position = EXCLUDED.position, "
                    "last_error = EXCLUDED.last_error, error_at = CASE "
                    "WHEN EXCLUDED.last_error IS NULL THEN NULL "
                    "WHEN EXCLUDED.last_error IS NOT DISTINCT FROM s.last_error THEN s.error_at "
                    "ELSE now() END, counters = EXCLUDED.counters, updated_at = now()",
                    self.role,
                    self.instance,
                    status.state,
                    status.active,
                    status.position,
                    error,
                    json.dumps(status.counters),
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as failure:
            # The store is down (the role's own lines say so): try again next time.
            log.debug("role_status_write_failed", role=self.role, error=str(failure))
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.terminate()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(
                self.database_url,
                timeout=WRITE_TIMEOUT_S,
                server_settings={"application_name": f"ledger {self.role} status"},
            )
            try:
                await run_ddl(conn, self.schema, table_statements(self.schema))
                await conn.execute(
                    f'DELETE FROM "{self.schema}".{TABLE} '
                    "WHERE updated_at < now() - make_interval(secs => $1)",
                    FORGET_AFTER_S,
                )
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
        return self._conn


async def read_role_rows(conn: Any, schema: str) -> list[RoleRow]:
    """Every role instance's row (none if no role ever reported), newest first."""
    exists = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".{TABLE}')
    if exists is None:
        return []
    rows = await conn.fetch(
        "SELECT role, instance, state, active, position, last_error, counters, "
        "extract(epoch FROM now() - updated_at)::float8 AS age_s, "
        "extract(epoch FROM now() - error_at)::float8 AS error_age_s "
        f'FROM "{schema}".{TABLE} ORDER BY role, updated_at DESC'
    )
    return [
        RoleRow(
            role=row["role"],
            instance=row["instance"],
            state=row["state"],
            active=row["active"],
            position=row["position"],
            last_error=row["last_error"],
            error_age_s=row["error_age_s"],
            age_s=row["age_s"],
            counters=json.loads(row["counters"]) if isinstance(row["counters"], str) else {},
        )
        for row in rows
    ]

"""The console's two tables, beside the event store in its schema (operational data, not the
ledger's record, like the keys' last-used times):

- `ledger_console_sessions`: one row per signed-in browser, keyed by the SHA-256 of its random
  session token (the cookie holds the token; the table never does), with the SHA-256 of the key
  it signed in with, so every request checks that key again.
- `ledger_console_actions`: what was done through the console, by whom (the key's id, or the
  operator) and in which session: the audit page's "who did what" until account events carry
  their actor themselves.

Both are created on first use, under the schema's DDL lock (projections/ddl_lock.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from api.http.problems import ApiError
from projections.ddl_lock import run_ddl

SESSIONS_TABLE = "ledger_console_sessions"
ACTIONS_TABLE = "ledger_console_actions"
# Actions listed on one page of the audit.
ACTIONS_PAGE_MAX = 100

_created: set[str] = set()
_creating = asyncio.Lock()


class Session(msgspec.Struct, frozen=True, kw_only=True):
    token_hash: str
    key_hash: str
    operator: bool
    tenant_id: str | None
    key_id: str | None
    created_at: datetime
    expires_at: datetime


class Action(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    tenant_id: str
    actor: str
    key_id: str | None
    action: str
    account_id: str | None
    position: int | None
    detail: str


def _statements(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        f"""CREATE TABLE IF NOT EXISTS {s}.{SESSIONS_TABLE} (
            token_hash text PRIMARY KEY,
            key_hash text NOT NULL,
            operator boolean NOT NULL,
            tenant_id text,
            key_id text,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS {SESSIONS_TABLE}_key ON {s}.{SESSIONS_TABLE} (key_hash)",
        f"""CREATE TABLE IF NOT EXISTS {s}.{ACTIONS_TABLE} (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL,
            tenant_id text NOT NULL,
            actor text NOT NULL,
            key_id text,
            action text NOT NULL,
            account_id text,
            position bigint,
            detail text NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS {ACTIONS_TABLE}_tenant ON {s}.{ACTIONS_TABLE} (tenant_id, id)",
    ]


class ConsoleStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self.s = f'"{schema}"'

    async def ready(self) -> ConsoleStore:
        """Creates the tables once per process and schema."""
        if self.schema not in _created:
            async with _creating:
                if self.schema not in _created:
                    async with self.pool.acquire() as conn:
                        await run_ddl(conn, self.schema, _statements(self.schema))
                    _created.add(self.schema)
        return self

    async def add_session(self, session: Session) -> None:
        await self.pool.execute(
            f"INSERT INTO {self.s}.{SESSIONS_TABLE} (token_hash, key_hash, operator, tenant_id, "
            f"key_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            *msgspec.structs.astuple(session),
        )

    async def session(self, token_hash: str, now: datetime) -> Session | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self.s}.{SESSIONS_TABLE} WHERE token_hash = $1 AND expires_at > $2",
            token_hash,
            now,
        )
        return None if row is None else Session(**dict(row))

    async def end_session(self, token_hash: str) -> None:
        await self.pool.execute(
            f"DELETE FROM {self.s}.{SESSIONS_TABLE} WHERE token_hash = $1", token_hash
        )

    async def end_sessions_of_key(self, key_hash: str) -> None:
        await self.pool.execute(
            f"DELETE FROM {self.s}.{SESSIONS_TABLE} WHERE key_hash = $1", key_hash
        )

    async def forget_expired(self, now: datetime) -> None:
        await self.pool.execute(
            f"DELETE FROM {self.s}.{SESSIONS_TABLE} WHERE expires_at <= $1", now
        )

    async def record(self, action: Action) -> None:
        await self.pool.execute(
            f"INSERT INTO {self.s}.{ACTIONS_TABLE} (at, tenant_id, actor, key_id, action, "
            f"account_id, position, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            *msgspec.structs.astuple(action),
        )

    async def actions(
        self, tenant_id: str, before: int | None, limit: int
    ) -> list[tuple[int, Action]]:
        """(id, action) of a tenant's console actions, newest first, before an id."""
        rows = await self.pool.fetch(
            f"SELECT id, at, tenant_id, actor, key_id, action, account_id, position, detail "
            f"FROM {self.s}.{ACTIONS_TABLE} WHERE tenant_id = $1 AND id < $2 "
            f"ORDER BY id DESC LIMIT $3",
            tenant_id,
            before or 2**62,
            min(limit, ACTIONS_PAGE_MAX),
        )
        found = []
        for row in rows:
            fields = dict(row)
            found.append((int(fields.pop("id")), Action(**fields)))
        return found

    async def actions_at(self, tenant_id: str, positions: list[int]) -> dict[int, Action]:
        """The console action that recorded each of these entry positions, where one did."""
        if not positions:
            return {}
        rows = await self.pool.fetch(
            f"SELECT at, tenant_id, actor, key_id, action, account_id, position, detail "
            f"FROM {self.s}.{ACTIONS_TABLE} WHERE tenant_id = $1 AND position = ANY($2::bigint[])",
            tenant_id,
            positions,
        )
        found: dict[int, Action] = {}
        for row in rows:
            action = Action(**dict(row))
            assert action.position is not None
            found[action.position] = action
        return found


def store_of(services: Any) -> ConsoleStore:
    models = services.read_models
    if models is None:
        raise ApiError("unavailable", "the console needs the read models' database pool")
    return ConsoleStore(models.pool, services.settings.schema)

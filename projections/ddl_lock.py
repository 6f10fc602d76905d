"""The schema's DDL lock: every role creates its tables under it.

Every role creates the tables it needs when it starts (api, project, relay, rebuild), often
several at once on a fresh schema. `CREATE … IF NOT EXISTS` does not make that safe: two
sessions can both find a name free and one fails with a unique violation on pg_type or
pg_class. So all of them run their DDL through `run_ddl`, one transaction holding the schema's
DDL lock (the event store's own tables are under another, `ledger/store/application.py`).
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

# The advisory lock of a schema's DDL is (DDL_LOCK_CLASS, hashtext(schema)): any constant every
# role agrees on ("rmdd"), apart from the follower's and the relay's own locks.
DDL_LOCK_CLASS = 0x726D_6464


async def lock_ddl(conn: asyncpg.Connection, schema: str) -> None:
    """Holds the schema's DDL lock until the transaction `conn` is in ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", DDL_LOCK_CLASS, schema)


async def run_ddl(conn: asyncpg.Connection, schema: str, statements: Iterable[str]) -> None:
    """Runs `statements` in one transaction holding the schema's DDL lock, so that no other
    session creates or drops the same tables in between."""
    async with conn.transaction():
        await lock_ddl(conn, schema)
        for statement in statements:
            await conn.execute(statement)

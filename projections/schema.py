"""The read models' tables, in the event store's schema, and their indexes.

Each query of projections/queries.py is one index range scan:
- entries of an account, in order:         rm_entries (tenant_id, account_id, position)
- a balance as of a time:                  rm_entries (tenant_id, account_id, recorded_at)
- a tenant's history, in ledger order:     rm_entries (tenant_id, position)
- usage over days:                         rm_usage primary key (tenant_id, day, ...)

They are created and dropped under the schema's DDL lock (projections/ddl_lock.py).
"""

from __future__ import annotations

import asyncpg

from projections.ddl_lock import run_ddl

TABLES = ("rm_entries", "rm_accounts", "rm_usage", "rm_tracking")
# The read models' row in rm_tracking: the position they hold.
TRACKING_NAME = "read_models"

# The columns the follower and the rebuild write, in the tables' order.
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
USAGE_COLUMNS = (
    "tenant_id",
    "day",
    "operation",
    "account_id",
    "count",
    "credits",
    "refunded",
    "expired",
)


async def create_read_models(
    conn: asyncpg.Connection, schema: str, *, indexes: bool = True
) -> None:
    """The read models' tables and indexes that are missing (`indexes=False`: all but those
    a rebuild creates after loading)."""
    await run_ddl(conn, schema, create_statements(schema, indexes=indexes))


def index_statements(schema: str) -> list[str]:
    """The secondary indexes whose keys come in random order: a rebuild creates them after
    loading, in one pass each, instead of inserting millions of random keys into them."""
    s = f'"{schema}"'
    return [
        f"CREATE INDEX IF NOT EXISTS rm_entries_account ON {s}.rm_entries "
        "(tenant_id, account_id, position)",
        f"CREATE INDEX IF NOT EXISTS rm_entries_as_of ON {s}.rm_entries "
        "(tenant_id, account_id, recorded_at)",
    ]


def appended_index_statements(schema: str) -> list[str]:
    """The secondary index whose keys come in order within each tenant: a load appends to
    it at little cost, where building it after the load took 1.5 s of 1M entries."""
    s = f'"{schema}"'
    return [f"CREATE INDEX IF NOT EXISTS rm_entries_tenant ON {s}.rm_entries (tenant_id, position)"]


def create_statements(schema: str, *, indexes: bool = True) -> list[str]:
    return (
        table_statements(schema)
        + appended_index_statements(schema)
        + (index_statements(schema) if indexes else [])
        + migration_statements(schema)
    )


def tracking_statement(schema: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS "{schema}".rm_tracking (
            name text PRIMARY KEY,
            position bigint NOT NULL
        )"""


def migration_statements(schema: str) -> list[str]:
    """Columns added since the tables were first made, each only when missing: an ALTER TABLE
    locks its table against the follower's writes, so it runs once, after the statements that
    lock the tables the follower writes first (never in the opposite order to it)."""
    return [
        # With the scheduler (docs/adr/0007): read models made before count expiries from
        # then on; `ledger rebuild` counts the earlier ones too.
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND table_name = 'rm_usage' "
        "AND column_name = 'expired') THEN "
        f'ALTER TABLE "{schema}".rm_usage ADD COLUMN expired bigint NOT NULL DEFAULT 0; '
        "END IF; END $$"
    ]


def table_statements(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        tracking_statement(schema),
        f"""CREATE TABLE IF NOT EXISTS {s}.rm_accounts (
            tenant_id text NOT NULL,
            account_id text NOT NULL,
            balance bigint NOT NULL,
            held bigint NOT NULL,
            version bigint NOT NULL,
            position bigint NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, account_id)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {s}.rm_entries (
            position bigint PRIMARY KEY,
            tenant_id text NOT NULL,
            account_id text NOT NULL,
            type text NOT NULL,
            amount bigint NOT NULL,
            balance bigint NOT NULL,
            held bigint NOT NULL,
            version bigint NOT NULL,
            recorded_at timestamptz NOT NULL,
            entry json NOT NULL  -- the Entry as answered, key order kept
        )""",
        f"""CREATE TABLE IF NOT EXISTS {s}.rm_usage (
            tenant_id text NOT NULL,
            day date NOT NULL,
            operation text NOT NULL,
            account_id text NOT NULL,
            count bigint NOT NULL,
            credits bigint NOT NULL,
            refunded bigint NOT NULL,
            expired bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, day, operation, account_id)
        )""",
    ]


def drop_statements(schema: str) -> list[str]:
    return [f'DROP TABLE IF EXISTS "{schema}".{table}' for table in TABLES]

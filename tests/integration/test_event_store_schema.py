"""The event store's DDL on real PostgreSQL: replicas starting at once on a fresh schema."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

from api.http.key_usage import TABLE as KEY_USAGE_TABLE
from api.http.key_usage import KeyUsage
from api.roles.database import ensure_schema
from ledger.store.application import Ledger

# Sessions creating the same tables at once, as API replicas and their writers starting
# together (the store's pool holds 8 connections at most, so 8 can run at once).
CREATORS = 8
# Fresh schemas, one after another: without the DDL lock a single one fails often, not always.
ROUNDS = 6


def tables_of(database_url: str, schema: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
    return {row[0] for row in rows}


def at_once(create: Callable[[], None]) -> None:
    with ThreadPoolExecutor(max_workers=CREATORS) as pool:
        for started in [pool.submit(create) for _ in range(CREATORS)]:
            started.result()  # raises a creator's error, if any


def test_writers_creating_the_event_store_at_once_on_a_fresh_schema_all_succeed(
    database_url: str,
) -> None:
    for _ in range(ROUNDS):
        schema = f"t_{secrets.token_hex(6)}"
        ensure_schema(database_url, schema)
        at_once(lambda: Ledger(database_url, schema=schema).close())  # noqa: B023 - run here
        assert {"ledger_events", "ledger_snapshots", "ledger_results"} <= tables_of(
            database_url, schema
        )


def test_replicas_creating_the_key_usage_table_at_once_all_succeed(database_url: str) -> None:
    for _ in range(ROUNDS):
        schema = f"t_{secrets.token_hex(6)}"
        ensure_schema(database_url, schema)
        ledger = Ledger(database_url, schema=schema)
        try:
            at_once(KeyUsage(ledger).create_table)
        finally:
            ledger.close()
        assert KEY_USAGE_TABLE in tables_of(database_url, schema)

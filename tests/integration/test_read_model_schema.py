"""The read models' DDL on real PostgreSQL: roles starting at once on a fresh schema."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from api.roles.database import ensure_schema
from api.roles.runtime import relay_connector
from events.relay import Relay
from ledger.store.transcoder import new_mapper
from projections.follower import Follower
from projections.schema import TABLES

# Sessions creating the tables at once, as api replicas, followers and relays starting together.
CREATORS = 8
# Fresh schemas, one after another: without the DDL lock a single one fails often, not always.
ROUNDS = 6


async def create_all(conn: asyncpg.Connection, follower: Follower, relay: Relay) -> None:
    """What a role does at start: the relay's table, then the read models'."""
    await relay.create_table(conn)
    await follower.create_tables(conn)


async def test_roles_creating_the_read_models_at_once_on_a_fresh_schema_all_succeed(
    database_url: str,
) -> None:
    conns = [await asyncpg.connect(database_url) for _ in range(CREATORS)]
    try:
        for _ in range(ROUNDS):
            schema = f"t_{secrets.token_hex(6)}"
            ensure_schema(database_url, schema)
            follower = Follower(database_url, schema, new_mapper())
            relay = Relay(database_url, schema, new_mapper(), relay_connector(""))
            await asyncio.gather(*(create_all(conn, follower, relay) for conn in conns))
            tables = await conns[0].fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
            )
            assert {row[0] for row in tables} == {*TABLES, "relay_tracking", "relay_deployment"}
            indexes = await conns[0].fetchval(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'rm_entries'",
                schema,
            )
            assert indexes == 4  # the primary key and the three secondary indexes
    finally:
        for conn in conns:
            await conn.close()

"""Helpers for integration tests: set-up commands and direct reads of the event store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg

from ledger.ids import account_aggregate_id
from ledger.store.application import Ledger
from ledger.writer.writer import Writer
from tests import envelopes as c


@contextlib.asynccontextmanager
async def running_writer(ledger: Ledger) -> AsyncIterator[Writer]:
    """Another writer on the same store (as another replica would be), stopped on the way out."""
    writer = Writer(ledger)
    writer.start()
    try:
        yield writer
    finally:
        await writer.stop()


async def open_funded(
    writer: Writer, tenant_id: str, balances: dict[str, int], **settings: Any
) -> None:
    await writer.submit(
        c.CreateTenant(tenant_id=tenant_id, name=tenant_id, settings=c.TenantSettings(**settings))
    )
    for account_id, amount in balances.items():
        await writer.submit(c.OpenAccount(tenant_id=tenant_id, account_id=account_id))
        if amount:
            await writer.submit(
                c.GrantCredits(
                    tenant_id=tenant_id, account_id=account_id, amount=amount, reason="fund"
                )
            )


async def balance(writer: Writer, tenant_id: str, account_id: str) -> int:
    outcome = await writer.submit(c.GetAccount(tenant_id=tenant_id, account_id=account_id))
    return outcome.value.balance  # type: ignore[attr-defined]


def stored_event_count(
    ledger: Ledger, database_url: str, tenant_id: str, account_id: str, topic_suffix: str = ""
) -> int:
    sql = f"SELECT count(*) FROM {ledger.events_table} WHERE originator_id = %s AND topic LIKE %s"
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            sql, (account_aggregate_id(tenant_id, account_id), f"%{topic_suffix}")
        ).fetchone()
    assert row is not None
    return int(row[0])


def commit_during_a_read(
    read: Callable[..., Awaitable[Any]],
    writer: Writer,
    command: c.Command,
    when: Callable[[], bool] = lambda: True,
) -> tuple[Callable[..., Awaitable[Any]], asyncio.Event]:
    """A stand-in for a tailer's `events_after`: on its first read once `when()` holds, it
    commits `command` and lets the commit's NOTIFY reach the reader's connection before it
    returns what the read found (which cannot include that commit). The event is set then."""
    committed = asyncio.Event()

    async def reading(*args: Any, **kwargs: Any) -> Any:
        rows = await read(*args, **kwargs)
        if when() and not committed.is_set():
            await writer.submit(command)
            await asyncio.sleep(0.2)
            committed.set()
        return rows

    return reading, committed


async def terminate_session_holding(conn: Any, lock_key: int) -> int:
    """Ends, from `conn` (an asyncpg connection), the session that holds the advisory lock
    `lock_key` in this database (a tailer's, by its consumer's lock), as a PostgreSQL restart
    or a cut network would, and waits until it is gone; returns how many sessions ended."""
    ended: int = await conn.fetchval(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_locks "
        "WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = $1 AND objid = $2",
        lock_key >> 32,
        lock_key & 0xFFFF_FFFF,
    )
    return ended

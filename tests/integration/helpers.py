"""Helpers for integration tests: set-up commands and direct reads of the event store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from ledger import commands as c
from ledger.application import Ledger
from ledger.ids import account_aggregate_id
from ledger.writer import Writer


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

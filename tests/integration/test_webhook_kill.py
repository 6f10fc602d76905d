"""kill -9 of the deliverer (`python -m api webhooks`, a real process) mid-burst: once it is
started again every message reaches the receiver, none is lost, and the only copies are the
attempts that were in flight at the kill (at least once; receivers dedupe by `webhook-id`),
each account's messages first arriving in ledger order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from api.http.webhook_endpoints import WebhookEndpoints
from events.webhooks.deliverer import SEND_CONCURRENCY_MAX
from events.webhooks.http_client import Rules
from ledger.store.sealed import SecretBox, new_secret_key
from ledger.writer.writer import Writer
from tests import envelopes as c
from tests.integration.helpers import open_funded
from tests.webhook_receivers import Receiver

T = "acme"
ACCOUNTS = [f"acct-{n}" for n in range(5)]
CONSUMPTIONS_PER_ACCOUNT = 60
ROOT = Path(__file__).resolve().parents[2]


def start_deliverer(database_url: str, schema: str, secret_key: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_DB_SCHEMA": schema,
        "LEDGER_SECRET_KEY": secret_key,
        "LEDGER_WEBHOOKS_ALLOW_HTTP": "yes",
        "LEDGER_WEBHOOKS_ALLOW_PRIVATE": "yes",
        "LEDGER_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "api", "webhooks"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def account_positions(database_url: str, schema: str) -> dict[str, list[int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            f"SELECT notification_id, convert_from(state, 'UTF8')::json->>'account_id' AS account_id FROM \"{schema}\".ledger_events "
            "WHERE topic LIKE 'ledger.account:%' ORDER BY notification_id"
        )
    finally:
        await conn.close()
    found: dict[str, list[int]] = {}
    for row in rows:
        found.setdefault(row["account_id"], []).append(int(row["notification_id"]))
    return found


async def burst(writer: Writer) -> None:
    async def one_account(account_id: str) -> None:
        for _ in range(CONSUMPTIONS_PER_ACCOUNT):
            await writer.submit(
                c.ConsumeCredits(tenant_id=T, account_id=account_id, amount=1, operation="op")
            )

    await asyncio.gather(*(one_account(account) for account in ACCOUNTS))


async def test_a_deliverer_killed_mid_burst_loses_nothing_and_repeats_only_what_was_in_flight(
    writer: Writer, database_url: str, schema: str
) -> None:
    secret_key = new_secret_key()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    receiver = Receiver(delay_s=0.01)
    url = await receiver.start()
    process = start_deliverer(database_url, schema, secret_key)
    try:
        endpoints = WebhookEndpoints(pool, schema, SecretBox(secret_key), Rules(True, True))
        await endpoints.create_tables()
        await endpoints.create(T, url, [], "kill -9")
        await open_funded(writer, T, dict.fromkeys(ACCOUNTS, 1_000))
        sending = asyncio.create_task(burst(writer))
        await receiver.wait_for(80, timeout_s=60)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        killed_at = len(receiver.received)
        await sending
        process = start_deliverer(database_url, schema, secret_key)
        expected = await account_positions(database_url, schema)
        total = sum(len(positions) for positions in expected.values())
        await receiver.wait_for(total, timeout_s=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        await receiver.stop()
        await pool.close()
    assert killed_at < total  # the kill landed mid-burst
    assert set(receiver.ids()) == {f"msg_{p}" for ps in expected.values() for p in ps}
    assert receiver.duplicates() <= SEND_CONCURRENCY_MAX
    first_seen: dict[str, list[int]] = {}
    seen: set[str] = set()
    for item in receiver.received:
        if item.message_id not in seen:
            seen.add(item.message_id)
            data = item.json["data"]
            first_seen.setdefault(data["account_id"], []).append(data["position"])
    assert first_seen == expected

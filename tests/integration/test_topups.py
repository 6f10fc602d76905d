"""Auto top-up end to end on real PostgreSQL, NATS and an HTTP receiver: a crossing makes one
`topup_requested` entry (on NATS and as a `topup.requested` webhook, with the topup_id the
payment side reuses), a batch handled again asks nothing twice, a due retry asks again with
the same topup_id, and the purchase that follows ends the retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import nats

from api.http.webhook_endpoints import WebhookEndpoints
from api.roles.topups import DUE_TABLE, TRACKING_TABLE, TopUpWatcher
from ledger.store.application import Ledger
from ledger.store.sealed import SecretBox, new_secret_key
from ledger.store.transcoder import new_mapper
from ledger.writer.writer import Writer
from tests import envelopes as c
from tests.integration.helpers import open_funded, stored_event_count
from tests.integration.test_relay import running_relay
from tests.integration.test_webhooks import LOCAL, running
from tests.webhook_receivers import Receiver

T, A = "acme", "ada"


@contextlib.asynccontextmanager
async def watching(
    writer: Writer, database_url: str, schema: str, **options: Any
) -> AsyncIterator[TopUpWatcher]:
    watcher = TopUpWatcher(database_url, schema, new_mapper(), writer.submit, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        yield watcher
    finally:
        stop.set()
        await task


async def eventually(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def topup_events(ledger: Ledger, database_url: str) -> int:
    return stored_event_count(ledger, database_url, T, A, "TopUpRequested")


async def test_a_crossing_is_one_topup_request_on_nats_and_webhooks_even_when_handled_twice(
    writer: Writer, ledger: Ledger, database_url: str, schema: str, nats_url: str, stream_name: str
) -> None:
    box = SecretBox(new_secret_key())
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    receiver = Receiver()
    url = await receiver.start()
    client = await nats.connect(nats_url)
    seen: list[Any] = []

    async def collect(message: Any) -> None:
        seen.append(json.loads(message.data))

    try:
        endpoints = WebhookEndpoints(pool, schema, box, LOCAL)
        await endpoints.create_tables()
        await endpoints.create(T, url, ["topup.requested"], "")
        await open_funded(writer, T, {A: 100})
        await writer.submit(c.SetTenantTopUp(tenant_id=T, below=50, target=500, monthly_max=3))
        await client.subscribe(f"ledger.{T}.{A}.topup_requested", cb=collect)
        async with (
            running_relay(database_url, schema, nats_url, stream_name),
            running(database_url, schema, box),
        ):
            async with watching(writer, database_url, schema) as first:
                await writer.submit(
                    c.ConsumeCredits(tenant_id=T, account_id=A, amount=60, operation="op")
                )
                await receiver.wait_for(1)
            conn = await asyncpg.connect(database_url)
            await conn.execute(f'UPDATE "{schema}".{TRACKING_TABLE} SET position = 0')
            await conn.close()
            async with watching(writer, database_url, schema) as again:
                await eventually(lambda: _caught_up(again, first.position))
            await eventually(lambda: _count(seen, 1))
    finally:
        await client.close()
        await receiver.stop()
        await pool.close()
    assert topup_events(ledger, database_url) == 1
    [hook] = receiver.received
    assert hook.json["type"] == "topup.requested"
    metadata = hook.json["data"]["metadata"]
    assert (metadata["credits"], metadata["attempt"]) == (460, 1)
    assert seen[0]["metadata"]["topup_id"] == metadata["topup_id"]
    assert seen[0]["type"] == "topup_requested" and seen[0]["amount"] == 0


async def _caught_up(watcher: TopUpWatcher, position: int) -> bool:
    return watcher.position >= position


async def _count(seen: list[Any], n: int) -> bool:
    return len(seen) >= n


async def test_a_due_retry_asks_again_with_the_same_topup_id_until_the_purchase_follows(
    writer: Writer, ledger: Ledger, database_url: str, schema: str
) -> None:
    await open_funded(writer, T, {A: 100})
    await writer.submit(c.SetAccountTopUp(tenant_id=T, account_id=A, below=50, amount=100))
    async with watching(writer, database_url, schema, retry_delays_s=(0.3, 0.3, 0.3), tick_s=0.1):
        await writer.submit(c.ConsumeCredits(tenant_id=T, account_id=A, amount=60, operation="op"))

        async def retried() -> bool:
            return topup_events(ledger, database_url) >= 2

        await eventually(retried)
        view: Any = (await writer.submit(c.GetAccountTopUp(tenant_id=T, account_id=A))).value
        assert view.open.attempt >= 2
        topup_id = view.open.topup_id
        await writer.submit(
            c.PurchaseCredits(
                tenant_id=T,
                account_id=A,
                price=c.Price(amount="1", currency="USD"),
                payment_ref="pi_topup",
                amount=100,
            )
        )
        conn = await asyncpg.connect(database_url)
        try:

            async def no_due() -> bool:
                return await conn.fetchval(f'SELECT count(*) FROM "{schema}".{DUE_TABLE}') == 0

            await eventually(no_due)
            asked = topup_events(ledger, database_url)
            await asyncio.sleep(1.0)
        finally:
            await conn.close()
    assert topup_events(ledger, database_url) == asked  # nothing after the purchase
    view = (await writer.submit(c.GetAccountTopUp(tenant_id=T, account_id=A))).value
    assert view.open is None and view.last == {
        "topup_id": topup_id,
        "status": "closed",
        "by": "pi_topup",
    }

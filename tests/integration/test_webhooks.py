"""Outbound webhooks on real PostgreSQL and real HTTP receivers on localhost: every message,
signed as Standard Webhooks (checked by the `standardwebhooks` package), in order per
account, retried with backoff, logged, redelivered on demand, never followed to a redirect,
cut at the timeout and size cap, and an endpoint that keeps failing disabled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import standardwebhooks

from api.http.webhook_endpoints import WebhookEndpoints
from events.webhooks import http_client
from events.webhooks.deliverer import Deliverer
from events.webhooks.http_client import Rules
from ledger.store.sealed import SecretBox, new_secret_key
from ledger.store.transcoder import new_mapper
from ledger.writer.writer import Writer
from tests import envelopes as c
from tests.integration.helpers import open_funded
from tests.webhook_receivers import Receiver

T = "acme"
LOCAL = Rules(allow_http=True, allow_private=True)
FAST_RETRIES = (0.2, 0.2, 0.2)


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(new_secret_key())


@pytest.fixture
async def pool(database_url: str, schema: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield created
    await created.close()


@pytest.fixture
async def endpoints(pool: asyncpg.Pool, schema: str, box: SecretBox) -> WebhookEndpoints:
    store = WebhookEndpoints(pool, schema, box, LOCAL)
    await store.create_tables()
    return store


@contextlib.asynccontextmanager
async def running(
    database_url: str, schema: str, box: SecretBox, **options: Any
) -> AsyncIterator[Deliverer]:
    deliverer = Deliverer(database_url, schema, new_mapper(), box, LOCAL, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop))
    try:
        yield deliverer
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def receiver(**options: Any) -> AsyncIterator[tuple[Receiver, str]]:
    server = Receiver(**options)
    url = await server.start()
    try:
        yield server, url
    finally:
        await server.stop()


async def consume(writer: Writer, account_id: str, n: int) -> None:
    for _ in range(n):
        await writer.submit(
            c.ConsumeCredits(tenant_id=T, account_id=account_id, amount=1, operation="op")
        )


def positions(server: Receiver, account_id: str) -> list[int]:
    return [
        item.json["data"]["position"]
        for item in server.received
        if item.json["data"]["account_id"] == account_id
    ]


async def test_every_message_arrives_signed_as_standard_webhooks_in_order_per_account(
    writer: Writer, database_url: str, schema: str, box: SecretBox, endpoints: WebhookEndpoints
) -> None:
    async with receiver() as (server, url):
        endpoint = await endpoints.create(T, url, [], "all")
        assert endpoint.secret is not None and endpoint.secret.startswith("whsec_")
        await open_funded(writer, T, {"ada": 100, "bob": 100}, low_balance_threshold=98)
        async with running(database_url, schema, box):
            await consume(writer, "ada", 6)
            await consume(writer, "bob", 3)
            # open + grant each (4), 9 consumptions, a low-balance message each (2)
            await server.wait_for(15)
    verifier = standardwebhooks.Webhook(endpoint.secret)
    for item in server.received:
        payload = verifier.verify(item.body, item.headers)
        assert payload["data"]["schema"] in ("ledger.entry.v1", "ledger.low_balance.v1")
    types = [item.json["type"] for item in server.received]
    assert types.count("low_balance") == 2 and types.count("entry.consume") == 9
    for account in ("ada", "bob"):
        seen = positions(server, account)
        assert seen == sorted(seen)
    assert server.duplicates() == 0


async def test_an_endpoint_gets_only_the_types_it_subscribes_to(
    writer: Writer, database_url: str, schema: str, box: SecretBox, endpoints: WebhookEndpoints
) -> None:
    async with receiver() as (server, url):
        await endpoints.create(T, url, ["entry.grant", "low_balance"], "")
        await open_funded(writer, T, {"ada": 100}, low_balance_threshold=99)
        async with running(database_url, schema, box):
            await consume(writer, "ada", 2)
            await server.wait_for(2)
            await asyncio.sleep(0.5)
    assert [item.json["type"] for item in server.received] == ["entry.grant", "low_balance"]


async def test_a_failing_endpoint_is_retried_and_every_attempt_logged_while_order_holds(
    writer: Writer, database_url: str, schema: str, box: SecretBox, endpoints: WebhookEndpoints
) -> None:
    async with receiver(fail_first=2) as (server, url):
        endpoint = await endpoints.create(T, url, ["entry.consume"], "")
        await open_funded(writer, T, {"ada": 100})
        async with running(database_url, schema, box, retry_schedule_s=FAST_RETRIES):
            await consume(writer, "ada", 3)
            await server.wait_for(3)
    assert positions(server, "ada") == sorted(positions(server, "ada"))
    page = await endpoints.deliveries(T, endpoint.endpoint_id, 0, 10, None)
    first = page.items[0]
    assert (first.status, first.attempts) == ("delivered", 3)
    assert [a.status for a in first.attempt_log] == [500, 500, 200]
    assert all(item.status == "delivered" for item in page.items)


async def test_retries_run_out_then_the_endpoint_is_disabled_and_a_redelivery_sends_it_again(
    writer: Writer, database_url: str, schema: str, box: SecretBox, endpoints: WebhookEndpoints
) -> None:
    async with receiver(mode="fail") as (server, url):
        endpoint = await endpoints.create(T, url, ["entry.grant"], "")
        await open_funded(writer, T, {"ada": 100})
        async with running(
            database_url,
            schema,
            box,
            retry_schedule_s=FAST_RETRIES,
            disable_after_s=0,
            disable_after_failures=4,
        ):
            for _ in range(50):
                page = await endpoints.deliveries(T, endpoint.endpoint_id, 0, 10, None)
                if page.items and page.items[0].status == "failed":
                    break
                await asyncio.sleep(0.1)
            assert page.items[0].attempts == len(FAST_RETRIES) + 1
            disabled = await endpoints.get(T, endpoint.endpoint_id)
            assert not disabled.enabled and disabled.disabled_reason
            server.mode = "ok"
            await endpoints.update(
                T, endpoint.endpoint_id, url=None, event_types=None, description=None, enabled=True
            )
            await endpoints.redeliver(T, endpoint.endpoint_id, page.items[0].delivery_id)
            await server.wait_for(1)
    assert server.received[0].json["type"] == "entry.grant"


async def test_a_redirect_is_not_followed(
    writer: Writer, database_url: str, schema: str, box: SecretBox, endpoints: WebhookEndpoints
) -> None:
    async with receiver() as (target, target_url), receiver(mode="redirect") as (server, url):
        server.location = target_url
        endpoint = await endpoints.create(T, url, ["entry.grant"], "")
        await open_funded(writer, T, {"ada": 100})
        async with running(database_url, schema, box, retry_schedule_s=(30,)):
            for _ in range(50):
                page = await endpoints.deliveries(T, endpoint.endpoint_id, 0, 10, None)
                if page.items and page.items[0].attempts:
                    break
                await asyncio.sleep(0.1)
    assert page.items[0].last_status == 302 and page.items[0].status == "pending"
    assert "redirects are not followed" in (page.items[0].last_error or "")
    assert target.requests == 0


async def test_an_answer_past_the_timeout_fails_and_a_slow_one_within_it_is_delivered(
    writer: Writer,
    database_url: str,
    schema: str,
    box: SecretBox,
    endpoints: WebhookEndpoints,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_client, "RESPONSE_TIMEOUT_S", 0.5)
    async with receiver(mode="hang") as (_, hang_url), receiver(delay_s=0.2) as (slow, slow_url):
        hanging = await endpoints.create(T, hang_url, ["entry.grant"], "")
        await endpoints.create(T, slow_url, ["entry.grant"], "")
        await open_funded(writer, T, {"ada": 100})
        async with running(database_url, schema, box, retry_schedule_s=(30,)):
            await slow.wait_for(1)
            for _ in range(50):
                page = await endpoints.deliveries(T, hanging.endpoint_id, 0, 10, None)
                if page.items and page.items[0].attempts:
                    break
                await asyncio.sleep(0.1)
    assert page.items[0].last_error == "no answer within the response timeout"
    assert 400 <= page.items[0].attempt_log[0].duration_ms < 2_000


async def test_a_huge_answer_is_read_only_up_to_the_cap(
    writer: Writer, database_url: str, schema: str, box: SecretBox, endpoints: WebhookEndpoints
) -> None:
    async with receiver(mode="huge") as (server, url):
        endpoint = await endpoints.create(T, url, ["entry.grant"], "")
        await open_funded(writer, T, {"ada": 100})
        async with running(database_url, schema, box):
            await server.wait_for(1)
            await asyncio.sleep(0.3)
    page = await endpoints.deliveries(T, endpoint.endpoint_id, 0, 10, None)
    assert page.items[0].status == "delivered"
    assert len(page.items[0].attempt_log[0].answer or "") <= 1024


async def test_messages_of_other_tenants_never_reach_an_endpoint(
    writer: Writer, database_url: str, schema: str, box: SecretBox, endpoints: WebhookEndpoints
) -> None:
    async with receiver() as (server, url):
        await endpoints.create(T, url, [], "")
        await open_funded(writer, "globex", {"gus": 10})
        await open_funded(writer, T, {"ada": 10})
        async with running(database_url, schema, box):
            await server.wait_for(2)
            await asyncio.sleep(0.3)
    assert {item.json["data"]["tenant_id"] for item in server.received} == {T}

"""The store down: every route answers 503 `unavailable` within 2 s, never 500 and never a
hang (the key lookup on psycopg, the read models on asyncpg, the writer), and works again
within 1 s of the store answering."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import AsyncTestClient

from api.http.app import create_app
from api.settings import Settings
from tests.e2e.conftest import ADMIN_KEY, new_tenant, open_account
from tests.e2e.test_api_errors import assert_problem
from tests.integration.proxy import Proxy

ANSWER_WITHIN_S = 2.0
RECOVERY_WITHIN_S = 1.0
# Past the key cache's half second, so the key is looked up in the store again.
KEY_CACHE_EXPIRED_S = 0.6


class ProxyThread:
    """The test proxy on an event loop of its own: the test client may hold the test's loop
    while the app handles a request, and the app's store connections go through the proxy."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.proxy.port

    def _call(self, coroutine: Any) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def start(self) -> None:
        self._call(self.proxy.start())

    def cut(self) -> None:
        self._call(self.proxy.cut())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def proxy(database_url: str) -> Iterator[ProxyThread]:
    parts = urlsplit(database_url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    server = ProxyThread(Proxy(socket_dir or parts.hostname or "127.0.0.1", parts.port or 5432))
    server.start()
    yield server
    server.close()


async def test_with_the_store_down_every_route_answers_503_within_2_s_then_works_within_1_s(
    database_url: str, schema: str, proxy: ProxyThread
) -> None:
    parts = urlsplit(database_url)
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
    settings = Settings(
        database_url=parts._replace(netloc=netloc, query="").geturl(),
        schema=schema,
        admin_key=ADMIN_KEY,
    )
    async with AsyncTestClient(create_app(settings)) as client:
        tenant = await new_tenant(client, signup_bonus=0)
        await open_account(client, tenant, "ada", grant=10)
        proxy.cut()
        await asyncio.sleep(KEY_CACHE_EXPIRED_S)
        requests: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", "/v1/accounts/ada", None),  # the key's lookup first (psycopg)
            ("POST", "/v1/accounts/ada/consumptions", {"amount": 1, "operation": "x"}),
            ("GET", "/v1/history", None),  # the read models (asyncpg)
            ("GET", "/v1/accounts/ada/entries", None),
        ]
        for method, path, body in requests * 2:
            started = time.monotonic()
            response = await client.request(method, path, json=body, headers=tenant.headers)
            assert time.monotonic() - started <= ANSWER_WITHIN_S, (method, path)
            assert_problem(response, 503, "unavailable")
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"].startswith("failed")
        assert (await client.get("/health/live")).status_code == 200  # no reason to restart
        proxy.start()
        up_at = time.monotonic()
        while True:
            response = await client.post(
                "/v1/accounts/ada/consumptions",
                json={"amount": 1, "operation": "x"},
                headers={**tenant.headers, "Idempotency-Key": secrets.token_hex(8)},
            )
            if response.status_code == 201:
                break
            assert response.status_code == 503, response.text
            assert time.monotonic() - up_at <= RECOVERY_WITHIN_S, "commands not back within 1 s"
            await asyncio.sleep(0.02)
        read = await client.get("/v1/accounts/ada", headers=tenant.headers)
        assert read.status_code == 200
        assert time.monotonic() - up_at <= RECOVERY_WITHIN_S

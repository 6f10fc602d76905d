"""Readiness says whether a command can be committed here (503 only then) and reports each
role it depends on; liveness never looks at a dependency; /metrics shows each role's lag and
last error (issue 18)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.http.app import create_app
from api.roles.embedded import free_port
from api.settings import Settings
from tests.e2e.conftest import ADMIN_KEY, new_tenant, open_account

# Roles write their row every second.
REPORTED_WITHIN_S = 10.0


@pytest.fixture
async def without_nats(database_url: str, schema: str) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with its follower and relay inline, its NATS URL a port nobody listens on."""
    settings = Settings(
        database_url=database_url,
        schema=schema,
        admin_key=ADMIN_KEY,
        nats_url=f"nats://127.0.0.1:{free_port()}",
        stream_name="LEDGER_NOWHERE",
    )
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def until(client: AsyncTestClient[Any], rule: Any) -> dict[str, Any]:
    deadline = time.monotonic() + REPORTED_WITHIN_S
    while True:
        body: dict[str, Any] = (await client.get("/health/ready")).json()
        if rule(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)


async def test_with_nats_down_readiness_stays_200_and_says_the_relay_waits_for_it(
    without_nats: AsyncTestClient[Any],
) -> None:
    client = without_nats
    tenant = await new_tenant(client, signup_bonus=0)
    await open_account(client, tenant, "ada", grant=10)  # commands commit without NATS
    body = await until(
        client,
        lambda b: (
            "waiting_for_nats" in b["checks"].get("relay", "")
            and b["checks"].get("follower") == "ok"
        ),  # on a loaded machine it may still be starting
    )
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["store"] == body["checks"]["writer"] == "ok"
    assert body["checks"]["nats"].startswith("degraded")
    assert body["checks"]["relay"].startswith("degraded: waiting_for_nats")
    assert body["checks"]["follower"] == "ok"
    relay = next(r for r in body["roles"] if r["role"] == "relay")
    assert relay["state"] == "waiting_for_nats" and relay["active"] and relay["last_error"]
    assert relay["lag"] > 0  # the grant is not on NATS
    metrics = (await client.get("/metrics")).text
    assert 'ledger_role_lag{role="relay"' in metrics
    assert 'state="waiting_for_nats"' in metrics
    assert 'ledger_role_last_error_age_seconds{role="relay"' in metrics
    assert "\nledger_store_available 1\n" in metrics
    assert (await client.get("/health/live")).status_code == 200


async def test_readiness_reports_the_follower_with_its_lag_and_position(
    client: AsyncTestClient[Any],
) -> None:
    tenant = await new_tenant(client, signup_bonus=0)
    await open_account(client, tenant, "ada", grant=10)
    body = await until(
        client,
        lambda b: any(r["role"] == "follower" and r["lag"] == 0 for r in b["roles"]),
    )
    follower = next(r for r in body["roles"] if r["role"] == "follower")
    assert follower["state"] == "active" and follower["active"] and follower["position"] > 0
    assert body["status"] == "ok" and body["checks"]["follower"] == "ok"
    assert "relay" not in body["checks"]  # no NATS configured: no relay expected
    metrics = (await client.get("/metrics")).text
    assert 'ledger_role_lag{role="follower"' in metrics

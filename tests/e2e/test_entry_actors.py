"""Who did what (issue 17): every entry names who sent its command — the API key, the
operator, or a console session — and what the ledger does by itself names nobody."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from tests.e2e.conftest import ADMIN, new_tenant, open_account

Client = AsyncTestClient[Any]
ACCOUNT = "ada@example.com"


async def entries(client: Client, headers: dict[str, str], position: int) -> list[Any]:
    response = await client.get(
        f"/v1/accounts/{ACCOUNT}/entries?min_position={position}", headers=headers
    )
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def test_an_entry_names_the_api_key_that_sent_its_command(client: Client) -> None:
    tenant = await new_tenant(client)
    await open_account(client, tenant, ACCOUNT, grant=100)
    consumed = await client.post(
        f"/v1/accounts/{ACCOUNT}/consumptions",
        json={"amount": 10, "operation": "op"},
        headers=tenant.headers,
    )
    assert consumed.status_code == 201, consumed.text
    assert consumed.json()["actor_key_id"] == tenant.key_id
    assert "actor" not in consumed.json()
    listed = await entries(client, tenant.headers, consumed.json()["position"])
    assert {entry["type"]: entry.get("actor_key_id") for entry in listed} == {
        "open": tenant.key_id,
        "grant": tenant.key_id,
        "consume": tenant.key_id,
    }


async def test_an_operators_recharge_names_the_operator(client: Client) -> None:
    tenant = await new_tenant(client)
    await open_account(client, tenant, ACCOUNT)
    recharged = await client.post(
        f"/v1/tenants/{tenant.tenant_id}/accounts/{ACCOUNT}/grants",
        json={"amount": 50, "reason": "support credit"},
        headers=ADMIN,
    )
    assert recharged.status_code == 201, recharged.text
    assert recharged.json()["actor"] == "operator"
    assert "actor_key_id" not in recharged.json()


async def test_an_expiry_names_nobody_for_time_did_it(client: Client) -> None:
    tenant = await new_tenant(client)
    await open_account(client, tenant, ACCOUNT)
    soon = (datetime.now(tz=UTC) + timedelta(seconds=1)).isoformat()
    granted = await client.post(
        f"/v1/accounts/{ACCOUNT}/grants",
        json={"amount": 5, "reason": "trial", "expires_at": soon},
        headers=tenant.headers,
    )
    assert granted.status_code == 201, granted.text
    # A command after the expiry sweeps the account first: its `expire` entry is the ledger's.
    await _after(soon)
    consumed = await client.post(
        f"/v1/accounts/{ACCOUNT}/grants",
        json={"amount": 1, "reason": "later"},
        headers=tenant.headers,
    )
    assert consumed.status_code == 201, consumed.text
    listed = await entries(client, tenant.headers, consumed.json()["position"])
    expired = [entry for entry in listed if entry["type"] == "expire"]
    assert expired and all("actor" not in e and "actor_key_id" not in e for e in expired)
    assert listed[-1]["actor_key_id"] == tenant.key_id


async def _after(moment: str) -> None:
    wait_s = (datetime.fromisoformat(moment) - datetime.now(tz=UTC)).total_seconds()
    await asyncio.sleep(max(0.0, wait_s) + 0.2)

"""The operator lists tenants, disables and enables them, and recharges their accounts
(issue 17)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar.testing import AsyncTestClient

from api.http.app import create_app
from api.settings import Settings
from tests.e2e.conftest import ADMIN, new_tenant, open_account

Client = AsyncTestClient[Any]


async def create(client: Client, tenant_id: str) -> None:
    response = await client.post(
        "/v1/tenants", json={"tenant_id": tenant_id, "name": tenant_id.upper()}, headers=ADMIN
    )
    assert response.status_code == 201, response.text


async def test_the_operator_lists_tenants_by_id_with_a_prefix_and_pages(client: Client) -> None:
    for name in ("acme-b", "acme-a", "zeta", "acme-c"):
        await create(client, name)
    first = await client.get("/v1/tenants?prefix=acme-&limit=2", headers=ADMIN)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [t["tenant_id"] for t in body["items"]] == ["acme-a", "acme-b"]
    assert body["items"][0]["name"] == "ACME-A"
    assert body["next_after"] == "acme-b"
    rest = (await client.get("/v1/tenants?prefix=acme-&limit=2&after=acme-b", headers=ADMIN)).json()
    assert [t["tenant_id"] for t in rest["items"]] == ["acme-c"]
    assert rest["next_after"] is None
    everyone = (await client.get("/v1/tenants", headers=ADMIN)).json()
    assert [t["tenant_id"] for t in everyone["items"]] == ["acme-a", "acme-b", "acme-c", "zeta"]


async def test_the_tenant_list_shows_the_current_name_and_refuses_tenant_keys(
    client: Client,
) -> None:
    tenant = await new_tenant(client)
    renamed = await client.patch(
        f"/v1/tenants/{tenant.tenant_id}", json={"name": "Renamed"}, headers=ADMIN
    )
    assert renamed.status_code == 200
    listed = (await client.get(f"/v1/tenants?prefix={tenant.tenant_id}", headers=ADMIN)).json()
    assert listed["items"][0]["name"] == "Renamed"
    assert (await client.get("/v1/tenants", headers=tenant.headers)).status_code == 403
    bad = await client.get("/v1/tenants?prefix=NOT%20AN%20ID", headers=ADMIN)
    assert bad.status_code == 400
    assert (await client.get("/v1/tenants?limit=101", headers=ADMIN)).status_code == 400


async def test_a_disabled_tenants_keys_answer_401_within_a_second_and_its_data_stays(
    client: Client, app_settings: Settings
) -> None:
    tenant = await new_tenant(client)
    await open_account(client, tenant, "ada", grant=50)
    async with AsyncTestClient(create_app(app_settings)) as replica:
        assert (await replica.get("/v1/accounts/ada", headers=tenant.headers)).status_code == 200
        disabled = await client.post(
            f"/v1/tenants/{tenant.tenant_id}/disable", json={"reason": "unpaid"}, headers=ADMIN
        )
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["disabled_reason"] == "unpaid"
        assert "disabled_at" in disabled.json()
        refused = await client.get("/v1/accounts/ada", headers=tenant.headers)
        assert refused.status_code == 401
        assert refused.json()["detail"] == "the API key's tenant is disabled"
        started = time.monotonic()
        while (await replica.get("/v1/accounts/ada", headers=tenant.headers)).status_code != 401:
            assert time.monotonic() - started < 1.0, "the replica still accepts the tenant's key"
            await asyncio.sleep(0.05)
    enabled = await client.post(f"/v1/tenants/{tenant.tenant_id}/enable", headers=ADMIN)
    assert enabled.status_code == 200
    assert "disabled_at" not in enabled.json()
    account = await client.get("/v1/accounts/ada", headers=tenant.headers)
    assert account.status_code == 200
    assert account.json()["balance"] == 50


async def test_disabling_twice_keeps_the_first_reason_and_unknown_tenants_answer_404(
    client: Client,
) -> None:
    tenant = await new_tenant(client)
    path = f"/v1/tenants/{tenant.tenant_id}/disable"
    assert (
        await client.post(path, json={"reason": "x"}, headers=tenant.headers)
    ).status_code == 403
    first = (await client.post(path, json={"reason": "first"}, headers=ADMIN)).json()
    again = await client.post(path, json={"reason": "second"}, headers=ADMIN)
    assert again.status_code == 200
    assert again.json()["disabled_reason"] == "first"
    assert again.json()["version"] == first["version"]
    assert (await client.post(path, json={"reason": ""}, headers=ADMIN)).status_code == 400
    missing = await client.post("/v1/tenants/no-such/disable", json={"reason": "x"}, headers=ADMIN)
    assert missing.status_code == 404
    assert (await client.post("/v1/tenants/no-such/enable", headers=ADMIN)).status_code == 404


async def test_the_operator_recharges_an_account_with_a_grant_and_a_reason(client: Client) -> None:
    tenant = await new_tenant(client)
    await open_account(client, tenant, "ada@example.com")
    path = f"/v1/tenants/{tenant.tenant_id}/accounts/ada@example.com/grants"
    headers = {**ADMIN, "Idempotency-Key": "recharge-1"}
    granted = await client.post(path, json={"amount": 70, "reason": "goodwill"}, headers=headers)
    assert granted.status_code == 201, granted.text
    assert granted.json()["type"] == "grant"
    assert granted.json()["reason"] == "goodwill"
    replayed = await client.post(path, json={"amount": 70, "reason": "goodwill"}, headers=headers)
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    account = (await client.get("/v1/accounts/ada@example.com", headers=tenant.headers)).json()
    assert account["balance"] == 70
    assert (await client.post(path, json={"amount": 1}, headers=ADMIN)).status_code == 400
    named = {"amount": 1, "reason": "r", "account_id": "other"}
    assert (await client.post(path, json=named, headers=ADMIN)).status_code == 400


async def test_only_the_operator_recharges_and_an_unknown_account_answers_404(
    client: Client,
) -> None:
    tenant = await new_tenant(client)
    await open_account(client, tenant, "ada")
    body = {"amount": 5, "reason": "r"}
    own = f"/v1/tenants/{tenant.tenant_id}/accounts/ada/grants"
    assert (await client.post(own, json=body, headers=tenant.headers)).status_code == 403
    unknown = f"/v1/tenants/{tenant.tenant_id}/accounts/nobody/grants"
    assert (await client.post(unknown, json=body, headers=ADMIN)).status_code == 404
    other_tenant = "/v1/tenants/no-such-tenant/accounts/ada/grants"
    assert (await client.post(other_tenant, json=body, headers=ADMIN)).status_code == 404

"""Webhook endpoints and auto top-up policies over HTTP, as docs/api.md states them."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.e2e.conftest import Tenant, open_account

Client = AsyncTestClient[Any]


async def test_an_endpoint_shows_its_secret_once_and_is_listed_changed_and_deleted(
    client: Client, tenant: Tenant
) -> None:
    created = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/in", "event_types": ["entry.*"]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["enabled"] is True
    endpoint_id = body["endpoint_id"]
    listed = (await client.get("/v1/webhook-endpoints", headers=tenant.headers)).json()
    assert [item["endpoint_id"] for item in listed["items"]] == [endpoint_id]
    assert "secret" not in listed["items"][0]
    changed = await client.patch(
        f"/v1/webhook-endpoints/{endpoint_id}",
        json={"event_types": ["low_balance"], "enabled": False},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["event_types"], changed.json()["enabled"]) == (["low_balance"], False)
    log = await client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=tenant.headers
    )
    assert log.json() == {"items": [], "next_after": None}
    redeliver = await client.post(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries/1/redeliver", headers=tenant.headers
    )
    assert redeliver.status_code == 404
    assert (
        await client.delete(f"/v1/webhook-endpoints/{endpoint_id}", headers=tenant.headers)
    ).status_code == 204
    gone = await client.get(f"/v1/webhook-endpoints/{endpoint_id}", headers=tenant.headers)
    assert gone.status_code == 404


async def test_an_endpoint_url_that_breaks_the_ssrf_rules_is_refused_and_nothing_is_created(
    client: Client, tenant: Tenant
) -> None:
    for url in (
        "http://hooks.example.com/in",
        "https://127.0.0.1/in",
        "https://169.254.169.254/latest",
        "https://10.1.2.3/x",
    ):
        refused = await client.post(
            "/v1/webhook-endpoints", json={"url": url}, headers=tenant.headers
        )
        assert refused.status_code == 400, url
        assert refused.json()["code"] == "validation_error"
    listed = (await client.get("/v1/webhook-endpoints", headers=tenant.headers)).json()
    assert listed["items"] == []


async def test_an_account_policy_comes_before_the_tenant_default(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada")
    default = await client.put(
        "/v1/auto-topup", json={"below": 10, "amount": 500}, headers=tenant.headers
    )
    assert default.status_code == 200, default.text
    read = (await client.get("/v1/accounts/ada/auto-topup", headers=tenant.headers)).json()
    assert (read["source"], read["policy"]["amount"]) == ("tenant", 500)
    own = await client.put(
        "/v1/accounts/ada/auto-topup",
        json={"below": 100, "target": 1000, "monthly_max": 3},
        headers=tenant.headers,
    )
    assert own.status_code == 200, own.text
    read = (await client.get("/v1/accounts/ada/auto-topup", headers=tenant.headers)).json()
    assert (read["source"], read["policy"]["target"], read["requested_this_month"]) == (
        "account",
        1000,
        0,
    )
    both = await client.put(
        "/v1/auto-topup", json={"below": 10, "amount": 5, "target": 50}, headers=tenant.headers
    )
    assert both.status_code == 400
    tenant_default = (await client.get("/v1/auto-topup", headers=tenant.headers)).json()
    assert tenant_default["policy"]["amount"] == 500

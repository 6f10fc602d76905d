"""Stripe webhooks over HTTP: verified against the tenant's sealed secrets, kept raw in the
inbox once, applied once; a refund or a dispute reverses the purchase (docs/api.md)."""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from api.settings import Settings
from ledger.payments.stripe_signature import sign
from ledger.store.sealed import new_secret_key
from tests.e2e.conftest import ADMIN, Tenant, new_tenant, open_account

Client = AsyncTestClient[Any]
SECRET = "whsec_test_" + "a1b2c3d4e5f6" * 2


@pytest.fixture
def app_settings(app_settings: Settings) -> Settings:
    return msgspec.structs.replace(app_settings, secret_key=new_secret_key())


@pytest.fixture
async def stripe_tenant(client: Client) -> Tenant:
    tenant = await new_tenant(client, purchase_rates={"USD": "100"})
    added = await client.post(
        "/v1/payment-webhooks/stripe/secrets", json={"secret": SECRET}, headers=tenant.headers
    )
    assert added.status_code == 201, added.text
    await open_account(client, tenant, "ada")
    return tenant


def checkout(event_id: str, pi: str = "pi_1", amount: int = 999, **metadata: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": "cs_1",
                "payment_status": "paid",
                "payment_intent": pi,
                "amount_total": amount,
                "currency": "usd",
                "metadata": {"account_id": "ada", **metadata},
            }
        },
    }


async def deliver(
    client: Client, tenant: Tenant, event: dict[str, Any], secret: str = SECRET, at: int = 0
) -> Any:
    payload = json.dumps(event).encode()
    header = sign(secret, at or int(time.time()), payload)
    return await client.post(
        f"/v1/webhooks/stripe/{tenant.tenant_id}",
        content=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


async def balance(client: Client, tenant: Tenant) -> int:
    body = (await client.get("/v1/accounts/ada", headers=tenant.headers)).json()
    return int(body["balance"])


async def inbox(client: Client, tenant: Tenant) -> list[dict[str, Any]]:
    page = await client.get(f"/v1/tenants/{tenant.tenant_id}/payment-events", headers=ADMIN)
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


async def test_a_bad_signature_answers_400_and_records_nothing(
    client: Client, stripe_tenant: Tenant
) -> None:
    wrong = await deliver(client, stripe_tenant, checkout("evt_1"), secret="whsec_other_secret")
    stale = await deliver(client, stripe_tenant, checkout("evt_1"), at=int(time.time()) - 301)
    for response in (wrong, stale):
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_signature"
    assert await inbox(client, stripe_tenant) == []
    assert await balance(client, stripe_tenant) == 0


async def test_a_paid_checkout_credits_once_however_often_it_arrives(
    client: Client, stripe_tenant: Tenant
) -> None:
    first = await deliver(client, stripe_tenant, checkout("evt_1"))
    assert first.status_code == 200, first.text
    assert first.json() == {"event_id": "evt_1", "status": "applied", "duplicate": False}
    again = await deliver(client, stripe_tenant, checkout("evt_1"))
    assert again.json()["duplicate"] is True
    succeeded = {
        "id": "evt_2",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": "pi_1",
                "amount_received": 999,
                "currency": "usd",
                "metadata": {"account_id": "ada"},
            }
        },
    }
    assert (await deliver(client, stripe_tenant, succeeded)).json()["status"] == "applied"
    assert await balance(client, stripe_tenant) == 999
    entries = (await client.get("/v1/accounts/ada", headers=stripe_tenant.headers)).json()
    assert entries["totals"]["purchased"] == 999
    kept = await inbox(client, stripe_tenant)
    assert [(row["event_id"], row["status"]) for row in kept] == [
        ("evt_1", "applied"),
        ("evt_2", "applied"),
    ]
    assert kept[0]["payload"] == checkout("evt_1")
    assert kept[0]["payment_ref"] == "pi_1"


async def test_a_refund_then_a_dispute_reverse_the_purchase_once(
    client: Client, stripe_tenant: Tenant
) -> None:
    await deliver(client, stripe_tenant, checkout("evt_1", amount=1000))

    def charge(event_id: str, kind: str, **fields: Any) -> dict[str, Any]:
        obj = {"id": "ch_1", "payment_intent": "pi_1", "amount": 1000, **fields}
        return {"id": event_id, "type": kind, "data": {"object": obj}}

    half = await deliver(
        client, stripe_tenant, charge("evt_r1", "charge.refunded", amount_refunded=500)
    )
    assert half.json()["status"] == "applied"
    assert await balance(client, stripe_tenant) == 500
    rest = await deliver(client, stripe_tenant, charge("evt_d1", "charge.dispute.created"))
    assert rest.json()["status"] == "applied"
    assert await balance(client, stripe_tenant) == 0
    late = await deliver(
        client, stripe_tenant, charge("evt_r2", "charge.refunded", amount_refunded=1000)
    )
    assert late.json()["status"] == "ignored"
    assert await balance(client, stripe_tenant) == 0


async def test_an_unknown_event_type_is_acknowledged_and_ignored(
    client: Client, stripe_tenant: Tenant
) -> None:
    event = {"id": "evt_x", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    response = await deliver(client, stripe_tenant, event)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert [row["status"] for row in await inbox(client, stripe_tenant)] == ["ignored"]


async def test_an_event_without_an_account_is_kept_as_failed_and_not_retried(
    client: Client, stripe_tenant: Tenant
) -> None:
    event = checkout("evt_1")
    del event["data"]["object"]["metadata"]["account_id"]
    response = await deliver(client, stripe_tenant, event)
    assert (response.status_code, response.json()["status"]) == (200, "failed")
    [row] = await inbox(client, stripe_tenant)
    assert "account_id" in row["detail"]


async def test_a_checkout_with_a_quote_credits_the_quote(
    client: Client, stripe_tenant: Tenant
) -> None:
    rules = {"rules": [{"currency": "USD", "credits_per_unit": "120"}]}
    await client.put("/v1/price-book", json=rules, headers=stripe_tenant.headers)
    quote = await client.post(
        "/v1/quotes", json={"credits": 1000, "currency": "USD"}, headers=stripe_tenant.headers
    )
    body = quote.json()
    assert body["price"] == {"amount": "8.34", "currency": "USD"}
    event = checkout("evt_q", amount=834, quote_id=body["quote_id"])
    assert (await deliver(client, stripe_tenant, event)).json()["status"] == "applied"
    assert await balance(client, stripe_tenant) == 1000


async def test_signing_secrets_are_sealed_never_plain_in_a_table_or_the_event_store(
    client: Client, stripe_tenant: Tenant, database_url: str, schema: str
) -> None:
    await deliver(client, stripe_tenant, checkout("evt_1"))
    listed = (
        await client.get("/v1/payment-webhooks/stripe/secrets", headers=stripe_tenant.headers)
    ).json()
    assert [item["hint"] for item in listed["items"]] == [SECRET[-4:]]
    assert SECRET not in json.dumps(listed)
    conn = await asyncpg.connect(database_url)
    try:
        sealed = await conn.fetchval(f'SELECT sealed FROM "{schema}".ledger_webhook_secrets')
        stored = await conn.fetch(f'SELECT state FROM "{schema}".ledger_events')
    finally:
        await conn.close()
    assert SECRET.encode() not in bytes(sealed)
    assert all(SECRET.encode() not in bytes(row["state"]) for row in stored)


async def test_a_rotated_secret_verifies_until_it_is_deleted(
    client: Client, stripe_tenant: Tenant
) -> None:
    new_secret = "whsec_rotated_0000111122223333"
    await client.post(
        "/v1/payment-webhooks/stripe/secrets",
        json={"secret": new_secret},
        headers=stripe_tenant.headers,
    )
    assert (
        await deliver(client, stripe_tenant, checkout("evt_1"), secret=new_secret)
    ).status_code == 200
    listed = (
        await client.get("/v1/payment-webhooks/stripe/secrets", headers=stripe_tenant.headers)
    ).json()
    old = next(item for item in listed["items"] if item["hint"] == SECRET[-4:])
    deleted = await client.delete(
        f"/v1/payment-webhooks/stripe/secrets/{old['secret_id']}", headers=stripe_tenant.headers
    )
    assert deleted.status_code == 204
    refused = await deliver(client, stripe_tenant, checkout("evt_2", pi="pi_2"))
    assert refused.status_code == 400

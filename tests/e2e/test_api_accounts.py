"""Accounts and commands over HTTP, as docs/api.md states them: each rule holds with the writer as
a thread of the HTTP process (create_app's default) and as a child process (`ledger serve`)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from api.settings import Settings
from tests.e2e.conftest import Tenant, new_tenant, open_account

Client = AsyncTestClient[Any]


@pytest.fixture(params=["writer_thread", "writer_process"])
def app_settings(app_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return msgspec.structs.replace(app_settings, writer_process=request.param == "writer_process")


async def test_opening_an_account_answers_201_then_200_and_grants_the_bonus_once(
    client: Client,
) -> None:
    tenant = await new_tenant(client, signup_bonus=25)
    first = await client.put(
        "/v1/accounts/ada@example.com", json={"metadata": {"plan": "pro"}}, headers=tenant.headers
    )
    again = await client.put("/v1/accounts/ada@example.com", json={}, headers=tenant.headers)
    assert (first.status_code, again.status_code) == (201, 200)
    body = again.json()
    assert (body["balance"], body["available"], body["held"], body["metadata"]) == (
        25,
        25,
        0,
        {"plan": "pro"},
    )
    assert body["totals"]["granted"] == 25
    assert body["lots"][0]["source"] == "grant"


async def test_a_full_session_grant_consume_refund_and_read(client: Client, tenant: Tenant) -> None:
    await open_account(client, tenant, "ada")
    grant = await client.post(
        "/v1/accounts/ada/grants", json={"amount": 500, "reason": "welcome"}, headers=tenant.headers
    )
    assert grant.status_code == 201
    assert grant.json()["type"] == "grant" and grant.json()["balance"] == 500
    used = await client.post(
        "/v1/accounts/ada/consumptions",
        json={
            "amount": 120,
            "operation": "IMAGE_GENERATION",
            "resource": "img-1",
            "user_id": "u-1",
        },
        headers=tenant.headers,
    )
    assert used.status_code == 201
    entry = used.json()
    assert (entry["type"], entry["amount"], entry["balance"], entry["operation"]) == (
        "consume",
        -120,
        380,
        "IMAGE_GENERATION",
    )
    assert entry["position"] > grant.json()["position"]
    refund = await client.post(
        "/v1/accounts/ada/refunds",
        json={"consumption_id": entry["consumption_id"], "reason": "task failed"},
        headers=tenant.headers,
    )
    assert refund.status_code == 201
    assert (refund.json()["amount"], refund.json()["balance"]) == (120, 500)
    account = await client.get("/v1/accounts/ada", headers=tenant.headers)
    assert account.status_code == 200
    assert account.json()["balance"] == 500
    assert account.json()["totals"] == {
        "granted": 500,
        "purchased": 0,
        "consumed": 120,
        "refunded": 120,
        "expired": 0,
        "adjusted": 0,
    }


async def test_a_purchase_uses_the_tenants_rate_and_a_payment_ref_is_credited_once(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada")
    body = {"price": {"amount": "9.99", "currency": "USD"}, "payment_ref": "pi_123"}
    first = await client.post("/v1/accounts/ada/purchases", json=body, headers=tenant.headers)
    second = await client.post("/v1/accounts/ada/purchases", json=body, headers=tenant.headers)
    assert first.status_code == 201 and first.json()["amount"] == 999
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    account = await client.get("/v1/accounts/ada", headers=tenant.headers)
    assert account.json()["balance"] == 999


async def test_holds_reserve_then_capture_part_and_release_the_rest(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=100)
    hold = await client.post(
        "/v1/accounts/ada/holds",
        json={"amount": 60, "operation": "VIDEO_GENERATION"},
        headers=tenant.headers,
    )
    assert hold.status_code == 201
    hold_id = hold.json()["hold_id"]
    assert hold.json()["status"] == "active"
    account = (await client.get("/v1/accounts/ada", headers=tenant.headers)).json()
    assert (account["balance"], account["held"], account["available"]) == (100, 60, 40)
    capture = await client.post(
        f"/v1/accounts/ada/holds/{hold_id}/capture", json={"amount": 45}, headers=tenant.headers
    )
    assert capture.status_code == 201
    assert (capture.json()["type"], capture.json()["amount"], capture.json()["held"]) == (
        "capture",
        -45,
        0,
    )
    read = await client.get(f"/v1/accounts/ada/holds/{hold_id}", headers=tenant.headers)
    assert (read.json()["status"], read.json()["captured"]) == ("captured", 45)
    again = await client.post(
        f"/v1/accounts/ada/holds/{hold_id}/capture", json={}, headers=tenant.headers
    )
    assert again.status_code == 409 and again.json()["code"] == "conflict"


async def test_releasing_a_hold_answers_200_with_a_release_entry(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=100)
    hold = await client.post(
        "/v1/accounts/ada/holds", json={"amount": 10, "operation": "x"}, headers=tenant.headers
    )
    release = await client.post(
        f"/v1/accounts/ada/holds/{hold.json()['hold_id']}/release", headers=tenant.headers
    )
    assert release.status_code == 200
    assert (release.json()["type"], release.json()["amount"], release.json()["available"]) == (
        "release",
        0,
        100,
    )


async def test_adjustments_are_signed_and_respect_the_overdraft(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=10)
    down = await client.post(
        "/v1/accounts/ada/adjustments", json={"amount": -4, "reason": "fix"}, headers=tenant.headers
    )
    assert down.status_code == 201 and down.json()["balance"] == 6
    too_far = await client.post(
        "/v1/accounts/ada/adjustments", json={"amount": -7, "reason": "fix"}, headers=tenant.headers
    )
    assert too_far.status_code == 402
    zero = await client.post(
        "/v1/accounts/ada/adjustments", json={"amount": 0, "reason": "fix"}, headers=tenant.headers
    )
    assert zero.status_code == 400


async def test_the_same_idempotency_key_replays_status_and_body(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=100)
    headers = {**tenant.headers, "Idempotency-Key": "order-42"}
    body = {"amount": 10, "operation": "op"}
    first = await client.post("/v1/accounts/ada/consumptions", json=body, headers=headers)
    second = await client.post("/v1/accounts/ada/consumptions", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    other = await client.post(
        "/v1/accounts/ada/consumptions", json={**body, "amount": 11}, headers=headers
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert (await client.get("/v1/accounts/ada", headers=tenant.headers)).json()["balance"] == 90


async def test_a_request_rejected_by_validation_does_not_use_up_the_key(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=100)
    headers = {**tenant.headers, "Idempotency-Key": "k-1"}
    bad = await client.post(
        "/v1/accounts/ada/consumptions", json={"amount": 0, "operation": "op"}, headers=headers
    )
    assert bad.status_code == 400
    good = await client.post(
        "/v1/accounts/ada/consumptions", json={"amount": 5, "operation": "op"}, headers=headers
    )
    assert good.status_code == 201 and "Idempotent-Replayed" not in good.headers


async def test_a_batch_applies_each_command_on_its_own(client: Client, tenant: Tenant) -> None:
    await open_account(client, tenant, "a", grant=50)
    await open_account(client, tenant, "b", grant=5)
    response = await client.post(
        "/v1/batch",
        json={
            "commands": [
                {"op": "consume", "account_id": "a", "amount": 10, "operation": "op"},
                {"op": "consume", "account_id": "b", "amount": 10, "operation": "op"},
                {"op": "grant", "account_id": "b", "amount": 100, "reason": "top up"},
                {"op": "hold", "account_id": "a", "amount": 5, "operation": "op"},
                {"op": "consume", "account_id": "nobody", "amount": 1, "operation": "op"},
            ]
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 402, 201, 201, 404]
    assert results[1]["error"]["code"] == "insufficient_credits"
    assert results[3]["hold"]["status"] == "active"
    assert results[4]["error"]["code"] == "not_found"


async def test_an_atomic_batch_is_all_or_nothing(client: Client, tenant: Tenant) -> None:
    await open_account(client, tenant, "a", grant=50)
    await open_account(client, tenant, "b", grant=5)
    commands = [
        {"op": "consume", "account_id": "a", "amount": 10, "operation": "op"},
        {"op": "consume", "account_id": "b", "amount": 10, "operation": "op"},
    ]
    failed = await client.post(
        "/v1/batch", json={"atomic": True, "commands": commands}, headers=tenant.headers
    )
    assert failed.status_code == 409
    assert (failed.json()["code"], failed.json()["index"], failed.json()["cause"]) == (
        "conflict",
        1,
        "insufficient_credits",
    )
    assert (await client.get("/v1/accounts/a", headers=tenant.headers)).json()["balance"] == 50
    commands[1]["amount"] = 5
    done = await client.post(
        "/v1/batch", json={"atomic": True, "commands": commands}, headers=tenant.headers
    )
    assert done.status_code == 200
    assert [r["entry"]["balance"] for r in done.json()["results"]] == [40, 0]


async def test_commands_answered_are_visible_to_the_next_read(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=1_000)
    for _ in range(20):
        await client.post(
            "/v1/accounts/ada/consumptions",
            json={"amount": 3, "operation": "op"},
            headers=tenant.headers,
        )
        read = await client.get("/v1/accounts/ada", headers=tenant.headers)
        assert read.json()["version"] >= 3
    assert (await client.get("/v1/accounts/ada", headers=tenant.headers)).json()["balance"] == 940


async def test_the_same_key_sent_concurrently_is_applied_exactly_once(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=1_000)
    headers = {**tenant.headers, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/accounts/ada/consumptions",
                json={"amount": 9, "operation": "op"},
                headers=headers,
            )
            for _ in range(20)
        )
    )
    assert {r.status_code for r in responses} <= {201, 409}
    applied = [r for r in responses if r.status_code == 201]
    assert len({r.json()["entry_id"] for r in applied}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in applied) == 1
    assert (await client.get("/v1/accounts/ada", headers=tenant.headers)).json()["balance"] == 991

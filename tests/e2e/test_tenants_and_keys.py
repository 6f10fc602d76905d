"""Tenants, keys, isolation between tenants, and revocation and rotation across replicas."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from litestar.testing import AsyncTestClient

from api.http.app import create_app
from api.http.auth import AUTH_CACHE_TTL_S
from api.settings import Settings
from ledger.tenants.api_keys import hash_api_key
from tests.e2e.conftest import ADMIN, new_tenant, open_account

Client = AsyncTestClient[Any]


async def test_the_operator_creates_reads_and_changes_a_tenant(client: Client) -> None:
    tenant = await new_tenant(client, signup_bonus=10)
    read = await client.get(f"/v1/tenants/{tenant.tenant_id}", headers=ADMIN)
    assert read.status_code == 200 and read.json()["settings"]["signup_bonus"] == 10
    changed = await client.patch(
        f"/v1/tenants/{tenant.tenant_id}",
        json={"name": "Renamed", "settings": {"overdraft_limit": 50}},
        headers=ADMIN,
    )
    assert changed.status_code == 200
    assert changed.json()["name"] == "Renamed"
    assert changed.json()["settings"]["overdraft_limit"] == 50
    assert changed.json()["settings"]["signup_bonus"] == 10  # a patch keeps what it does not name
    await asyncio.sleep(1.1)  # settings reach the writer within its tenant cache TTL
    await open_account(client, tenant, "ada")
    used = await client.post(
        "/v1/accounts/ada/consumptions",
        json={"amount": 55, "operation": "op"},
        headers=tenant.headers,
    )
    assert used.status_code == 201 and used.json()["balance"] == -45


async def test_a_tenant_key_is_shown_once_and_stored_only_as_a_hash(
    client: Client, app_settings: Settings
) -> None:
    tenant = await new_tenant(client)
    listed = await client.get(f"/v1/tenants/{tenant.tenant_id}/api-keys", headers=ADMIN)
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert "key" not in item and item["key_id"] == tenant.key_id
    assert tenant.key.startswith("lk_live_")
    with psycopg.connect(app_settings.database_url) as conn:  # type: ignore[arg-type]
        rows = conn.execute(f'SELECT state FROM "{app_settings.schema}".ledger_events').fetchall()
    stored = b"".join(bytes(row[0]) for row in rows)
    assert tenant.key.encode() not in stored
    assert hash_api_key(tenant.key).encode() in stored


async def test_keys_carry_scopes_and_a_last_used_time(client: Client) -> None:
    tenant = await new_tenant(client)
    created = await client.post(
        f"/v1/tenants/{tenant.tenant_id}/api-keys",
        json={"name": "gateway", "scopes": ["credits:consume"]},
        headers=ADMIN,
    )
    assert created.status_code == 201
    assert created.json()["scopes"] == ["credits:consume"] and created.json()["key"].startswith(
        "lk_live_"
    )
    await client.get("/v1/accounts/x", headers=tenant.headers)
    listed = (await client.get("/v1/api-keys", headers=tenant.headers)).json()["items"]
    first = next(item for item in listed if item["key_id"] == tenant.key_id)
    assert first["last_used_at"] is not None


async def test_a_revoked_key_fails_at_once_here_and_within_a_second_on_another_replica(
    client: Client, app_settings: Settings
) -> None:
    tenant = await new_tenant(client)
    spare = await client.post(
        "/v1/api-keys", json={"scopes": ["accounts:read"]}, headers=tenant.headers
    )
    key = spare.json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    async with AsyncTestClient(create_app(app_settings)) as replica:
        assert (
            await replica.get("/v1/accounts/x", headers=headers)
        ).status_code == 404  # cached as valid
        revoked = await client.delete(
            f"/v1/api-keys/{spare.json()['key_id']}", headers=tenant.headers
        )
        assert revoked.status_code == 204
        assert (await client.get("/v1/accounts/x", headers=headers)).status_code == 401
        started = time.monotonic()
        while (await replica.get("/v1/accounts/x", headers=headers)).status_code != 401:
            assert time.monotonic() - started < 1.0, "the replica still accepts a revoked key"
            await asyncio.sleep(0.05)


async def test_the_operator_revokes_a_tenants_key(client: Client) -> None:
    tenant = await new_tenant(client)
    response = await client.delete(
        f"/v1/tenants/{tenant.tenant_id}/api-keys/{tenant.key_id}", headers=ADMIN
    )
    assert response.status_code == 204
    assert (await client.get("/v1/accounts/x", headers=tenant.headers)).status_code == 401
    unknown = await client.delete(f"/v1/tenants/{tenant.tenant_id}/api-keys/nope", headers=ADMIN)
    assert unknown.status_code == 404


async def test_another_tenants_accounts_holds_and_consumptions_answer_404(client: Client) -> None:
    alice, mallory = await new_tenant(client), await new_tenant(client)
    await open_account(client, alice, "shared-name", grant=100)
    await open_account(client, mallory, "mine", grant=100)
    hold = (
        await client.post(
            "/v1/accounts/shared-name/holds",
            json={"amount": 5, "operation": "x"},
            headers=alice.headers,
        )
    ).json()
    used = (
        await client.post(
            "/v1/accounts/shared-name/consumptions",
            json={"amount": 5, "operation": "x"},
            headers=alice.headers,
        )
    ).json()
    attempts = [
        await client.get("/v1/accounts/shared-name", headers=mallory.headers),
        await client.post(
            "/v1/accounts/shared-name/consumptions",
            json={"amount": 1, "operation": "x"},
            headers=mallory.headers,
        ),
        await client.post(
            "/v1/accounts/shared-name/grants",
            json={"amount": 1, "reason": "x"},
            headers=mallory.headers,
        ),
        await client.get(
            f"/v1/accounts/shared-name/holds/{hold['hold_id']}", headers=mallory.headers
        ),
        await client.post(
            f"/v1/accounts/shared-name/holds/{hold['hold_id']}/capture",
            json={},
            headers=mallory.headers,
        ),
        await client.post(
            f"/v1/accounts/mine/holds/{hold['hold_id']}/release", headers=mallory.headers
        ),
        await client.post(
            "/v1/accounts/mine/refunds",
            json={"consumption_id": used["consumption_id"], "reason": "x"},
            headers=mallory.headers,
        ),
        await client.post(
            "/v1/batch",
            json={
                "atomic": True,
                "commands": [
                    {"op": "consume", "account_id": "shared-name", "amount": 1, "operation": "x"}
                ],
            },
            headers=mallory.headers,
        ),
        await client.delete(f"/v1/api-keys/{alice.key_id}", headers=mallory.headers),
    ]
    assert [r.status_code for r in attempts[:7]] == [404] * 7
    assert attempts[7].status_code == 409 and attempts[7].json()["cause"] == "not_found"
    assert attempts[8].status_code == 404
    alice_account = (await client.get("/v1/accounts/shared-name", headers=alice.headers)).json()
    assert (alice_account["balance"], alice_account["held"]) == (95, 5)
    assert (
        await client.get("/v1/accounts/x", headers=alice.headers)
    ).status_code == 404  # alice's key still works


async def test_a_rotated_key_works_through_its_grace_period_beside_its_successor(
    client: Client, app_settings: Settings
) -> None:
    tenant = await new_tenant(client)
    spare = (
        await client.post(
            "/v1/api-keys",
            json={"name": "worker", "scopes": ["accounts:read"]},
            headers=tenant.headers,
        )
    ).json()
    old = {"Authorization": f"Bearer {spare['key']}"}
    rotate = f"/v1/api-keys/{spare['key_id']}/rotate"
    once = {**tenant.headers, "Idempotency-Key": "rotate-worker-1"}
    rotated = await client.post(rotate, json={"grace_s": 1}, headers=once)
    assert rotated.status_code == 201, rotated.text
    successor = rotated.json()
    assert (successor["name"], successor["scopes"]) == ("worker", ["accounts:read"])
    assert successor["predecessor_key_id"] == spare["key_id"]
    new = {"Authorization": f"Bearer {successor['key']}"}
    again = await client.post(rotate, json={"grace_s": 1}, headers=once)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["key_id"] == successor["key_id"] and "key" not in again.json()
    async with AsyncTestClient(create_app(app_settings)) as replica:
        for app in (client, replica):
            assert (await app.get("/v1/accounts/x", headers=old)).status_code == 404
            assert (await app.get("/v1/accounts/x", headers=new)).status_code == 404
        await asyncio.sleep(1.0 + AUTH_CACHE_TTL_S)
        for app in (client, replica):
            assert (await app.get("/v1/accounts/x", headers=old)).status_code == 401
            assert (await app.get("/v1/accounts/x", headers=new)).status_code == 404
    listed = (await client.get("/v1/api-keys", headers=tenant.headers)).json()["items"]
    by_id = {item["key_id"]: item for item in listed}
    assert by_id[spare["key_id"]]["successor_key_id"] == successor["key_id"]
    refused = await client.post(rotate, headers=tenant.headers)  # rotated already
    assert refused.status_code == 409 and refused.json()["code"] == "conflict"


async def test_the_operator_rotates_a_tenants_key_and_bad_rotations_are_refused(
    client: Client,
) -> None:
    tenant = await new_tenant(client)
    path = f"/v1/tenants/{tenant.tenant_id}/api-keys"
    rotated = await client.post(f"{path}/{tenant.key_id}/rotate", headers=ADMIN)
    assert rotated.status_code == 201, rotated.text
    successor = {"Authorization": f"Bearer {rotated.json()['key']}"}
    assert (await client.get("/v1/accounts/x", headers=tenant.headers)).status_code == 404
    assert (await client.get("/v1/accounts/x", headers=successor)).status_code == 404
    unknown = await client.post(f"{path}/no-such-key/rotate", headers=ADMIN)
    assert unknown.status_code == 404
    fresh = rotated.json()["key_id"]
    for body in ({"grace_s": 86_401}, {"grace_s": -1}, {"key_id": fresh}, {"other": 1}):
        bad = await client.post(f"{path}/{fresh}/rotate", json=body, headers=ADMIN)
        assert bad.status_code == 400, (body, bad.text)
    tenant_key = await client.post(f"/v1/api-keys/{fresh}/rotate", headers=ADMIN)
    assert tenant_key.status_code == 403

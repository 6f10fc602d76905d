"""Every error code of docs/api.md, each as a problem+json with its stable code."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from api.http.app import create_app
from api.settings import Settings
from tests.e2e.conftest import ADMIN, Tenant, new_tenant, open_account

Client = AsyncTestClient[Any]


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"].endswith(code) and body["title"] and body["detail"]
    return body


async def test_malformed_json_is_a_validation_error(client: Client, tenant: Tenant) -> None:
    await open_account(client, tenant, "ada")
    response = await client.post(
        "/v1/accounts/ada/grants",
        content=b"{not json",
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert_problem(response, 400, "validation_error")


async def test_wrong_types_unknown_fields_and_out_of_range_amounts_are_validation_errors(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada")
    for body in (
        {"amount": "10", "reason": "x"},
        {"amount": 10, "reason": "x", "color": "red"},
        {"amount": 10**15 + 1, "reason": "x"},
        {"amount": 1.5, "reason": "x"},
        {"reason": "x"},
    ):
        response = await client.post("/v1/accounts/ada/grants", json=body, headers=tenant.headers)
        assert_problem(response, 400, "validation_error")


async def test_a_bad_account_id_is_a_validation_error(client: Client, tenant: Tenant) -> None:
    response = await client.put("/v1/accounts/" + "x" * 129, json={}, headers=tenant.headers)
    assert_problem(response, 400, "validation_error")
    response = await client.put("/v1/accounts/has%20space", json={}, headers=tenant.headers)
    assert_problem(response, 400, "validation_error")


async def test_missing_malformed_unknown_and_admin_keys_are_unauthorized_or_forbidden(
    client: Client,
) -> None:
    assert_problem(await client.get("/v1/accounts/ada"), 401, "unauthorized")
    assert_problem(
        await client.get("/v1/accounts/ada", headers={"Authorization": "Bearer nope"}),
        401,
        "unauthorized",
    )
    unknown = "lk_live_" + "A" * 43
    assert_problem(
        await client.get("/v1/accounts/ada", headers={"X-API-Key": unknown}), 401, "unauthorized"
    )
    assert_problem(await client.get("/v1/accounts/ada", headers=ADMIN), 403, "forbidden")


async def test_a_key_without_the_scope_is_forbidden(client: Client, tenant: Tenant) -> None:
    await open_account(client, tenant, "ada", grant=10)
    created = await client.post(
        "/v1/api-keys", json={"scopes": ["accounts:read"], "name": "reader"}, headers=tenant.headers
    )
    assert created.status_code == 201
    reader = {"Authorization": f"Bearer {created.json()['key']}"}
    assert (await client.get("/v1/accounts/ada", headers=reader)).status_code == 200
    consume = await client.post(
        "/v1/accounts/ada/consumptions", json={"amount": 1, "operation": "op"}, headers=reader
    )
    assert_problem(consume, 403, "forbidden")
    assert_problem(await client.get("/v1/api-keys", headers=reader), 403, "forbidden")
    assert_problem(
        await client.post("/v1/tenants", json={"tenant_id": "abc", "name": "x"}, headers=reader),
        403,
        "forbidden",
    )


async def test_an_expired_key_is_unauthorized(client: Client, tenant: Tenant) -> None:
    created = await client.post(
        "/v1/api-keys",
        json={"scopes": ["accounts:read"], "expires_at": "2020-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert_problem(created, 400, "validation_error")  # an expiry in the past is refused outright


async def test_unknown_accounts_holds_and_consumptions_are_not_found(
    client: Client, tenant: Tenant
) -> None:
    assert_problem(await client.get("/v1/accounts/ghost", headers=tenant.headers), 404, "not_found")
    grant = await client.post(
        "/v1/accounts/ghost/grants", json={"amount": 1, "reason": "x"}, headers=tenant.headers
    )
    assert_problem(grant, 404, "not_found")
    await open_account(client, tenant, "ada", grant=10)
    assert_problem(
        await client.post("/v1/accounts/ada/holds/h-1/release", headers=tenant.headers),
        404,
        "not_found",
    )
    refund = await client.post(
        "/v1/accounts/ada/refunds",
        json={"consumption_id": "c-1", "reason": "x"},
        headers=tenant.headers,
    )
    assert_problem(refund, 404, "not_found")
    assert_problem(await client.get("/v1/tenants/ghost-tenant", headers=ADMIN), 404, "not_found")


async def test_insufficient_credits_is_402_and_carries_available(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=7)
    response = await client.post(
        "/v1/accounts/ada/consumptions",
        json={"amount": 8, "operation": "op"},
        headers=tenant.headers,
    )
    assert assert_problem(response, 402, "insufficient_credits")["available"] == 7


async def test_conflicts_tenant_taken_and_refund_beyond_refundable(
    client: Client, tenant: Tenant
) -> None:
    taken = await client.post(
        "/v1/tenants", json={"tenant_id": tenant.tenant_id, "name": "again"}, headers=ADMIN
    )
    assert_problem(taken, 409, "conflict")
    await open_account(client, tenant, "ada", grant=10)
    used = await client.post(
        "/v1/accounts/ada/consumptions",
        json={"amount": 4, "operation": "op"},
        headers=tenant.headers,
    )
    refund = {"consumption_id": used.json()["consumption_id"], "reason": "x", "amount": 5}
    assert_problem(
        await client.post("/v1/accounts/ada/refunds", json=refund, headers=tenant.headers),
        409,
        "conflict",
    )


async def test_a_body_over_one_mebibyte_is_too_large(client: Client, tenant: Tenant) -> None:
    await open_account(client, tenant, "ada")
    body = b'{"amount": 1, "reason": "' + b"x" * (1024 * 1024) + b'"}'
    response = await client.post(
        "/v1/accounts/ada/grants",
        content=body,
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


async def test_a_batch_over_1000_commands_is_a_validation_error(
    client: Client, tenant: Tenant
) -> None:
    commands = [{"op": "consume", "account_id": "a", "amount": 1, "operation": "op"}] * 1001
    assert_problem(
        await client.post("/v1/batch", json={"commands": commands}, headers=tenant.headers),
        400,
        "validation_error",
    )


async def test_the_rate_limit_answers_429_with_retry_after(app_settings: Settings) -> None:
    import msgspec

    limited = msgspec.structs.replace(app_settings, rate_limit_per_s=1.0, rate_limit_burst=3)
    async with AsyncTestClient(create_app(limited)) as client:
        tenant = await new_tenant(client)
        statuses = [
            (await client.get("/v1/accounts/x", headers=tenant.headers)).status_code
            for _ in range(5)
        ]
        assert statuses[:3] == [404, 404, 404]
        response = await client.get("/v1/accounts/x", headers=tenant.headers)
        assert_problem(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) >= 1


async def test_an_unreachable_store_answers_503_unavailable(client: Client, tenant: Tenant) -> None:
    services = client.app.state["services"]
    await open_account(client, tenant, "ada", grant=10)
    services.ledger.recorder.datastore.pool.close()  # the store is gone from this process
    services.writer.cache.clear()
    response = await client.post(
        "/v1/accounts/ada/consumptions",
        json={"amount": 1, "operation": "op"},
        headers=tenant.headers,
    )
    assert_problem(response, 503, "unavailable")
    ready = await client.get("/health/ready")
    assert ready.status_code == 503


async def test_health_metrics_and_the_openapi_document_are_served(client: Client) -> None:
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).json()["checks"]["store"] == "ok"
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and "ledger_http_requests_total" in metrics.text
    for name in ("apply_seconds", "commit_seconds", "queued_seconds", "works_answered"):
        assert f"\nledger_writer_{name} " in metrics.text
    document = (await client.get("/schema/openapi.json")).json()
    consume = document["paths"]["/v1/accounts/{account_id}/consumptions"]["post"]
    assert {"201", "400", "401", "402", "403", "404", "409", "422", "429", "503"} <= set(
        consume["responses"]
    )


async def test_a_request_past_the_timeout_answers_503_and_says_a_retry_is_safe(
    client: Client, tenant: Tenant, monkeypatch: Any
) -> None:
    import asyncio

    import api.http.middleware

    await open_account(client, tenant, "ada", grant=10)
    services = client.app.state["services"]

    async def slow_submit(command: Any) -> Any:
        await asyncio.sleep(1)
        raise AssertionError("the timeout should have answered first")

    monkeypatch.setattr(api.http.middleware, "REQUEST_TIMEOUT_S", 0.1)
    monkeypatch.setattr(services.writer, "submit", slow_submit)
    response = await client.post(
        "/v1/accounts/ada/consumptions",
        json={"amount": 1, "operation": "op"},
        headers=tenant.headers,
    )
    body = assert_problem(response, 503, "unavailable")
    assert "Idempotency-Key" in body["detail"]


async def test_deeply_nested_json_is_a_validation_error_not_a_500(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=10)
    nested = b"[" * 1500 + b"]" * 1500
    body = b'{"amount": 1, "operation": "op", "metadata": {"a": ' + nested + b"}}"
    response = await client.post(
        "/v1/accounts/ada/consumptions",
        content=body,
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert_problem(response, 400, "validation_error")
    too_deep: object = "x"
    for _ in range(20):
        too_deep = [too_deep]
    response = await client.post(
        "/v1/accounts/ada/consumptions",
        json={"amount": 1, "operation": "op", "metadata": {"a": too_deep}},
        headers=tenant.headers,
    )
    assert_problem(response, 400, "validation_error")


async def test_a_batch_idempotency_key_too_long_to_number_its_commands_is_refused(
    client: Client, tenant: Tenant
) -> None:
    commands = [{"op": "consume", "account_id": "a", "amount": 1, "operation": "op"}]
    response = await client.post(
        "/v1/batch",
        json={"commands": commands},
        headers={**tenant.headers, "Idempotency-Key": "k" * 252},
    )
    assert_problem(response, 400, "validation_error")


async def test_every_answer_carries_a_request_id_the_callers_or_one_of_its_own(
    client: Client, tenant: Tenant
) -> None:
    given = await client.get("/health/live", headers={"X-Request-Id": "trace-7"})
    first = await client.get("/v1/accounts/nobody", headers=tenant.headers)
    second = await client.get("/v1/accounts/nobody", headers=tenant.headers)
    assert given.headers["x-request-id"] == "trace-7"
    made = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert made[0] != made[1] and all(len(x) >= 16 and x.isalnum() for x in made)

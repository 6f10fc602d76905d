"""Input that could be read two ways is refused (400 `validation_error`) and records nothing: a
body that is not UTF-8, a key named twice, a path or query whose escapes are not UTF-8."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from api.http.streams import HEARTBEAT
from tests.e2e.conftest import Tenant, open_account
from tests.e2e.test_api_errors import assert_problem

Client = AsyncTestClient[Any]
JSON = {"content-type": "application/json"}


async def balance(client: Client, tenant: Tenant, account_id: str) -> int:
    response = await client.get(f"/v1/accounts/{account_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    value: int = response.json()["balance"]
    return value


async def test_a_body_that_is_not_utf8_is_a_validation_error_on_every_body_route(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=10)
    bad = b'{"amount": 1, "operation": "x\xffy"}'
    for path in ("/v1/accounts/ada/consumptions", "/v1/accounts/ada/grants", "/v1/batch"):
        response = await client.post(path, content=bad, headers={**tenant.headers, **JSON})
        assert_problem(response, 400, "validation_error")
    response = await client.put(
        "/v1/accounts/bob",
        content=b'{"metadata": {"k": "\xfe"}}',
        headers={**tenant.headers, **JSON},
    )
    assert_problem(response, 400, "validation_error")
    assert await balance(client, tenant, "ada") == 10


async def test_a_key_named_twice_is_a_validation_error_and_nothing_is_consumed(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=1000)
    for body in (
        b'{"amount": 1, "operation": "x", "amount": 999}',
        b'{"amount": 1, "operation": "x", "metadata": {"a": 1, "a": 2}}',
        b'{"amount": 1, "operation": "x", "\\u0061mount": 999}',
    ):
        response = await client.post(
            "/v1/accounts/ada/consumptions", content=body, headers={**tenant.headers, **JSON}
        )
        body_of = assert_problem(response, 400, "validation_error")
        assert "twice" in body_of["detail"]
    assert await balance(client, tenant, "ada") == 1000


async def test_ids_whose_escapes_are_not_utf8_are_refused_and_never_alias(
    client: Client, tenant: Tenant
) -> None:
    for path in ("/v1/accounts/x%FFy", "/v1/accounts/x%FEy"):
        assert_problem(
            await client.put(path, json={}, headers=tenant.headers), 400, "validation_error"
        )
        assert_problem(await client.get(path, headers=tenant.headers), 400, "validation_error")
    response = await client.get("/v1/history?account_id=x%FFy", headers=tenant.headers)
    assert_problem(response, 400, "validation_error")
    created = await client.put("/v1/accounts/x%C3%A9y", json={}, headers=tenant.headers)
    assert created.status_code == 201, created.text
    assert created.json()["account_id"] == "x\u00e9y"


def test_an_sse_heartbeat_is_a_comment_line_with_no_data_line() -> None:
    assert HEARTBEAT.encode() == b": heartbeat\r\n\r\n"

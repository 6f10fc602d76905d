"""Read side over HTTP: entries, balances as of a time, usage, history and audit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from ledger.accounts.views import Entry
from tests.e2e.conftest import Tenant, open_account

Client = AsyncTestClient[Any]


async def consume(
    client: Client, tenant: Tenant, account_id: str, amount: int, operation: str
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/accounts/{account_id}/consumptions",
        json={"amount": amount, "operation": operation},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def refund(
    client: Client, tenant: Tenant, account_id: str, consumption_id: str, amount: int | None = None
) -> int:
    body: dict[str, Any] = {"consumption_id": consumption_id, "reason": "task failed"}
    if amount is not None:
        body["amount"] = amount
    response = await client.post(
        f"/v1/accounts/{account_id}/refunds", json=body, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return int(response.json()["position"])


async def test_usage_of_the_seed_scenario_matches_hand_computed_totals(
    client: Client, tenant: Tenant
) -> None:
    """Image and video generation, with the failed tasks refunded (seeds 000-004)."""
    await open_account(client, tenant, "studio-a", grant=1_000)
    await open_account(client, tenant, "studio-b", grant=1_000)
    images = [await consume(client, tenant, "studio-a", 10, "IMAGE_GENERATION") for _ in range(3)]
    await consume(client, tenant, "studio-b", 10, "IMAGE_GENERATION")
    videos = [await consume(client, tenant, "studio-a", 50, "VIDEO_GENERATION") for _ in range(2)]
    await refund(
        client, tenant, "studio-a", videos[1]["consumption_id"]
    )  # a failed video: all back
    last = await refund(
        client, tenant, "studio-a", images[0]["consumption_id"], 4
    )  # partly failed image
    response = await client.get(
        f"/v1/usage?group_by=operation&min_position={last}", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["group_by"] == ["operation"]
    assert report["items"] == [
        {"operation": "IMAGE_GENERATION", "count": 4, "credits": 40, "refunded": 4},
        {"operation": "VIDEO_GENERATION", "count": 2, "credits": 100, "refunded": 50},
    ]
    assert report["total"] == {"count": 6, "credits": 140, "refunded": 54}
    by_account = (
        await client.get(
            "/v1/usage?group_by=account_id,operation&account_id=studio-b", headers=tenant.headers
        )
    ).json()
    assert by_account["items"] == [
        {
            "account_id": "studio-b",
            "operation": "IMAGE_GENERATION",
            "count": 1,
            "credits": 10,
            "refunded": 0,
        }
    ]
    by_day = (await client.get("/v1/usage?group_by=day", headers=tenant.headers)).json()
    today = datetime.now(tz=UTC).date().isoformat()
    assert by_day["items"] == [{"day": today, "count": 6, "credits": 140, "refunded": 54}]


async def test_entries_page_oldest_first_with_balances_after_each(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada", grant=100)
    positions = [(await consume(client, tenant, "ada", 10, "op"))["position"] for _ in range(5)]
    first = await client.get(
        f"/v1/accounts/ada/entries?limit=4&min_position={positions[-1]}", headers=tenant.headers
    )
    assert first.status_code == 200
    page = first.json()
    assert [e["type"] for e in page["items"]] == ["open", "grant", "consume", "consume"]
    assert [e["balance"] for e in page["items"]] == [0, 100, 90, 80]
    rest = (
        await client.get(
            f"/v1/accounts/ada/entries?after={page['next_after']}", headers=tenant.headers
        )
    ).json()
    assert [e["balance"] for e in rest["items"]] == [70, 60, 50]
    assert rest["next_after"] is None
    for item in page["items"] + rest["items"]:
        msgspec.convert(item, Entry)  # every item is a whole Entry


async def test_a_balance_as_of_a_past_time(client: Client, tenant: Tenant) -> None:
    await open_account(client, tenant, "ada", grant=100)
    await consume(client, tenant, "ada", 30, "op")
    await asyncio.sleep(0.05)
    middle = datetime.now(tz=UTC)
    await asyncio.sleep(0.05)
    last = (await consume(client, tenant, "ada", 20, "op"))["position"]
    then = await client.get(
        "/v1/accounts/ada/balance",
        params={"as_of": middle.isoformat(), "min_position": last},
        headers=tenant.headers,
    )
    assert then.status_code == 200
    assert (then.json()["balance"], then.json()["available"]) == (70, 70)
    now = (await client.get("/v1/accounts/ada/balance", headers=tenant.headers)).json()
    assert now["balance"] == 50
    early = await client.get(
        "/v1/accounts/ada/balance", params={"as_of": "2000-01-01T00:00:00Z"}, headers=tenant.headers
    )
    assert early.json()["balance"] == 0
    assert (
        await client.get("/v1/accounts/nobody/balance", headers=tenant.headers)
    ).status_code == 404


async def test_history_pages_and_streams_the_whole_tenant_in_ledger_order(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "a", grant=50)
    await open_account(client, tenant, "b", grant=50)
    last = (await consume(client, tenant, "b", 5, "op"))["position"]
    paged = (
        await client.get(f"/v1/history?limit=3&min_position={last}", headers=tenant.headers)
    ).json()
    assert len(paged["items"]) == 3 and paged["next_after"] == paged["items"][-1]["position"]
    streamed = await client.get(
        "/v1/history", headers={**tenant.headers, "Accept": "application/x-ndjson"}
    )
    assert streamed.headers["content-type"].startswith("application/x-ndjson")
    lines = [msgspec.json.decode(line, type=Entry) for line in streamed.content.splitlines()]
    assert [e.position for e in lines] == sorted(e.position for e in lines)
    assert [(e.account_id, e.type) for e in lines] == [
        ("a", "open"),
        ("a", "grant"),
        ("b", "open"),
        ("b", "grant"),
        ("b", "consume"),
    ]
    assert sum(e.amount for e in lines) == 95


async def test_audit_verify_finds_the_read_models_equal_to_a_replay(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "a", grant=50)
    used = await consume(client, tenant, "a", 5, "op")
    await refund(client, tenant, "a", used["consumption_id"])
    report = (await client.get("/v1/audit/verify", headers=tenant.headers)).json()
    assert report == {"ok": True, "accounts": 1, "entries": 4, "mismatches": []}


async def test_another_tenants_history_and_entries_are_invisible(
    client: Client, tenant: Tenant
) -> None:
    from tests.e2e.conftest import new_tenant

    other = await new_tenant(client)
    await open_account(client, tenant, "mine", grant=10)
    last = (await consume(client, tenant, "mine", 1, "op"))["position"]
    assert (
        await client.get(f"/v1/accounts/mine/entries?min_position={last}", headers=other.headers)
    ).status_code == 404
    history = (await client.get(f"/v1/history?min_position={last}", headers=other.headers)).json()
    assert history["items"] == []
    assert (await client.get("/v1/usage", headers=other.headers)).json()["total"]["count"] == 0


async def test_usage_filtered_by_an_account_id_no_account_can_have_is_refused(
    client: Client, tenant: Tenant
) -> None:
    for bad in ("a\x00b", "tab\there", "line\nbreak"):
        answer = await client.get("/v1/usage", params={"account_id": bad}, headers=tenant.headers)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["code"] == "validation_error"

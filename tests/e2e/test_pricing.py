"""The price book, quotes and reversals over HTTP, as docs/api.md states them."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.e2e.conftest import ADMIN, Tenant, open_account

Client = AsyncTestClient[Any]
RULES = {"rules": [{"currency": "USD", "credits_per_unit": "100", "bonus_percent": "10"}]}


async def test_a_tenant_reads_its_price_book_and_its_history(
    client: Client, tenant: Tenant
) -> None:
    assert (await client.get("/v1/price-book", headers=tenant.headers)).status_code == 404
    first = await client.put("/v1/price-book", json=RULES, headers=tenant.headers)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1
    by_operator = await client.put(
        f"/v1/tenants/{tenant.tenant_id}/price-book",
        json={"rules": [{"currency": "EUR", "credits_per_unit": "90"}]},
        headers=ADMIN,
    )
    assert by_operator.status_code == 201, by_operator.text
    book = (await client.get("/v1/price-book", headers=tenant.headers)).json()
    assert book["current"]["version"] == 2
    assert book["current"]["rules"][0]["currency"] == "EUR"
    history = (await client.get("/v1/price-book/history", headers=tenant.headers)).json()
    assert [item["version"] for item in history["items"]] == [1, 2]


async def test_a_bad_rule_is_refused_and_publishes_nothing(client: Client, tenant: Tenant) -> None:
    bad = {"rules": [{"currency": "usd", "credits_per_unit": "-1"}]}
    response = await client.put("/v1/price-book", json=bad, headers=tenant.headers)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    history = (await client.get("/v1/price-book/history", headers=tenant.headers)).json()
    assert history["items"] == []


async def test_a_quoted_purchase_credits_the_quote_once_and_then_answers_quote_used(
    client: Client, tenant: Tenant
) -> None:
    await open_account(client, tenant, "ada")
    await client.put("/v1/price-book", json=RULES, headers=tenant.headers)
    quote = await client.post(
        "/v1/quotes", json={"price": {"amount": "9.99", "currency": "USD"}}, headers=tenant.headers
    )
    assert quote.status_code == 201, quote.text
    body = quote.json()
    assert (body["credits"], body["rule_version"]) == (1098, 1)  # 999 * 1.1 = 1098.9
    purchase = {
        "price": body["price"],
        "payment_ref": "pi_1",
        "quote_id": body["quote_id"],
    }
    first = await client.post("/v1/accounts/ada/purchases", json=purchase, headers=tenant.headers)
    assert first.status_code == 201, first.text
    assert first.json()["amount"] == 1098
    other = await client.post(
        "/v1/accounts/ada/purchases",
        json=purchase | {"payment_ref": "pi_2"},
        headers=tenant.headers,
    )
    assert other.status_code == 409
    assert other.json()["code"] == "quote_used"


async def test_a_reversal_route_takes_back_a_purchase(client: Client, tenant: Tenant) -> None:
    await open_account(client, tenant, "ada")
    purchase = {"price": {"amount": "1", "currency": "USD"}, "payment_ref": "pi_9"}
    await client.post("/v1/accounts/ada/purchases", json=purchase, headers=tenant.headers)
    reversal = await client.post(
        "/v1/accounts/ada/reversals",
        json={"payment_ref": "pi_9", "reason": "refunded"},
        headers=tenant.headers,
    )
    assert reversal.status_code == 201, reversal.text
    assert (reversal.json()["type"], reversal.json()["amount"]) == ("reverse", -100)
    again = await client.post(
        "/v1/accounts/ada/reversals",
        json={"payment_ref": "pi_9", "reason": "refunded"},
        headers=tenant.headers,
    )
    assert again.status_code == 409

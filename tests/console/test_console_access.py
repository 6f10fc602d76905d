"""Every console page does what the key's scopes allow, a tenant sees only its own tenant
(another tenant's ids answer 404), and each action is recorded with who did it."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.console.conftest import ADMIN_KEY, IDEMPOTENCY, csrf_of, new_tenant, sign_in
from tests.e2e.conftest import ADMIN, open_account

Client = AsyncTestClient[Any]


async def test_a_tenant_sees_only_its_own_accounts_and_no_tenant_pages(app: Client) -> None:
    mine, theirs = await new_tenant(app), await new_tenant(app)
    await open_account(app, theirs, "secret-account", grant=10)
    await open_account(app, mine, "ada", grant=10)
    await sign_in(app, mine.key)
    assert (await app.get("/console/accounts/ada")).status_code == 200
    other = await app.get("/console/accounts/secret-account")
    assert other.status_code == 404
    listed = await app.get("/console/accounts")
    assert "secret-account" not in listed.text
    assert (await app.get(f"/console/tenants/{theirs.tenant_id}")).status_code == 404
    assert (await app.get(f"/console/tenants/{mine.tenant_id}")).status_code == 404
    assert (await app.get("/console/tenants")).status_code == 403


async def test_a_cross_tenant_command_through_the_console_answers_404(app: Client) -> None:
    mine, theirs = await new_tenant(app), await new_tenant(app)
    await open_account(app, theirs, "victim", grant=10)
    csrf = await sign_in(app, mine.key)
    grant = await app.post(
        "/console/accounts/victim/grants",
        data={"csrf": csrf, "amount": "5", "reason": "x", "step": "confirm"},
    )
    assert grant.status_code == 404
    account = await app.get("/v1/accounts/victim", headers=theirs.headers)
    assert account.json()["balance"] == 10


async def test_a_page_needs_its_scope(app: Client) -> None:
    tenant = await new_tenant(app)
    made = await app.post(
        "/v1/api-keys", json={"scopes": ["credits:consume"]}, headers=tenant.headers
    )
    await sign_in(app, made.json()["key"])
    for path in ("/console/accounts", "/console/usage", "/console/audit", "/console/keys"):
        refused = await app.get(path)
        assert refused.status_code == 403, path
        assert "lacks the scope" in refused.text


async def test_the_operator_has_no_tenant_pages(app: Client) -> None:
    await sign_in(app, ADMIN_KEY)
    refused = await app.get("/console/accounts")
    assert refused.status_code == 403
    assert "sign in with a tenant key" in refused.text


async def test_a_grant_asks_for_confirmation_applies_once_and_names_who_made_it(
    app: Client,
) -> None:
    tenant = await new_tenant(app)
    await open_account(app, tenant, "ada")
    csrf = await sign_in(app, tenant.key)
    review = await app.post(
        "/console/accounts/ada/grants", data={"csrf": csrf, "amount": "250", "reason": "promo"}
    )
    assert review.status_code == 200
    assert "Confirm" in review.text and "+250" in review.text
    account = (await app.get("/v1/accounts/ada", headers=tenant.headers)).json()
    assert account["balance"] == 0  # nothing until confirmed
    key = IDEMPOTENCY.search(review.text)
    assert key is not None
    confirm = {
        "csrf": csrf,
        "amount": "250",
        "reason": "promo",
        "step": "confirm",
        "idempotency_key": key[1],
    }
    done = await app.post("/console/accounts/ada/grants", data=confirm)
    assert done.status_code == 303
    twice = await app.post("/console/accounts/ada/grants", data=confirm)
    assert twice.status_code == 303
    account = (await app.get("/v1/accounts/ada", headers=tenant.headers)).json()
    assert account["balance"] == 250
    audit = await app.get("/console/audit")
    assert audit.status_code == 200
    assert f"console:{tenant.key_id}:" in audit.text


async def test_a_refused_command_shows_the_problems_detail(app: Client) -> None:
    tenant = await new_tenant(app)
    await open_account(app, tenant, "ada", grant=5)
    csrf = await sign_in(app, tenant.key)
    adjust = await app.post(
        "/console/accounts/ada/adjustments",
        data={"csrf": csrf, "amount": "-50", "reason": "fix", "step": "confirm"},
    )
    assert adjust.status_code == 402
    assert "is short of 50" in adjust.text
    bad = await app.post(
        "/console/accounts/ada/grants", data={"csrf": csrf, "amount": "0", "reason": "x"}
    )
    assert bad.status_code == 400
    assert "Expected `int` &gt;= 1" in bad.text


async def test_the_operator_recharges_disables_and_issues_keys_in_the_console(
    app: Client,
) -> None:
    tenant = await new_tenant(app)
    await open_account(app, tenant, "ada")
    csrf = await sign_in(app, ADMIN_KEY)
    base = f"/console/tenants/{tenant.tenant_id}"
    review = await app.post(
        base + "/recharge",
        data={"csrf": csrf, "account_id": "ada", "amount": "40", "reason": "support"},
    )
    assert "the platform operator" in review.text
    key = IDEMPOTENCY.search(review.text)
    assert key is not None
    done = await app.post(
        base + "/recharge",
        data={
            "csrf": csrf,
            "account_id": "ada",
            "amount": "40",
            "reason": "support",
            "step": "confirm",
            "idempotency_key": key[1],
        },
    )
    assert done.status_code == 303
    assert (await app.get("/v1/accounts/ada", headers=tenant.headers)).json()["balance"] == 40
    page = await app.get(base)
    assert "console:operator:" in page.text and "recharge" in page.text
    issued = await app.post(
        base + "/keys", data={"csrf": csrf, "name": "reader", "scopes": ["accounts:read"]}
    )
    assert issued.status_code == 201
    assert "copy it now" in issued.text
    disabled = await app.post(base + "/disable", data={"csrf": csrf, "reason": "unpaid"})
    assert disabled.status_code == 303
    assert (await app.get("/v1/accounts/ada", headers=tenant.headers)).status_code == 401
    assert (await app.get(f"/v1/tenants/{tenant.tenant_id}", headers=ADMIN)).json()[
        "disabled_reason"
    ] == "unpaid"
    enabled = await app.post(base + "/enable", data={"csrf": csrf_of(page.text)})
    assert enabled.status_code == 303
    assert (await app.get("/v1/accounts/ada", headers=tenant.headers)).status_code == 200

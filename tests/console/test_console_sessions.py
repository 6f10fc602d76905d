"""Signing in to the console: a key checked by the API's own auth, a server-side session in an
HttpOnly SameSite=Strict cookie, CSRF on every form, sign-out and revocation ending it."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.testing import AsyncTestClient

from api.console.sessions import SESSION_TTL_S
from tests.console.conftest import ADMIN_KEY, FORM_TOKEN, new_tenant, sign_in
from tests.e2e.conftest import ADMIN

Client = AsyncTestClient[Any]


async def test_signing_in_sets_an_httponly_strict_cookie_of_bounded_life(app: Client) -> None:
    form = await app.get("/console/sign-in")
    assert form.status_code == 200
    assert "default-src 'none'" in form.headers["content-security-policy"]
    token = FORM_TOKEN.search(form.text)
    assert token is not None
    signed = await app.post("/console/sign-in", data={"form_token": token[1], "key": ADMIN_KEY})
    assert signed.status_code == 303
    cookie = next(
        value
        for name, value in signed.headers.multi_items()
        if name == "set-cookie" and value.startswith("ledger_console=")
    )
    parts = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= parts
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert f"Max-Age={SESSION_TTL_S}" in cookie
    assert "secure" not in parts  # plain HTTP here; over HTTPS it is Secure
    assert ADMIN_KEY not in cookie


async def test_a_bad_key_or_a_forged_sign_in_form_does_not_sign_in(app: Client) -> None:
    form = await app.get("/console/sign-in")
    token = FORM_TOKEN.search(form.text)
    assert token is not None
    bad = await app.post("/console/sign-in", data={"form_token": token[1], "key": "nope"})
    assert bad.status_code == 401
    assert "send an API key" in bad.text or "malformed" in bad.text
    forged = await app.post("/console/sign-in", data={"form_token": "forged", "key": ADMIN_KEY})
    assert forged.status_code == 403
    assert (await app.get("/console/tenants")).status_code == 303  # still signed out


async def test_a_post_without_the_sessions_csrf_token_is_refused_and_records_nothing(
    app: Client,
) -> None:
    csrf = await sign_in(app, ADMIN_KEY)
    refused = await app.post("/console/tenants", data={"tenant_id": "evil", "name": "Evil"})
    assert refused.status_code == 403
    assert "not sent by this console" in refused.text
    wrong = await app.post(
        "/console/tenants", data={"csrf": csrf[:-2] + "00", "tenant_id": "evil", "name": "E"}
    )
    assert wrong.status_code == 403
    assert (await app.get("/v1/tenants/evil", headers=ADMIN)).status_code == 404
    made = await app.post("/console/tenants", data={"csrf": csrf, "tenant_id": "good", "name": "G"})
    assert made.status_code == 201
    assert "lk_live_" in made.text  # the first key, shown once


async def test_signing_out_ends_the_session_on_the_server(app: Client) -> None:
    csrf = await sign_in(app, ADMIN_KEY)
    cookie = app.cookies.get("ledger_console")
    assert cookie
    out = await app.post("/console/sign-out", data={"csrf": csrf})
    assert out.status_code == 303
    app.cookies.set("ledger_console", cookie, path="/console")  # a copy kept by an attacker
    again = await app.get("/console/tenants")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/console/sign-in")


async def test_a_revoked_keys_session_ends_within_the_auth_cache_time(app: Client) -> None:
    tenant = await new_tenant(app)
    await sign_in(app, tenant.key)
    assert (await app.get("/console/accounts")).status_code == 200
    revoked = await app.delete(
        f"/v1/tenants/{tenant.tenant_id}/api-keys/{tenant.key_id}", headers=ADMIN
    )
    assert revoked.status_code == 204
    await asyncio.sleep(0.6)  # AUTH_CACHE_TTL_S
    ended = await app.get("/console/accounts")
    assert ended.status_code == 303
    assert ended.headers["location"] == "/console/sign-in?notice=ended"


async def test_a_disabled_tenants_session_ends(app: Client) -> None:
    tenant = await new_tenant(app)
    await sign_in(app, tenant.key)
    disabled = await app.post(
        f"/v1/tenants/{tenant.tenant_id}/disable", json={"reason": "unpaid"}, headers=ADMIN
    )
    assert disabled.status_code == 200
    assert (await app.get("/console/accounts")).status_code == 303

"""The console in a real browser (issue 17): the operator signs in, creates a tenant and a key;
the tenant signs in, opens an account, grants, watches a consumption made through the API
change the balance live (no reload), refunds, sees the usage chart, and signs out. Forged
forms and another tenant's ids are refused. Every page is screenshotted and checked with
axe-core: nothing serious or critical."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS, axe_script
from tests.e2e.conftest import ADMIN, ADMIN_KEY
from tests.e2e.test_streams import live_url

__all__ = ["live_url"]  # the fixture: a real server with NATS and the relay

pytestmark = pytest.mark.browser

SERIOUS = ("serious", "critical")


async def check_page(page: Any, name: str) -> None:
    """A screenshot, then axe: no serious or critical violation."""
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    await page.add_script_tag(path=str(axe_script()))
    result = await page.evaluate("async () => await axe.run(document)")
    serious = [
        f"{violation['id']}: {violation['help']} ({len(violation['nodes'])} nodes)"
        for violation in result["violations"]
        if violation["impact"] in SERIOUS
    ]
    assert serious == [], f"{name}: {serious}"


async def sign_in(page: Any, url: str, key: str) -> None:
    await page.goto(f"{url}/console/sign-in")
    await page.fill("#key", key)
    await page.click("button[type=submit]")


async def confirm(page: Any) -> None:
    await page.wait_for_selector("text=Check and confirm")
    await page.click("button:has-text('Confirm')")


async def test_an_operator_and_a_tenant_use_the_console_end_to_end(
    live_url: str, chromium: Any
) -> None:
    url = live_url
    page = await chromium.new_page()

    # The operator: sign in, see no tenants, create one, issue a key.
    await page.goto(f"{url}/console")
    assert page.url.endswith("/console/sign-in")
    await check_page(page, "01-sign-in")
    await sign_in(page, url, ADMIN_KEY)
    await page.wait_for_url(re.compile(r"/console/tenants$"))
    assert await page.locator(".empty").count() == 1
    await check_page(page, "02-tenants-empty")
    await page.click("text=New tenant")
    await page.fill("#tenant_id", "browser-co")
    await page.fill("#name", "Browser Co")
    await check_page(page, "03-tenant-new")
    await page.click("button:has-text('Create tenant')")
    await page.wait_for_selector("#secret-value")
    first_key = await page.input_value("#secret-value")
    assert first_key.startswith("lk_live_")
    await check_page(page, "04-tenant-created")
    await page.fill("#key-name", "console reader")
    for scope in ("accounts:read", "accounts:write", "credits:consume", "reports:read"):
        await page.check(f"input[value='{scope}']")
    await page.click("button:has-text('Issue key')")
    await page.wait_for_selector("text=copy it now")
    tenant_key = await page.input_value("#secret-value")
    assert tenant_key.startswith("lk_live_") and tenant_key != first_key
    await page.goto(f"{url}/console/tenants")
    assert await page.locator("text=browser-co").count() == 1
    await check_page(page, "05-tenants")
    await page.click("button:has-text('Sign out')")
    await page.wait_for_url(re.compile(r"/console/sign-in"))

    # Another tenant, whose account the first must not reach.
    async with httpx.AsyncClient(base_url=url) as api:
        other = await api.post(
            "/v1/tenants", json={"tenant_id": "other-co", "name": "Other"}, headers=ADMIN
        )
        other_headers = {"Authorization": f"Bearer {other.json()['api_key']['key']}"}
        await api.put("/v1/accounts/hidden", json={}, headers=other_headers)

    # The tenant: open an account, grant with confirmation.
    await sign_in(page, url, tenant_key)
    await page.wait_for_url(re.compile(r"/console/accounts$"))
    await check_page(page, "06-accounts-empty")
    await page.fill("#open-id", "ada@example.com")
    await page.click("button:has-text('Open')")
    await page.wait_for_url(re.compile(r"/console/accounts/ada%40example\.com"))
    await page.fill("#g-amount", "500")
    await page.fill("#g-reason", "welcome pack")
    await page.click("button:has-text('Review grant')")
    await check_page(page, "07-confirm-grant")
    await confirm(page)
    await page.wait_for_selector("text=Credits granted.")
    assert await page.text_content("#balance") == "500"

    # A consumption through the API: the page changes by itself.
    await page.wait_for_selector("#live-status.on")
    await page.evaluate("window.notReloaded = true")
    async with httpx.AsyncClient(base_url=url) as api:
        consumed = await api.post(
            "/v1/accounts/ada@example.com/consumptions",
            json={"amount": 120, "operation": "IMAGE_GENERATION"},
            headers={"Authorization": f"Bearer {tenant_key}"},
        )
        assert consumed.status_code == 201
    await page.wait_for_function("document.getElementById('balance').textContent === '380'")
    assert await page.evaluate("window.notReloaded") is True
    assert await page.text_content("#available") == "380"
    fresh = page.locator("#entries tbody tr.fresh", has_text="IMAGE_GENERATION")
    assert await fresh.count() == 1
    await check_page(page, "08-account-live")

    # Refund it, with confirmation; the entries say which lot the consumption drew from.
    await page.reload()
    assert await page.locator(".draws li").count() >= 1
    await page.fill("#f-reason", "generation failed")
    await page.click("button:has-text('Review refund')")
    await confirm(page)
    await page.wait_for_selector("text=Consumption refunded.")
    assert await page.text_content("#balance") == "500"

    # The chart, the audit, the phone width.
    await page.goto(f"{url}/console/usage")
    bars = page.locator("svg.chart rect.bar")
    assert await bars.count() >= 2
    heights = [
        float(await bars.nth(i).get_attribute("height") or 0) for i in range(await bars.count())
    ]
    assert max(heights) > 0
    await check_page(page, "09-usage")
    await page.goto(f"{url}/console/audit")
    by = page.locator("td:has-text('console:')")
    assert await by.count() >= 6  # the open, grant and refund actions, and their entries
    consume = page.locator("tr", has_text="consume").locator("td").last
    # Made with the tenant's key through the API, not in the console: the entry names the key.
    assert (await consume.text_content() or "").startswith("key ")
    await check_page(page, "10-audit")
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{url}/console/accounts/ada%40example.com")
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, "the page scrolls sideways at phone width"
    await check_page(page, "11-account-phone")
    await page.set_viewport_size({"width": 1280, "height": 900})

    # Refused: another tenant's account, a form without the session's CSRF token.
    hidden = await page.goto(f"{url}/console/accounts/hidden")
    assert hidden is not None and hidden.status == 404
    await check_page(page, "12-not-found")
    forged = await page.request.post(
        f"{url}/console/accounts/ada%40example.com/grants",
        form={"amount": "999", "reason": "forged", "step": "confirm"},
        max_redirects=0,
    )
    assert forged.status == 403
    async with httpx.AsyncClient(base_url=url) as api:
        account = await api.get(
            "/v1/accounts/ada@example.com", headers={"Authorization": f"Bearer {tenant_key}"}
        )
        assert account.json()["balance"] == 500

    # Sign out: the session is gone.
    await page.goto(f"{url}/console/accounts")
    await page.click("button:has-text('Sign out')")
    await page.wait_for_selector("text=Signed out.")
    await page.goto(f"{url}/console/accounts")
    assert page.url.endswith("/console/sign-in")


async def test_the_api_docs_render_with_no_internet(live_url: str, chromium: Any) -> None:
    page = await chromium.new_page()
    outside: list[str] = []
    page.on(
        "request",
        lambda request: (
            outside.append(request.url)
            if not request.url.startswith(live_url) and not request.url.startswith("data:")
            else None
        ),
    )
    await page.goto(f"{live_url}/schema")
    await page.wait_for_selector(
        ".opblock-summary-path[data-path='/v1/accounts/{account_id}/consumptions']"
    )
    assert await page.locator(".opblock-tag").count() >= 6  # grouped by tag
    await page.screenshot(path=str(ARTIFACTS / "13-api-docs.png"))
    assert outside == []

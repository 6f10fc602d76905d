"""The console over HTTP (no browser): the real app, a fresh schema per test."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.http.app import create_app
from api.settings import Settings
from tests.e2e.conftest import ADMIN_KEY, app_settings, new_tenant

__all__ = ["ADMIN_KEY", "app_settings", "new_tenant"]

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
IDEMPOTENCY = re.compile(r'name="idempotency_key" value="([^"]+)"')


@pytest.fixture
async def app(app_settings: Settings) -> AsyncIterator[Any]:
    application = create_app(app_settings)
    async with AsyncTestClient(application) as client:
        client.follow_redirects = False  # the tests look at each redirect
        yield client


async def sign_in(client: AsyncTestClient[Any], key: str) -> str:
    """Signs in with `key`; returns the session's CSRF token."""
    form = await client.get("/console/sign-in")
    token = FORM_TOKEN.search(form.text)
    assert token is not None
    signed = await client.post("/console/sign-in", data={"form_token": token[1], "key": key})
    assert signed.status_code == 303, signed.text
    home = await client.get("/console", follow_redirects=True)
    assert home.status_code == 200, home.text
    csrf = CSRF.search(home.text)
    assert csrf is not None
    return csrf[1]


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None
    return found[1]

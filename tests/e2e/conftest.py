"""End-to-end fixtures: the real app (create_app) over HTTP, on a fresh schema per test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.http.app import create_app
from api.settings import Settings
from ledger.store.sealed import new_secret_key

ADMIN_KEY = "test-admin-" + secrets.token_hex(8)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SECRET_KEY = new_secret_key()


@dataclass
class Tenant:
    tenant_id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def app_settings(database_url: str, schema: str) -> Settings:
    # A secret key as `make run` always has one: the webhook secret routes work. No webhook
    # is delivered from the e2e app: endpoints made here (by the fuzzer too) name hosts off
    # this machine, and tests send traffic to no address but its own
    # (tests/integration/test_webhooks.py delivers to receivers on localhost).
    return Settings(
        database_url=database_url,
        schema=schema,
        admin_key=ADMIN_KEY,
        secret_key=SECRET_KEY,
        run_webhooks=False,
    )


@pytest.fixture
async def client(app_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(app_settings)) as test_client:
        yield test_client


async def new_tenant(client: AsyncTestClient[Any], **settings: Any) -> Tenant:
    tenant_id = "t-" + secrets.token_hex(4)
    response = await client.post(
        "/v1/tenants",
        json={"tenant_id": tenant_id, "name": tenant_id, "settings": settings},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    key = response.json()["api_key"]
    return Tenant(tenant_id=tenant_id, key=key["key"], key_id=key["key_id"])


@pytest.fixture
async def tenant(client: AsyncTestClient[Any]) -> Tenant:
    return await new_tenant(
        client, signup_bonus=0, overdraft_limit=0, purchase_rates={"USD": "100"}
    )


async def open_account(
    client: AsyncTestClient[Any], tenant: Tenant, account_id: str, grant: int = 0
) -> None:
    response = await client.put(f"/v1/accounts/{account_id}", json={}, headers=tenant.headers)
    assert response.status_code in (200, 201), response.text
    if grant:
        response = await client.post(
            f"/v1/accounts/{account_id}/grants",
            json={"amount": grant, "reason": "fund"},
            headers=tenant.headers,
        )
        assert response.status_code == 201, response.text

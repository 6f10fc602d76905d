"""One deployment of the service for a fault test: its database, its NATS, its `serve`s.

A deployment owns its PostgreSQL cluster and its nats-server(s) (fixtures in conftest), a
schema and a stream name of its own, the operator's key, and the `serve` processes it started
(one, or two replicas on the same database). `open_tenant` makes a tenant and its accounts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api.roles.embedded import free_port
from tests.faults.serve import Serve

ACCOUNTS = 8
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Tenant:
    tenant_id: str
    headers: dict[str, str]
    accounts: list[str]


@dataclass
class Deployment:
    database_url: str
    nats_urls: list[str]  # LEDGER_NATS_URL, comma-separated; a test reads from all of them
    directory: Path  # logs and replay files
    settings: dict[str, str] = field(default_factory=dict)  # more LEDGER_* for serve
    schema: str = field(default_factory=lambda: f"faults_{secrets.token_hex(4)}")
    stream_name: str = field(default_factory=lambda: f"LEDGER_F{secrets.token_hex(4).upper()}")
    admin_key: str = field(default_factory=lambda: "lk_admin_faults_" + secrets.token_hex(16))
    serves: list[Serve] = field(default_factory=list)

    @property
    def environ(self) -> dict[str, str]:
        """The LEDGER_* settings every role of this deployment runs with."""
        return {
            "LEDGER_DATABASE_URL": self.database_url,
            "LEDGER_NATS_URL": ",".join(self.nats_urls),
            "LEDGER_ADMIN_KEY": self.admin_key,
            "LEDGER_DB_SCHEMA": self.schema,
            "LEDGER_STREAM_NAME": self.stream_name,
            "LEDGER_DATA_DIR": str(self.directory / "data"),
            **self.settings,
        }

    async def start_serve(self) -> Serve:
        """A new `serve` on a port of its own, started and ready."""
        name = f"serve{len(self.serves) + 1}"
        serve = Serve(name, free_port(), self.environ, self.directory / f"{name}.log")
        self.serves.append(serve)
        serve.start()
        await serve.wait_ready()
        return serve

    async def open_tenant(self, url: str, accounts: int = ACCOUNTS) -> Tenant:
        tenant_id = "f-" + secrets.token_hex(4)
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
            created = await client.post(
                "/v1/tenants",
                json={"tenant_id": tenant_id, "name": tenant_id, "settings": {}},
                headers={"Authorization": f"Bearer {self.admin_key}"},
            )
            assert created.status_code == 201, created.text
            headers = {"Authorization": f"Bearer {created.json()['api_key']['key']}"}
            names = [f"acct-{index}@faults.example" for index in range(accounts)]
            for account_id in names:
                opened = await client.put(f"/v1/accounts/{account_id}", json={}, headers=headers)
                assert opened.status_code == 201, opened.text
        return Tenant(tenant_id, headers, names)

    def remove(self) -> None:
        for serve in self.serves:
            serve.remove()

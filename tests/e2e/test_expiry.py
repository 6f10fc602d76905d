"""Expiry with nobody touching the account (docs/adr/0007), over a real HTTP server with the
follower, the relay and the scheduler running and a real NATS: the `release` and `expire`
entries are recorded on time, reach NATS and the SSE stream, count in usage, and every read
shows them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import pytest
import uvicorn

from api.http.app import create_app
from api.roles.embedded import free_port
from api.settings import Settings
from tests.e2e.conftest import ADMIN, ADMIN_KEY
from tests.e2e.test_streams import read_sse

# The promise is 1 s under normal load (`make bench` measures it); a test machine shared with
# other suites gets twice that.
ON_TIME_S = 2.0
WAIT_S = 15.0


@pytest.fixture
async def live_url(
    database_url: str, schema: str, nats_url: str, stream_name: str
) -> AsyncIterator[str]:
    settings = Settings(
        database_url=database_url,
        schema=schema,
        admin_key=ADMIN_KEY,
        nats_url=nats_url,
        stream_name=stream_name,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(400):
            with contextlib.suppress(httpx.HTTPError):
                ready = await client.get("/health/ready")
                if ready.status_code == 200 and ready.json()["checks"].get("nats") == "ok":
                    break
            await asyncio.sleep(0.05)
    yield url
    server.should_exit = True
    await task


async def history(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = await client.get("/v1/history", headers={**headers, "Accept": "application/x-ndjson"})
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.content.splitlines()]


async def test_expiry_is_recorded_on_time_published_and_counted_with_no_command_touching_the_account(
    live_url: str, nats_url: str
) -> None:
    tenant_id = "t-" + secrets.token_hex(4)
    nc = await nats.connect(nats_url)
    messages: list[Any] = []

    async def received(message: Any) -> None:
        messages.append(message)

    async with httpx.AsyncClient(base_url=live_url, timeout=30) as client:
        created = await client.post(
            "/v1/tenants",
            json={"tenant_id": tenant_id, "name": "Expiring", "settings": {"signup_bonus": 0}},
            headers=ADMIN,
        )
        headers = {"Authorization": f"Bearer {created.json()['api_key']['key']}"}
        subscription = await nc.subscribe(f"ledger.{tenant_id}.>", cb=received)
        streamed = asyncio.create_task(read_sse(client, headers, want=7))
        await client.put("/v1/accounts/ada", json={}, headers=headers)
        expires_at = datetime.now(tz=UTC) + timedelta(seconds=1)
        trial = await client.post(
            "/v1/accounts/ada/grants",
            json={"amount": 100, "reason": "trial", "expires_at": expires_at.isoformat()},
            headers=headers,
        )
        assert trial.status_code == 201, trial.text
        await client.post(
            "/v1/accounts/ada/grants", json={"amount": 7, "reason": "paid"}, headers=headers
        )
        placed = await client.post(
            "/v1/accounts/ada/holds",
            json={"amount": 30, "operation": "RENDER", "expires_in_s": 1},
            headers=headers,
        )
        hold = placed.json()

        # Nobody touches the account from here on: only reads.
        deadline = time.monotonic() + WAIT_S
        while not {"release", "expire"} <= {e["type"] for e in await history(client, headers)}:
            assert time.monotonic() < deadline, "no expiry recorded"
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + WAIT_S
        while [e["type"] for e in await history(client, headers)][-1:] != ["expire"] or len(
            await history(client, headers)
        ) < 7:
            assert time.monotonic() < deadline, "the hold's credits did not expire"
            await asyncio.sleep(0.1)
        entries = await history(client, headers)
        # The lot expires first, but for the 30 the hold keeps; those expire with the hold.
        assert [(e["type"], e["amount"]) for e in entries] == [
            ("open", 0),
            ("grant", 100),
            ("grant", 7),
            ("hold", 0),
            ("expire", -70),
            ("release", 0),
            ("expire", -30),
        ]
        first, release, last = entries[4], entries[5], entries[6]
        assert first["lot_id"] == last["lot_id"] == trial.json()["lot_id"]
        assert (release["hold_id"], release["held"], last["balance"]) == (hold["hold_id"], 0, 7)
        lag_s = (datetime.fromisoformat(first["recorded_at"]) - expires_at).total_seconds()
        assert 0 <= lag_s < ON_TIME_S
        hold_due = datetime.fromisoformat(hold["expires_at"])
        lag_s = (datetime.fromisoformat(release["recorded_at"]) - hold_due).total_seconds()
        assert 0 <= lag_s < ON_TIME_S

        account = (await client.get("/v1/accounts/ada", headers=headers)).json()
        assert (account["balance"], account["held"], account["available"]) == (7, 0, 7)
        assert account["totals"]["expired"] == 100
        read_hold = await client.get(f"/v1/accounts/ada/holds/{hold['hold_id']}", headers=headers)
        assert read_hold.json()["status"] == "expired"
        balance = (await client.get("/v1/accounts/ada/balance", headers=headers)).json()
        assert (balance["balance"], balance["held"], balance["available"]) == (7, 0, 7)
        usage = (await client.get("/v1/usage?group_by=", headers=headers)).json()
        assert usage["total"] == {"count": 0, "credits": 0, "refunded": 0, "expired": 100}
        by_account = (await client.get("/v1/usage?group_by=account_id", headers=headers)).json()
        assert by_account["items"] == [
            {"account_id": "ada", "count": 0, "credits": 0, "refunded": 0, "expired": 100}
        ]

        sse = await asyncio.wait_for(streamed, WAIT_S)
        assert [entry["type"] for _, entry in sse][-3:] == ["expire", "release", "expire"]
        deadline = time.monotonic() + WAIT_S
        while len(messages) < 7:
            assert time.monotonic() < deadline, f"{len(messages)} NATS messages"
            await asyncio.sleep(0.05)
        subjects = [m.subject for m in messages]
        assert subjects[-3:] == [
            f"ledger.{tenant_id}.ada.expire",
            f"ledger.{tenant_id}.ada.release",
            f"ledger.{tenant_id}.ada.expire",
        ]
        assert [int(m.headers["Ledger-Position"]) for m in messages[-3:]] == [
            e["position"] for e in entries[-3:]
        ]
        await subscription.unsubscribe()
    await nc.close()

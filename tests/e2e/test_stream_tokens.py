"""Browser-safe realtime (issue 17): a short-lived signed token opens /v1/stream and /v1/ws
without a key, limited to its tenant and optionally one account; refused WebSockets are
closed with a code and a reason."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest
import websockets

from tests.e2e.conftest import ADMIN
from tests.e2e.test_streams import live_url

__all__ = ["live_url"]  # the fixture: a real server with NATS and the relay


async def tenant_key(client: httpx.AsyncClient, tenant_id: str) -> dict[str, str]:
    created = await client.post(
        "/v1/tenants", json={"tenant_id": tenant_id, "name": tenant_id}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['api_key']['key']}"}


async def scoped_key(client: httpx.AsyncClient, headers: dict[str, str], *scopes: str) -> str:
    made = await client.post("/v1/api-keys", json={"scopes": list(scopes)}, headers=headers)
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


async def first_sse_entry(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    async with client.stream("GET", f"/v1/stream?{query}", timeout=15) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                entry: dict[str, Any] = msgspec.json.decode(line[5:].strip())
                return entry
    raise AssertionError("the stream ended")


async def test_an_account_token_streams_that_account_over_sse_and_websocket(
    live_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=live_url) as client:
        headers = await tenant_key(client, "tokened")
        for account in ("ada", "bob"):
            await client.put(f"/v1/accounts/{account}", json={}, headers=headers)
            await client.post(
                f"/v1/accounts/{account}/grants",
                json={"amount": 10, "reason": "f"},
                headers=headers,
            )
        reader = await scoped_key(client, headers, "accounts:read")
        made = await client.post(
            "/v1/stream-tokens",
            json={"account_id": "bob", "ttl_s": 60},
            headers={"Authorization": f"Bearer {reader}"},
        )
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        assert made.json()["account_id"] == "bob"
        assert made.json()["tenant_id"] == "tokened"
        entry = await first_sse_entry(client, f"token={token}")
        assert entry["account_id"] == "bob"
        other = await client.get(f"/v1/stream?token={token}&account_id=ada")
        assert other.status_code == 403
        ws = live_url.replace("http://", "ws://") + "/v1/ws"
        async with websockets.connect(
            ws, subprotocols=["ledger.v1", f"ledger.token.{token}"]
        ) as socket:
            assert socket.subprotocol == "ledger.v1"
            first = msgspec.json.decode(await asyncio.wait_for(socket.recv(), 10))
            assert first["account_id"] == "bob"
        async with websockets.connect(f"{ws}?token={token}") as socket:
            first = msgspec.json.decode(await asyncio.wait_for(socket.recv(), 10))
            assert first["account_id"] == "bob"


async def test_a_tenant_wide_token_needs_reports_read_and_an_account_token_a_known_account(
    live_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=live_url) as client:
        headers = await tenant_key(client, "scoped")
        reader = {"Authorization": f"Bearer {await scoped_key(client, headers, 'accounts:read')}"}
        assert (await client.post("/v1/stream-tokens", json={}, headers=reader)).status_code == 403
        consumer = await scoped_key(client, headers, "credits:consume")
        refused = await client.post(
            "/v1/stream-tokens",
            json={"account_id": "ada"},
            headers={"Authorization": f"Bearer {consumer}"},
        )
        assert refused.status_code == 403
        unknown = await client.post(
            "/v1/stream-tokens", json={"account_id": "nobody"}, headers=reader
        )
        assert unknown.status_code == 404
        too_long = await client.post("/v1/stream-tokens", json={"ttl_s": 3601}, headers=headers)
        assert too_long.status_code == 400
        wide = await client.post("/v1/stream-tokens", json={}, headers=headers)
        assert wide.status_code == 201
        assert "account_id" not in wide.json()
        operator = await client.post("/v1/stream-tokens", json={}, headers=ADMIN)
        assert operator.status_code == 403


async def test_a_forged_or_revoked_tokens_stream_is_refused_with_a_code_and_a_reason(
    live_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=live_url) as client:
        headers = await tenant_key(client, "forger")
        key = await client.post("/v1/api-keys", json={"scopes": ["reports:read"]}, headers=headers)
        token = (
            await client.post(
                "/v1/stream-tokens",
                json={},
                headers={"Authorization": f"Bearer {key.json()['key']}"},
            )
        ).json()["token"]
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert (await client.get(f"/v1/stream?token={forged}")).status_code == 401
        ws = live_url.replace("http://", "ws://") + "/v1/ws"
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as bad:
            async with websockets.connect(f"{ws}?token={forged}") as socket:
                await socket.recv()
        assert bad.value.rcvd is not None
        assert (bad.value.rcvd.code, bad.value.rcvd.reason) == (
            4401,
            "the stream token is not valid",
        )
        revoked = await client.delete(f"/v1/api-keys/{key.json()['key_id']}", headers=headers)
        assert revoked.status_code == 204
        refused = await client.get(f"/v1/stream?token={token}")
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as bad_query:
            async with websockets.connect(f"{ws}?after=x", additional_headers=headers) as socket:
                await socket.recv()
        assert bad_query.value.rcvd is not None
        assert bad_query.value.rcvd.code == 4500
        reader = await scoped_key(client, headers, "accounts:read")
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as forbidden:
            async with websockets.connect(
                ws, additional_headers={"Authorization": f"Bearer {reader}"}
            ) as socket:
                await socket.recv()
        assert forbidden.value.rcvd is not None
        assert forbidden.value.rcvd.code == 4403

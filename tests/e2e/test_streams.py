"""Live streams over a real HTTP server, with the relay and NATS: nothing missed, nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import nats
import pytest
import uvicorn
import websockets

from api.http.app import create_app
from api.roles.embedded import free_port
from api.settings import Settings
from tests.e2e.conftest import ADMIN, ADMIN_KEY


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
    client = await nats.connect(nats_url)
    with contextlib.suppress(Exception):
        await client.jetstream().delete_stream(stream_name)
    await client.close()


async def read_sse(
    client: httpx.AsyncClient, headers: dict[str, str], want: int
) -> list[tuple[int, dict[str, Any]]]:
    """Reads `want` entries from /v1/stream, then disconnects."""
    received: list[tuple[int, dict[str, Any]]] = []
    event_id: int | None = None
    async with client.stream("GET", "/v1/stream", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                event_id = int(line[3:].strip())
            elif line.startswith("data:"):
                assert event_id is not None
                received.append((event_id, msgspec.json.decode(line[5:].strip())))
                if len(received) >= want:
                    return received
    return received


async def test_sse_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
    live_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=live_url) as client:
        created = await client.post(
            "/v1/tenants", json={"tenant_id": "streamer", "name": "S"}, headers=ADMIN
        )
        key = created.json()["api_key"]["key"]
        headers = {"Authorization": f"Bearer {key}"}
        for account_id in ("a", "b"):
            await client.put(f"/v1/accounts/{account_id}", json={}, headers=headers)
            await client.post(
                f"/v1/accounts/{account_id}/grants",
                json={"amount": 10_000, "reason": "f"},
                headers=headers,
            )

        last_position = 0

        async def produce() -> None:
            nonlocal last_position
            for i in range(150):
                answer = await client.post(
                    f"/v1/accounts/{'ab'[i % 2]}/consumptions",
                    json={"amount": 1, "operation": "op"},
                    headers=headers,
                )
                last_position = answer.json()["position"]

        producing = asyncio.create_task(produce())
        first = await read_sse(client, headers, want=60)  # then the connection drops mid-burst
        resume = {**headers, "Last-Event-ID": str(first[-1][0])}
        await producing
        history = await client.get(
            "/v1/history",
            params={"min_position": last_position},  # the read model has caught up
            headers={**headers, "Accept": "application/x-ndjson"},
        )
        committed = [msgspec.json.decode(line)["position"] for line in history.content.splitlines()]
        assert len(committed) == 4 + 150
        second = await read_sse(client, resume, want=len(committed) - len(first))
        positions = [p for p, _ in first] + [p for p, _ in second]
        assert positions == committed  # the union is exactly the committed entries, in order
        assert all(entry["position"] == p for p, entry in first + second)


async def test_websocket_sends_the_entries_after_a_position_then_live_ones(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as client:
        created = await client.post(
            "/v1/tenants", json={"tenant_id": "socketeer", "name": "S"}, headers=ADMIN
        )
        headers = {"Authorization": f"Bearer {created.json()['api_key']['key']}"}
        await client.put("/v1/accounts/a", json={}, headers=headers)
        granted = await client.post(
            "/v1/accounts/a/grants", json={"amount": 100, "reason": "f"}, headers=headers
        )
        after = granted.json()["position"]
        ws_url = live_url.replace("http://", "ws://") + f"/v1/ws?after={after}"
        async with websockets.connect(ws_url, additional_headers=headers) as socket:
            for _ in range(3):
                await client.post(
                    "/v1/accounts/a/consumptions",
                    json={"amount": 5, "operation": "op"},
                    headers=headers,
                )
            received = [
                msgspec.json.decode(await asyncio.wait_for(socket.recv(), 10)) for _ in range(3)
            ]
        assert [(e["type"], e["balance"]) for e in received] == [
            ("consume", 95),
            ("consume", 90),
            ("consume", 85),
        ]
        assert all(e["position"] > after for e in received)
        bad = live_url.replace("http://", "ws://") + "/v1/ws"
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as refused:
            async with websockets.connect(
                bad, additional_headers={"Authorization": "Bearer nope"}
            ) as socket:
                await socket.recv()
        assert refused.value.rcvd is not None
        assert refused.value.rcvd.code == 4401
        assert refused.value.rcvd.reason == "the API key is malformed"

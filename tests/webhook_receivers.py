"""Real HTTP receivers on localhost for the webhook tests: one that answers 2xx (after a delay,
if asked), one that fails (its first n requests, or all), one that never answers, one that
redirects, one that answers a huge body. Each keeps what it received, in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import h11


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`mode`: ok | fail | hang | redirect | huge. `fail_first`: in mode ok, the first n
    requests answer 500."""

    mode: str = "ok"
    delay_s: float = 0.0
    fail_first: int = 0
    location: str = "http://127.0.0.1:9/"
    received: list[Received] = field(default_factory=list)
    requests: int = 0
    _server: asyncio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks?x=1"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def ids(self) -> list[str]:
        return [item.message_id for item in self.received]

    def duplicates(self) -> int:
        return sum(count - 1 for count in Counter(self.ids()).values())

    async def wait_for(self, count: int, timeout_s: float = 30.0) -> None:
        """Until `count` distinct messages arrived."""
        deadline = time.monotonic() + timeout_s
        while len(set(self.ids())) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(set(self.ids()))} of {count} messages arrived"
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        headers: dict[str, str] = {}
        body = bytearray()
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    if not data:
                        return
                    connection.receive_data(data)
                elif isinstance(event, h11.Request):
                    headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            self.requests += 1
            await self._answer(connection, writer, headers, bytes(body))
        except (ConnectionError, h11.ProtocolError):
            pass
        finally:
            writer.close()

    async def _answer(
        self,
        connection: h11.Connection,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status, extra, payload = 200, [], b"ok"
        if self.mode == "fail" or (self.mode == "ok" and self.requests <= self.fail_first):
            status, payload = 500, b"down"
        elif self.mode == "redirect":
            status, extra = 302, [("location", self.location)]
        elif self.mode == "huge":
            payload = b"x" * (4 * 1024 * 1024)
        if 200 <= status < 300:
            self.received.append(Received(headers=headers, body=body, at=time.monotonic()))
            self._arrived.set()
        response = h11.Response(
            status_code=status, headers=[("content-length", str(len(payload))), *extra]
        )
        with contextlib.suppress(ConnectionError):
            writer.write(connection.send(response))
            writer.write(connection.send(h11.Data(data=payload)))
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()

"""How far the read models and NATS have got, and what readiness said, while a test runs.

Every POLL_S: the read models' last position, by tailing the tenant's `GET /v1/history`
(`after` = the last position seen), and NATS's, by the stream's last message. Each is kept as
(monotonic time, position) whenever it moves, so a test can ask when a role first held a
position: the moment it was doing its work again after a fault. Every READY_POLL_S, each
replica's `GET /health/ready` is asked and its answer kept with the time it was asked.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.faults import jetstream

POLL_S = 0.05
HISTORY_PAGE = 1_000
# A read that takes longer has broken the 2 s rule anyway (and the poll moves on).
REQUEST_TIMEOUT_S = 2.5
READY_POLL_S = 0.2
# Above the service's own 2 s for a readiness check of the store.
READY_TIMEOUT_S = 3.0


class Series:
    """(time, position) each time the position grew."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.positions: list[int] = []

    @property
    def last(self) -> int:
        return self.positions[-1] if self.positions else 0

    def record(self, at: float, position: int) -> None:
        if position > self.last:
            self.times.append(at)
            self.positions.append(position)

    def reached_at(self, position: int) -> float | None:
        """When the position first was at least `position`."""
        index = bisect.bisect_left(self.positions, position)
        return self.times[index] if index < len(self.positions) else None


@dataclass(frozen=True)
class Probe:
    """One request of the poller's and its answer."""

    url: str
    asked_at: float
    answered_at: float
    status: int | None  # None: no answer in time, or no connection (see error)
    error: str | None = None  # timeout | connection


class Progress:
    def __init__(
        self,
        urls: list[str],
        headers: dict[str, str],
        nats_urls: list[str],
        stream_name: str,
    ) -> None:
        self.urls = urls
        self.headers = headers
        self.nats_urls = nats_urls
        self.stream_name = stream_name
        self.read_models = Series()
        self.nats = Series()
        self.readiness: list[Probe] = []
        # The history polls: a read is held to the same rule as a command (503 within 2 s,
        # never 500, when the store is down).
        self.reads: list[Probe] = []
        self._nats_last = (0, 0)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow_read_models()),
            asyncio.create_task(self._follow_nats()),
            *(asyncio.create_task(self._ask_ready(url)) for url in self.urls),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def _pause(self, seconds: float = POLL_S) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    @staticmethod
    async def _ask(
        client: httpx.AsyncClient, url: str, path: str, **params: Any
    ) -> tuple[Probe, Any]:
        """GET `path`: the probe, and the answer's JSON when it is a 200."""
        asked_at = time.monotonic()
        try:
            response = await client.get(url + path, params=params or None)
        except httpx.TimeoutException:
            return Probe(url, asked_at, time.monotonic(), None, "timeout"), None
        except httpx.HTTPError:
            return Probe(url, asked_at, time.monotonic(), None, "connection"), None
        body = response.json() if response.status_code == 200 else None
        return Probe(url, asked_at, time.monotonic(), response.status_code), body

    async def _ask_ready(self, url: str) -> None:
        async with httpx.AsyncClient(timeout=READY_TIMEOUT_S) as client:
            while not self._stopping.is_set():
                probe, _ = await self._ask(client, url, "/health/ready")
                self.readiness.append(probe)
                await self._pause(max(0.0, probe.asked_at + READY_POLL_S - time.monotonic()))

    async def _follow_read_models(self) -> None:
        turn = 0
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, headers=self.headers) as client:
            while not self._stopping.is_set():
                url = self.urls[turn % len(self.urls)]
                probe, page = await self._ask(
                    client, url, "/v1/history", after=self.read_models.last, limit=HISTORY_PAGE
                )
                self.reads.append(probe)
                if page is None:
                    turn += 1  # this replica does not answer: ask the next
                elif page["items"]:
                    at = probe.answered_at
                    self.read_models.record(at, max(i["position"] for i in page["items"]))
                    if len(page["items"]) == HISTORY_PAGE:
                        continue  # more already there: no pause
                await self._pause()

    async def _follow_nats(self) -> None:
        nc = await jetstream.connect(self.nats_urls)
        try:
            while not self._stopping.is_set():
                self._nats_last = await jetstream.last_position(
                    nc, self.stream_name, self._nats_last
                )
                self.nats.record(time.monotonic(), self._nats_last[1])
                await self._pause()
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

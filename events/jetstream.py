"""The relay's connection to its JetStream stream: connected on demand, the stream created or
updated on every connect, a window of messages published and every ack awaited.

Any failure on the NATS side (a refused connection, a lost one, a message no stream took, acks
later than ACK_TIMEOUT_S) closes the connection and comes out as `StreamUnavailableError`, so
the relay tells it apart from a failure of the database it also uses, whatever the underlying
exception (nats-py raises OSError and TimeoutError too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from events.publisher import AckedPublisher

log = structlog.get_logger("events.jetstream")

STREAM_NAME = "LEDGER"
STREAM_SUBJECTS = ["ledger.>"]
# JetStream drops a re-sent message id within this window (seconds).
DUPLICATE_WINDOW_S = 120.0
# How long to wait for a window's acks before treating NATS as down.
ACK_TIMEOUT_S = 5.0


class StreamUnavailableError(Exception):
    """NATS did not take the window (or the connection, or the stream's configuration)."""


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    payload: bytes
    headers: dict[str, str]
    token: str  # unique among a window's messages: its reply subject ends in it


class JetStream:
    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        stream_name: str = STREAM_NAME,
        duplicate_window_s: float = DUPLICATE_WINDOW_S,
    ) -> None:
        self.connect = connect  # returns a connected nats-py client
        self.stream_name = stream_name
        self.duplicate_window_s = duplicate_window_s
        self._nc: Any = None
        self._publisher: AckedPublisher | None = None

    async def open(self) -> AckedPublisher:
        """The connection's publisher, connecting first (and creating or updating the stream)
        when there is no live connection."""
        if self._publisher is not None and self._nc is not None and self._nc.is_connected:
            return self._publisher
        await self.close()
        try:
            self._nc = await self.connect()
            await self.ensure_stream(self._nc.jetstream())
            publisher = AckedPublisher(self._nc)
            await publisher.start()
        except Exception as error:
            await self.close()
            raise StreamUnavailableError(str(error) or type(error).__name__) from error
        self._publisher = publisher
        log.info("relay_connected", stream=self.stream_name)
        return publisher

    async def publish(self, messages: list[Message]) -> None:
        """Publishes the window in order and returns once JetStream acknowledged every message."""
        publisher = await self.open()
        try:
            acks = [
                await publisher.publish(m.subject, m.payload, m.headers, token=m.token)
                for m in messages
            ]
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the acks complete, and a cancelled relay then never stops.
            async with asyncio.timeout(ACK_TIMEOUT_S):
                await asyncio.gather(*acks)
        except Exception as error:
            await self.close()
            raise StreamUnavailableError(str(error) or type(error).__name__) from error

    async def ensure_stream(self, js: Any) -> None:
        from nats.js.api import StorageType, StreamConfig  # noqa: PLC0415
        from nats.js.errors import NotFoundError  # noqa: PLC0415

        config = StreamConfig(
            name=self.stream_name,
            subjects=STREAM_SUBJECTS,
            storage=StorageType.FILE,
            duplicate_window=self.duplicate_window_s,
        )
        try:
            await js.stream_info(self.stream_name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)

    async def close(self) -> None:
        nc, self._nc, self._publisher = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

"""The relay's connection to its JetStream stream: connected on demand, the stream created or
updated on every connect, a window of messages published and every ack awaited.

The stream is the deployment's own: its subjects are `<prefix>.>` (LEDGER_NATS_SUBJECT_PREFIX),
its duplicate window and replicas are configured (LEDGER_NATS_DUPLICATE_WINDOW_S,
LEDGER_NATS_STREAM_REPLICAS), and the client is given every server of LEDGER_NATS_URL.

Any failure on the NATS side (a refused connection, a lost one, a message no stream took, acks
later than ACK_TIMEOUT_S) closes the connection and comes out as `StreamUnavailableError`, so
the relay tells it apart from a failure of the database it also uses, whatever the underlying
exception (nats-py raises OSError and TimeoutError too).

A `duplicate` ack means the stream kept an earlier message with the same Nats-Msg-Id. After a
crash that is this relay's own message, sent again (the same headers and payload): fine. Any
other message under one of this relay's ids is another deployment's (two ledgers writing one
stream with the same message-id namespace): its entry is not on the stream. That is an error,
logged (`relay_message_id_collision`) and counted (`foreign_duplicates`), never a success.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from events.publisher import AckedPublisher, Stored
from events.subjects import PREFIX, stream_subjects

log = structlog.get_logger("events.jetstream")

STREAM_NAME = "LEDGER"
# JetStream drops a re-sent message id within this window (seconds), unless configured.
DUPLICATE_WINDOW_S = 120.0
# How long to wait for a window's acks before treating NATS as down.
ACK_TIMEOUT_S = 5.0
# The header that names the deployment that sent a message (its message-id namespace).
DEPLOYMENT_HEADER = "Ledger-Deployment"


class StreamUnavailableError(Exception):
    """NATS did not take the window (or the connection, or the stream's configuration)."""


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    payload: bytes
    headers: dict[str, str]
    token: str  # unique among a window's messages: its reply subject ends in it


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What the relay creates its stream with."""

    name: str = STREAM_NAME
    subject_prefix: str = PREFIX
    duplicate_window_s: float = DUPLICATE_WINDOW_S
    replicas: int = 1


class JetStream:
    def __init__(
        self, connect: Callable[[], Awaitable[Any]], config: StreamConfig | None = None
    ) -> None:
        self.connect = connect  # returns a connected nats-py client
        self.config = config or StreamConfig()
        self.stream_name = self.config.name
        self._nc: Any = None
        self._publisher: AckedPublisher | None = None
        self.own_duplicates = 0  # acks `duplicate` for a message this relay had sent
        self.foreign_duplicates = 0  # ... for another deployment's message: an entry missing

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
        log.info(
            "relay_connected",
            stream=self.stream_name,
            server=str(getattr(self._nc, "connected_url", None) or ""),
        )
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
                stored = await asyncio.gather(*acks)
            for message, where in zip(messages, stored, strict=True):
                if where.duplicate:
                    await self._check_duplicate(message, where)
        except Exception as error:
            await self.close()
            raise StreamUnavailableError(str(error) or type(error).__name__) from error

    async def _check_duplicate(self, message: Message, where: Stored) -> None:
        """Whether the message the stream kept under this id is this one (a re-send)."""
        try:
            kept = await self._nc.jetstream().get_msg(self.stream_name, where.seq)
        except Exception as error:  # noqa: BLE001 - gone (the stream's limits), or NATS is
            # (then the next window fails as usual): what was kept cannot be told
            log.warning(
                "relay_duplicate_unverified",
                message_id=message.headers.get("Nats-Msg-Id"),
                stream_sequence=where.seq,
                error=str(error) or type(error).__name__,
            )
            return
        headers = kept.headers or {}
        if (
            kept.subject == message.subject
            and (kept.data or b"") == message.payload
            and headers.get(DEPLOYMENT_HEADER) == message.headers.get(DEPLOYMENT_HEADER)
        ):
            self.own_duplicates += 1
            return
        self.foreign_duplicates += 1
        log.error(
            "relay_message_id_collision",
            message_id=message.headers.get("Nats-Msg-Id"),
            subject=message.subject,
            kept_subject=kept.subject,
            kept_deployment=headers.get(DEPLOYMENT_HEADER),
            stream_sequence=where.seq,
            hint="another deployment writes this stream with the same message-id namespace: "
            "give each its own LEDGER_NATS_SUBJECT_PREFIX (and stream)",
        )

    async def ensure_stream(self, js: Any) -> None:
        from nats.js.api import StorageType  # noqa: PLC0415
        from nats.js.api import StreamConfig as NatsStreamConfig  # noqa: PLC0415
        from nats.js.errors import NotFoundError  # noqa: PLC0415

        config = NatsStreamConfig(
            name=self.stream_name,
            subjects=stream_subjects(self.config.subject_prefix),
            storage=StorageType.FILE,
            duplicate_window=self.config.duplicate_window_s,
            num_replicas=self.config.replicas,
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

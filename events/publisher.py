"""JetStream publishing with acknowledgements, for the relay: one reply subscription per
connection, one future per message, keyed by the message's own token (its position).

nats-py's `publish_async` does the same job with a NUID and two bytes from os.urandom per
message, a `wait_for` on a semaphore, `json.loads` and a PubAck object per ack. In a scenario 3
profile of `make bench` those were about 29% of the relay's samples, and the relay used a third
of a core there (0.24 with this publisher; docs/BENCHMARKS.md, round 3). The protocol is the same: a message published to a
stream's subject with a reply subject gets the stream's ack (or error) on that subject, and a
request nobody answers gets a 503 status.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

# The status header NATS sets on a reply when no stream took the message.
STATUS_HEADER = "Status"
NO_RESPONDERS_STATUS = "503"


class PublishError(Exception):
    """JetStream did not store a message: no stream took it, or the stream refused it."""


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Ack(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


class Stored(msgspec.Struct, frozen=True):
    """Where JetStream holds a message: its sequence, and whether the ack said `duplicate`
    (the stream already held a message with that Nats-Msg-Id, at `seq`, and kept that one)."""

    seq: int
    duplicate: bool


class AckedPublisher:
    """Publishes to JetStream on one connection; `publish` returns a future of where the
    stream holds the message. Tokens must be unique among the messages awaiting their acks."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox()  # unique to this connection
        self._pending: dict[str, asyncio.Future[Stored]] = {}
        self._subscription: Any = None

    async def start(self) -> None:
        self._subscription = await self.nc.subscribe(f"{self.prefix}.*", cb=self._on_reply)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str], token: str
    ) -> asyncio.Future[Stored]:
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            await self.nc.publish(subject, payload, reply=f"{self.prefix}.{token}", headers=headers)
        except BaseException:
            self._pending.pop(token, None)
            raise
        return future

    async def _on_reply(self, msg: Any) -> None:
        future = self._pending.pop(msg.subject[len(self.prefix) + 1 :], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get(STATUS_HEADER) == NO_RESPONDERS_STATUS:
            future.set_exception(PublishError("no stream took the message (no responders)"))
            return
        try:
            ack = _ack_decoder.decode(msg.data)
        except msgspec.DecodeError as error:
            future.set_exception(PublishError(f"unreadable ack: {error}"))
            return
        if ack.error is not None:
            future.set_exception(
                PublishError(
                    f"stream refused the message: {ack.error.code} {ack.error.description}"
                )
            )
        else:
            future.set_result(Stored(ack.seq, ack.duplicate))

"""Reading the relay's JetStream stream back: its configuration, its last entry, every message.

A test connects to every node it has (a cluster's surviving nodes answer for the lost one);
the client reconnects by itself while a server is down.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

# A JetStream API request without an answer in this time counts as "the stream is unavailable".
REQUEST_TIMEOUT_S = 2.0
FETCH_BATCH = 1_000
FETCH_TIMEOUT_S = 5.0
RECONNECT_WAIT_S = 0.1
POSITION_HEADER = "Ledger-Position"


@dataclass(frozen=True)
class Message:
    sequence: int  # the stream's
    subject: str
    position: int  # Ledger-Position
    account_id: str
    version: int
    type: str
    schema: str  # ledger.entry.v1, or ledger.low_balance.v1


async def _quiet(error: Exception) -> None:
    """A server of the test's is down on purpose: no traceback for each reconnect attempt."""


async def connect(urls: list[str]) -> Any:
    return await nats.connect(
        urls,
        error_cb=_quiet,
        connect_timeout=2,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=RECONNECT_WAIT_S,
    )


async def stream_config(nc: Any, stream_name: str) -> Any:
    """The stream's configuration as JetStream holds it, or None when it does not answer."""
    js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
    with contextlib.suppress(Exception):
        return (await js.stream_info(stream_name)).config
    return None


async def stream_leader(nc: Any, stream_name: str) -> str | None:
    js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
    with contextlib.suppress(Exception):
        info = await js.stream_info(stream_name)
        return info.cluster.leader if info.cluster else None
    return None


async def step_down(nc: Any, stream_name: str) -> None:
    """Asks the stream's leader to hand over to another replica (an error if it has none)."""
    with contextlib.suppress(Exception):
        await nc.request(
            f"$JS.API.STREAM.LEADER.STEPDOWN.{stream_name}", b"", timeout=REQUEST_TIMEOUT_S
        )


async def last_position(nc: Any, stream_name: str, known: tuple[int, int]) -> tuple[int, int]:
    """(last stream sequence, its Ledger-Position); `known` again if nothing new or no answer."""
    js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
    try:
        info = await js.stream_info(stream_name)
        sequence = int(info.state.last_seq)
        if sequence == known[0] or sequence == 0:
            return known
        message = await js.get_msg(stream_name, seq=sequence)
        return sequence, int(message.headers[POSITION_HEADER])
    except Exception:
        return known


async def read_all(nc: Any, stream_name: str) -> list[Message] | None:
    """Every message of the stream in stream order; None when the stream cannot be read."""
    js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
    try:
        info = await js.stream_info(stream_name)
    except Exception:
        return None
    last = int(info.state.last_seq)
    if last == 0:
        return []
    subscription = await js.pull_subscribe(
        info.config.subjects[0],
        stream=stream_name,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )
    found: list[Message] = []
    try:
        while not found or found[-1].sequence < last:
            for raw in await subscription.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S):
                payload = json.loads(raw.data)
                found.append(
                    Message(
                        sequence=raw.metadata.sequence.stream,
                        subject=raw.subject,
                        position=int(raw.headers[POSITION_HEADER]),
                        account_id=payload["account_id"],
                        version=int(payload["version"]),
                        type=payload.get("type", ""),
                        schema=payload.get("schema", ""),
                    )
                )
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
    return found

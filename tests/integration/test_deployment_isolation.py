"""Deployments isolated by configuration (issue 18): two ledgers on one NATS, or in two
schemas of one database, never take each other's subjects, message ids or locks."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from api.roles.database import ensure_schema
from api.roles.runtime import relay_connector
from events.jetstream import DEPLOYMENT_HEADER, StreamConfig
from events.relay import Relay
from ledger.store.application import Ledger
from ledger.store.transcoder import new_mapper
from ledger.writer.writer import Writer
from projections.follower import Follower
from tests.integration.helpers import open_funded, running_writer
from tests.integration.test_relay import burst, stream_messages, wait_until


@pytest.fixture
async def nats_client(nats_url: str) -> AsyncIterator[Any]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def running(consumer: Relay | Follower) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


def relay_with(
    database_url: str,
    schema: str,
    nats_url: str,
    stream: StreamConfig,
    namespace: str | None = None,
) -> Relay:
    return Relay(
        database_url,
        schema,
        new_mapper(),
        relay_connector(nats_url),
        stream=stream,
        message_id_namespace=namespace,
    )


async def test_a_configured_prefix_gives_the_stream_its_own_subjects_window_and_message_ids(
    writer: Writer, ledger: Ledger, database_url: str, schema: str, nats_url: str, nats_client: Any
) -> None:
    prefix = f"ledger-{secrets.token_hex(3)}"
    stream = StreamConfig(
        name=f"ISO_{secrets.token_hex(4).upper()}", subject_prefix=prefix, duplicate_window_s=7.0
    )
    js = nats_client.jetstream()
    await open_funded(writer, "iso", {"a": 100})
    relay = relay_with(database_url, schema, nats_url, stream)
    try:
        async with running(relay):
            await burst(writer, "iso", ["a"], 10)
            last = await asyncio.to_thread(ledger.max_position)

            async def published() -> bool:
                return relay.position >= last

            await wait_until(published)
        info = await js.stream_info(stream.name)
        assert info.config.subjects == [f"{prefix}.>"]
        assert info.config.duplicate_window == 7.0
        messages = await stream_messages(js, stream.name)
        assert messages and all(m.subject.startswith(f"{prefix}.iso.") for m in messages)
        for message in messages:
            position = message.headers["Ledger-Position"]
            assert message.headers["Nats-Msg-Id"] == f"{prefix}:{position}"
            assert message.headers[DEPLOYMENT_HEADER] == relay.deployment_id != ""
    finally:
        await js.delete_stream(stream.name)


async def test_a_duplicate_ack_for_a_message_another_deployment_sent_is_counted_as_an_error(
    writer: Writer, ledger: Ledger, database_url: str, schema: str, nats_url: str, nats_client: Any
) -> None:
    """Two deployments writing one stream under the same message-id namespace: JetStream keeps
    the first message of an id and acks the second `duplicate`. That is not a success."""
    prefix = f"shared-{secrets.token_hex(3)}"
    stream = StreamConfig(name=f"DUP_{secrets.token_hex(4).upper()}", subject_prefix=prefix)
    js = nats_client.jetstream()
    await js.add_stream(name=stream.name, subjects=[f"{prefix}.>"], duplicate_window=120.0)
    try:
        await open_funded(writer, "dup", {"a": 100})
        last = await asyncio.to_thread(ledger.max_position)
        for position in range(1, last + 1):  # another deployment's messages, under our ids
            await js.publish(
                f"{prefix}.other.x.grant",
                b"{}",
                headers={"Nats-Msg-Id": f"{prefix}:{position}", DEPLOYMENT_HEADER: "another"},
            )
        relay = relay_with(database_url, schema, nats_url, stream)
        async with running(relay):

            async def done() -> bool:
                return relay.position >= last

            await wait_until(done)
        assert relay.stream.foreign_duplicates >= 1
        assert relay.stream.own_duplicates == 0
    finally:
        await js.delete_stream(stream.name)


async def test_two_deployments_in_two_schemas_of_one_database_each_have_an_active_follower(
    writer: Writer, database_url: str, schema: str
) -> None:
    """The consumers' advisory locks are per schema: one deployment's follower does not keep
    the other's standing by."""
    other = f"t_{secrets.token_hex(6)}"
    await asyncio.to_thread(ensure_schema, database_url, other)
    other_ledger = await asyncio.to_thread(Ledger, database_url, other)
    try:
        async with running_writer(other_ledger) as other_writer:
            await open_funded(writer, "one", {"a": 5})
            await open_funded(other_writer, "two", {"b": 5})
            followers = [
                Follower(database_url, schema, new_mapper()),
                Follower(database_url, other, new_mapper()),
            ]
            async with running(followers[0]), running(followers[1]):

                async def both_caught_up() -> bool:
                    targets = [
                        await asyncio.to_thread(writer.ledger.max_position),
                        await asyncio.to_thread(other_ledger.max_position),
                    ]
                    return all(
                        f.active and f.position >= t
                        for f, t in zip(followers, targets, strict=True)
                    )

                await wait_until(both_caught_up, timeout_s=10.0)
    finally:
        await asyncio.to_thread(other_ledger.close)

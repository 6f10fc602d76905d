"""The relay on real PostgreSQL and a real NATS server: every position, in order, exactly the
payload of docs/api.md, through crashes and outages."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from api.roles.runtime import relay_connector
from events.jetstream import DUPLICATE_WINDOW_S, StreamConfig
from events.publisher import AckedPublisher, PublishError
from events.relay import Relay
from events.subjects import account_token
from ledger.store.application import Ledger
from ledger.store.transcoder import new_mapper
from ledger.writer.writer import Writer
from projections.tailer import schema_lock_key
from tests import envelopes as c
from tests.conftest import TEST_DATA_DIR
from tests.integration.helpers import (
    commit_during_a_read,
    open_funded,
    terminate_session_holding,
)
from tests.nats_server import NatsServer


@pytest.fixture
async def nats_client(nats_url: str, stream_name: str) -> AsyncIterator[Any]:
    client = await nats.connect(nats_url)
    yield client
    with contextlib.suppress(Exception):
        await client.jetstream().delete_stream(stream_name)
    await client.close()


async def account_positions(ledger: Ledger, database_url: str, schema: str) -> dict[int, str]:
    """position -> tenant of every account event in the store (what must reach NATS)."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            f'SELECT notification_id, originator_id, originator_version, topic, state FROM "{schema}".ledger_events '
            "WHERE topic LIKE 'ledger.account:%' ORDER BY notification_id"
        )
    finally:
        await conn.close()
    from ledger.accounts.stored_entries import decode_entries

    return {entry.position: tenant for tenant, entry in decode_entries(new_mapper(), rows)}


@contextlib.asynccontextmanager
async def running_relay(
    database_url: str,
    schema: str,
    nats_url: str,
    stream_name: str,
    *,
    duplicate_window_s: float = DUPLICATE_WINDOW_S,
    **options: Any,
) -> AsyncIterator[Relay]:
    """A relay running as a task on this loop, stopped (its position stored) on the way out."""
    relay = Relay(
        database_url,
        schema,
        new_mapper(),
        relay_connector(nats_url),
        stream=StreamConfig(name=stream_name, duplicate_window_s=duplicate_window_s),
        **options,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await task


async def stream_messages(js: Any, stream_name: str) -> list[Any]:
    info = await js.stream_info(stream_name)
    return [
        await js.get_msg(stream_name, seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def wait_until(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def burst(writer: Writer, tenant_id: str, accounts: list[str], count: int) -> None:
    await asyncio.gather(
        *(
            writer.submit(
                c.ConsumeCredits(
                    tenant_id=tenant_id,
                    account_id=accounts[i % len(accounts)],
                    amount=1,
                    operation="op",
                )
            )
            for i in range(count)
        )
    )


async def test_every_committed_position_arrives_in_order_per_account_with_the_contract_payload(
    writer: Writer,
    ledger: Ledger,
    database_url: str,
    schema: str,
    nats_url: str,
    stream_name: str,
    nats_client: Any,
) -> None:
    accounts = ["ada@example.com", "a.b*c>d%e", "plain"]
    await open_funded(writer, "alpha", dict.fromkeys(accounts, 1_000), low_balance_threshold=960)
    await open_funded(writer, "beta", {"other": 1_000})
    seen_by_alpha: list[Any] = []

    async def collect(message: Any) -> None:
        seen_by_alpha.append(message)

    subscription = await nats_client.subscribe("ledger.alpha.>", cb=collect)
    async with running_relay(
        database_url, schema, nats_url, stream_name, in_flight_max=50
    ) as relay:
        await burst(writer, "alpha", accounts, 150)
        await burst(writer, "beta", ["other"], 30)
        expected = await account_positions(ledger, database_url, schema)
        await wait_until(lambda: _at(relay, max(expected)))
    await subscription.unsubscribe()
    js = nats_client.jetstream()
    messages = await stream_messages(js, stream_name)
    entries = [m for m in messages if not m.subject.endswith(".low_balance")]
    assert sorted(int(m.headers["Nats-Msg-Id"]) for m in entries) == sorted(expected)
    last_by_account: dict[str, int] = {}
    for message in entries:
        payload = msgspec.json.decode(message.data)
        position = int(message.headers["Ledger-Position"])
        assert payload["schema"] == "ledger.entry.v1" and payload["position"] == position
        assert payload["tenant_id"] == expected[position]
        assert (
            message.subject
            == f"ledger.{payload['tenant_id']}.{account_token(payload['account_id'])}.{payload['type']}"
        )
        assert position > last_by_account.get(payload["account_id"], 0), (
            "out of order for an account"
        )
        last_by_account[payload["account_id"]] = position
    assert seen_by_alpha and all(m.subject.startswith("ledger.alpha.") for m in seen_by_alpha)
    low = [msgspec.json.decode(m.data) for m in messages if m.subject.endswith(".low_balance")]
    assert sorted(p["account_id"] for p in low) == sorted(accounts)  # each crossed 960 once
    assert all(
        p["schema"] == "ledger.low_balance.v1" and p["available"] < 960 <= p["available"] + 1
        for p in low
    )


async def _at(relay: Relay, position: int) -> bool:
    return relay.position >= position


async def test_a_relay_killed_mid_burst_and_restarted_loses_nothing_and_jetstream_drops_the_resends(
    writer: Writer,
    ledger: Ledger,
    database_url: str,
    schema: str,
    nats_url: str,
    stream_name: str,
    nats_client: Any,
) -> None:
    await open_funded(writer, "kill", {"a": 10_000, "b": 10_000})
    first = Relay(
        database_url,
        schema,
        new_mapper(),
        relay_connector(nats_url),
        stream=StreamConfig(name=stream_name),
        in_flight_max=20,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    producing = asyncio.create_task(burst(writer, "kill", ["a", "b"], 600))
    await wait_until(lambda: _published_some(first))
    task.cancel()  # killed: whatever window was in flight was sent but its position not stored
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await producing
    expected = await account_positions(ledger, database_url, schema)
    second = Relay(
        database_url,
        schema,
        new_mapper(),
        relay_connector(nats_url),
        stream=StreamConfig(name=stream_name),
        in_flight_max=20,
    )
    stop_second = asyncio.Event()
    task = asyncio.create_task(second.run(stop_second))
    try:
        await wait_until(lambda: _at(second, max(expected)))
    finally:
        stop_second.set()
        await task
    ids = [
        int(m.headers["Nats-Msg-Id"])
        for m in await stream_messages(nats_client.jetstream(), stream_name)
    ]
    assert sorted(ids) == sorted(expected)  # every position once: the re-sent window was dropped


async def _published_some(relay: Relay) -> bool:
    return relay.published >= 100


async def test_a_relay_whose_connection_is_cut_reconnects_by_itself_and_every_position_arrives_once(
    writer: Writer,
    ledger: Ledger,
    database_url: str,
    schema: str,
    nats_url: str,
    stream_name: str,
    nats_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its session ended from outside (as a PostgreSQL restart ends it), once between a
    window's acks and storing its position and once while it waits for a NOTIFY, the relay
    connects again, takes its lock back and goes on from the position it stored: the window
    it re-sends, JetStream drops."""
    import asyncpg

    from events import relay as relay_module

    await open_funded(writer, "cut", {"a": 10_000, "b": 10_000})
    await burst(writer, "cut", ["a", "b"], 200)
    killer = await asyncpg.connect(database_url)
    ended = stores = 0
    relay = Relay(
        database_url,
        schema,
        new_mapper(),
        relay_connector(nats_url),
        stream=StreamConfig(name=stream_name),
        in_flight_max=20,
    )
    store_position = relay.store_position

    async def cut_before_the_third_store(conn: Any, position: int) -> None:
        nonlocal ended, stores
        stores += 1
        if stores == 3:
            ended += await terminate_session_holding(
                killer, schema_lock_key(relay_module.ADVISORY_LOCK_KEY, schema)
            )
        await store_position(conn, position)

    monkeypatch.setattr(relay, "store_position", cut_before_the_third_store)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:

        async def caught_up() -> bool:
            assert not task.done(), "the relay stopped by itself"
            return relay.position >= max(await account_positions(ledger, database_url, schema))

        await wait_until(caught_up)
        assert ended == 1  # cut mid-stream, the window published but its position not stored
        ended += await terminate_session_holding(
            killer, schema_lock_key(relay_module.ADVISORY_LOCK_KEY, schema)
        )
        assert ended == 2  # cut while it waits, caught up
        await burst(writer, "cut", ["a", "b"], 50)
        await wait_until(caught_up)
    finally:
        stop.set()
        await task
        await killer.close()
    expected = await account_positions(ledger, database_url, schema)
    ids = [
        int(m.headers["Nats-Msg-Id"])
        for m in await stream_messages(nats_client.jetstream(), stream_name)
    ]
    assert sorted(ids) == sorted(expected)  # every position once: the re-sent window was dropped


async def test_nats_down_longer_than_the_duplicate_window_then_back_every_position_arrives(
    writer: Writer, ledger: Ledger, database_url: str, schema: str, stream_name: str
) -> None:
    server = NatsServer(Path(TEST_DATA_DIR) / f"nats-outage-{secrets.token_hex(4)}")
    server.start()
    async with running_relay(
        database_url, schema, server.url, stream_name, duplicate_window_s=1.0, in_flight_max=25
    ) as relay:
        await open_funded(writer, "outage", {"a": 10_000})
        await burst(writer, "outage", ["a"], 100)
        await wait_until(lambda: _published_some(relay))
        server.stop()
        await burst(
            writer, "outage", ["a"], 200
        )  # the API keeps accepting: NATS is not on its path
        await asyncio.sleep(2.5)  # longer than the duplicate window
        server.start()
        expected = await account_positions(ledger, database_url, schema)
        await wait_until(lambda: _at(relay, max(expected)), timeout_s=60)
    client = await nats.connect(server.url)
    try:
        messages = await stream_messages(client.jetstream(), stream_name)
    finally:
        await client.close()
        server.remove()
    seen: set[int] = set()
    delivered = []
    for message in messages:  # a consumer deduping by position
        position = int(message.headers["Ledger-Position"])
        if position not in seen:
            seen.add(position)
            delivered.append(position)
    assert sorted(delivered) == sorted(expected)
    assert delivered == sorted(delivered)


async def test_holds_raise_a_low_balance_alert_when_they_take_available_below_the_threshold(
    writer: Writer,
    database_url: str,
    schema: str,
    nats_url: str,
    stream_name: str,
    nats_client: Any,
) -> None:
    """A hold lowers `available` by an amount its entry does not carry: the relay reads that
    from the event, so a hold alerts like a consume, and a release or a capture does not."""
    account = "ada"
    await open_funded(writer, "gamma", {account: 1_000}, low_balance_threshold=960)

    async def run(command: c.Command) -> int:
        outcome = await writer.submit(command)
        return int(outcome.value.position)  # type: ignore[attr-defined]

    ids = {"tenant_id": "gamma", "account_id": account}
    first = await writer.submit(c.PlaceHold(**ids, amount=50, operation="op"))
    hold_positions = [int(first.value.position)]  # type: ignore[attr-defined]
    await run(c.ReleaseHold(**ids, hold_id=first.value.hold_id))  # type: ignore[attr-defined]
    await run(c.ConsumeCredits(**ids, amount=30, operation="op"))  # available 970
    second = await writer.submit(c.PlaceHold(**ids, amount=20, operation="op"))  # 950
    hold_positions.append(int(second.value.position))  # type: ignore[attr-defined]
    last = await run(c.CaptureHold(**ids, hold_id=second.value.hold_id))  # type: ignore[attr-defined]

    async with running_relay(database_url, schema, nats_url, stream_name) as relay:
        await wait_until(lambda: _at(relay, last))
    messages = await stream_messages(nats_client.jetstream(), stream_name)
    low = [m for m in messages if m.subject.endswith(".low_balance")]
    assert [int(m.headers["Ledger-Position"]) for m in low] == hold_positions
    assert [msgspec.json.decode(m.data)["available"] for m in low] == [950, 950]


async def test_the_publisher_fails_a_message_no_stream_takes_or_the_stream_refuses(
    nats_url: str, stream_name: str, nats_client: Any
) -> None:
    prefix = f"pubtest{secrets.token_hex(3)}"  # a stream of its own, overlapping no other
    subject = f"{prefix}.a.consume"
    client = await nats.connect(nats_url)
    try:
        publisher = AckedPublisher(client)
        await publisher.start()
        nobody = await publisher.publish(f"nostream.{secrets.token_hex(4)}", b"{}", {}, token="1")
        async with asyncio.timeout(5):
            with pytest.raises(PublishError, match="no responders"):
                await nobody
        await nats_client.jetstream().add_stream(name=stream_name, subjects=[f"{prefix}.>"])
        stored = await publisher.publish(subject, b"{}", {"Nats-Msg-Id": "7"}, token="7")
        refused = await publisher.publish(
            subject, b"{}", {"Nats-Expected-Stream": "another"}, token="8"
        )
        async with asyncio.timeout(5):
            assert (await stored).seq == 1
            with pytest.raises(PublishError, match="refused"):
                await refused
    finally:
        await client.close()


async def test_a_commit_that_lands_while_the_relay_finds_nothing_is_published_at_once(
    writer: Writer,
    database_url: str,
    schema: str,
    nats_url: str,
    stream_name: str,
    nats_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wake-up of a commit made while the relay's read runs is kept: the relay does not
    sleep through it until its next poll."""
    import asyncpg

    from events import relay as relay_module
    from projections import tailer as tailer_module

    await open_funded(writer, "wake", {"a": 10})
    placed = Relay(database_url, schema, new_mapper(), relay_connector(nats_url))
    conn = await asyncpg.connect(database_url)
    try:  # what is there now counts as published, so its first read finds nothing
        await placed.create_table(conn)
        await placed.store_position(conn, await asyncio.to_thread(writer.ledger.max_position))
    finally:
        await conn.close()
    monkeypatch.setattr(relay_module, "POLL_INTERVAL_S", 60.0)
    consume = c.ConsumeCredits(tenant_id="wake", account_id="a", amount=1, operation="op")
    reading, committed = commit_during_a_read(tailer_module.events_after, writer, consume)
    monkeypatch.setattr(tailer_module, "events_after", reading)
    async with running_relay(database_url, schema, nats_url, stream_name) as relay:
        await asyncio.wait_for(committed.wait(), 10)
        target = await asyncio.to_thread(writer.ledger.max_position)

        async def published() -> bool:
            return relay.position >= target

        await wait_until(published, timeout_s=2.0)  # against a poll of 60 s

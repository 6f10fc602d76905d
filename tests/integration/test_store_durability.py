"""Snapshots keep cold loads short; an unreachable store answers `unavailable`, records nothing."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ledger.errors import UnavailableError
from ledger.ids import account_aggregate_id
from ledger.limits import SNAPSHOT_INTERVAL
from ledger.store.application import Ledger
from ledger.writer.writer import Writer
from tests import envelopes as c
from tests.integration.helpers import balance, open_funded
from tests.integration.proxy import Proxy

T = "durable"


async def test_a_long_history_loads_from_a_snapshot_plus_fewer_than_the_interval_of_events(
    writer: Writer, database_url: str, schema: str
) -> None:
    await open_funded(writer, T, {"busy": 10_000})
    count = 2 * SNAPSHOT_INTERVAL + 37
    await asyncio.gather(
        *(
            writer.submit(
                c.ConsumeCredits(tenant_id=T, account_id="busy", amount=1, operation="op")
            )
            for _ in range(count)
        )
    )
    cold = Ledger(database_url, schema=schema)
    try:
        account_uuid = account_aggregate_id(T, "busy")
        assert cold.snapshots is not None
        (snapshot,) = list(cold.snapshots.get(account_uuid, desc=True, limit=1))
        assert snapshot.originator_version >= 2 * SNAPSHOT_INTERVAL
        replayed = list(cold.events.get(account_uuid, gt=snapshot.originator_version))
        assert len(replayed) < SNAPSHOT_INTERVAL
        loaded = cold.repository.get(account_uuid)
        assert loaded.balance == 10_000 - count
        assert loaded.version == snapshot.originator_version + len(replayed)
    finally:
        cold.close()


def via_proxy(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{port}"
    return parts._replace(netloc=netloc, query="").geturl()


async def test_an_unreachable_store_answers_unavailable_and_nothing_is_recorded(
    database_url: str, schema: str
) -> None:
    parts = urlsplit(database_url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]  # the embedded server's socket
    proxy = Proxy(socket_dir or parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    # Built off the event loop: the proxy runs on it, and Ledger() connects synchronously.
    ledger = await asyncio.to_thread(
        Ledger, via_proxy(database_url, proxy.port), schema=schema, connect_timeout_s=1
    )
    writer = Writer(ledger)
    writer.start()
    try:
        await open_funded(writer, T, {"a": 100})
        await proxy.cut()
        with pytest.raises(UnavailableError):
            await writer.submit(
                c.ConsumeCredits(tenant_id=T, account_id="a", amount=10, operation="op")
            )
        await proxy.start()
        assert await balance(writer, T, "a") == 100
        await writer.submit(
            c.ConsumeCredits(tenant_id=T, account_id="a", amount=10, operation="op")
        )
        assert await balance(writer, T, "a") == 90
    finally:
        await writer.stop()
        await proxy.cut()
        ledger.close()


async def test_a_commit_whose_acknowledgement_was_lost_is_answered_once_and_applied_once(
    writer: Writer, ledger: Ledger, database_url: str
) -> None:
    """The connection dies after COMMIT reached the server: the library's retry meets its own
    rows. The writer must see they are its own, answer success, and not run the command again."""
    from eventsourcing.persistence import OperationalError

    from tests.integration.helpers import stored_event_count

    await open_funded(writer, T, {"a": 100})
    original_record = ledger.record  # what the writer saves a batch with
    calls = 0

    def record_then_lose_the_ack(*args: Any, **kwargs: Any) -> object:
        nonlocal calls
        calls += 1
        original_record(*args, **kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    ledger.record = record_then_lose_the_ack  # type: ignore[method-assign]
    try:
        outcome = await writer.submit(
            c.ConsumeCredits(tenant_id=T, account_id="a", amount=10, operation="op")
        )
    finally:
        ledger.record = original_record  # type: ignore[method-assign]
    assert calls == 1
    assert outcome.value.balance == 90  # type: ignore[attr-defined]
    assert outcome.value.position > 0  # type: ignore[attr-defined]
    assert stored_event_count(ledger, database_url, T, "a", "CreditsConsumed") == 1
    assert await balance(writer, T, "a") == 90


# issue 18: a command sent while the store is down is answered within this, and one sent once
# it answers again succeeds within RECOVERY_WITHIN_S.
ANSWER_WITHIN_S = 2.0
RECOVERY_WITHIN_S = 1.0
# Long enough for a doubling back-off to have grown past the recovery bound.
OUTAGE_S = 6.0


async def test_commands_while_the_store_is_down_fail_within_2_s_and_succeed_within_1_s_of_it_answering(
    database_url: str, schema: str
) -> None:
    """The library retries a failed statement ten times and its pool backs off to seconds
    between reconnects: the store's gate answers at once while the store is down and opens
    as soon as it answers."""
    parts = urlsplit(database_url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    proxy = Proxy(socket_dir or parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    ledger = await asyncio.to_thread(Ledger, via_proxy(database_url, proxy.port), schema=schema)
    writer = Writer(ledger)
    writer.start()
    loop = asyncio.get_running_loop()

    def consume() -> Any:
        return writer.submit(
            c.ConsumeCredits(tenant_id=T, account_id="a", amount=1, operation="op")
        )

    try:
        await open_funded(writer, T, {"a": 100})
        await proxy.cut()
        down_at = loop.time()
        while loop.time() < down_at + OUTAGE_S:
            sent_at = loop.time()
            with pytest.raises(UnavailableError):
                await consume()
            assert loop.time() - sent_at <= ANSWER_WITHIN_S
            await asyncio.sleep(0.2)
        await proxy.start()
        up_at = loop.time()
        while True:
            try:
                await consume()
                break
            except UnavailableError:
                assert loop.time() - up_at <= RECOVERY_WITHIN_S, "not back within 1 s"
                await asyncio.sleep(0.02)
        assert loop.time() - up_at <= RECOVERY_WITHIN_S
        assert await balance(writer, T, "a") == 99
    finally:
        await writer.stop()
        await proxy.cut()
        await asyncio.to_thread(ledger.close)

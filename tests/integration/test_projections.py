"""The read models on real PostgreSQL: exactly once, restartable, rebuildable, auditable."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.roles.replay import run_replay, run_verify
from api.settings import Settings
from ledger.accounts.stored_entries import FIELDS_NOT_DECODED, decode_entries, entries_of_rows
from ledger.errors import LedgerError
from ledger.store.application import Ledger
from ledger.store.transcoder import new_mapper
from ledger.writer.writer import Writer
from projections import follower as follower_module
from projections import rebuild as rebuild_module
from projections import tailer as tailer_module
from projections.audit import compare_with_read_models
from projections.changes import Changes
from projections.event_store import events_after
from projections.follower import Follower
from tests import envelopes as c
from tests.integration.helpers import (
    commit_during_a_read,
    open_funded,
    terminate_session_holding,
)
from tests.integration.proxy import Proxy


async def drive(writer: Writer, tenant_id: str, steps: list[tuple[str, int, int]]) -> None:
    """Runs a sequence of (operation, account index, amount) commands, ignoring refusals."""
    accounts = [f"acct-{i}" for i in range(3)]
    await open_funded(writer, tenant_id, dict.fromkeys(accounts, 200), overdraft_limit=20)
    consumptions: list[tuple[str, str]] = []
    holds: list[tuple[str, str]] = []
    for op, index, amount in steps:
        account_id = accounts[index % len(accounts)]
        base = {"tenant_id": tenant_id, "account_id": account_id}
        try:
            if op == "grant":
                await writer.submit(c.GrantCredits(**base, amount=amount, reason="g"))
            elif op == "consume":
                outcome = await writer.submit(
                    c.ConsumeCredits(**base, amount=amount, operation=f"OP_{index % 2}")
                )
                consumptions.append((account_id, outcome.value.consumption_id))  # type: ignore[attr-defined]
            elif op == "refund" and consumptions:
                target, consumption_id = consumptions[index % len(consumptions)]
                await writer.submit(
                    c.RefundConsumption(
                        tenant_id=tenant_id,
                        account_id=target,
                        consumption_id=consumption_id,
                        amount=amount,
                        reason="r",
                    )
                )
            elif op == "hold":
                outcome = await writer.submit(c.PlaceHold(**base, amount=amount, operation="OP_H"))
                holds.append((account_id, outcome.value.hold_id))  # type: ignore[attr-defined]
            elif op == "capture" and holds:
                target, hold_id = holds.pop(index % len(holds))
                await writer.submit(
                    c.CaptureHold(tenant_id=tenant_id, account_id=target, hold_id=hold_id)
                )
            elif op == "adjust":
                await writer.submit(
                    c.AdjustBalance(**base, amount=amount - 30, reason="a")
                    if amount != 30
                    else c.ExpireCredits(**base)
                )
        except LedgerError:
            continue


async def table(
    conn: asyncpg.Connection, schema: str, name: str, order: str
) -> list[tuple[Any, ...]]:
    return [
        tuple(row) for row in await conn.fetch(f'SELECT * FROM "{schema}".{name} ORDER BY {order}')
    ]


async def sums_agree(conn: asyncpg.Connection, schema: str, tenant_id: str) -> None:
    entries = await conn.fetchval(
        f'SELECT coalesce(sum(amount), 0) FROM "{schema}".rm_entries WHERE tenant_id = $1',
        tenant_id,
    )
    balances = await conn.fetchval(
        f'SELECT coalesce(sum(balance), 0) FROM "{schema}".rm_accounts WHERE tenant_id = $1',
        tenant_id,
    )
    assert entries == balances


TENANT_NUMBERS = itertools.count()
ALL_STEPS = ("grant", "consume", "refund", "hold", "capture", "adjust")
ENTRY_TYPES = ("open", "grant", "purchase", "consume", "refund", "hold", "capture", "release")
ENTRY_TYPES += ("expire", "adjust")
REPO_ROOT = Path(__file__).resolve().parents[2]
steps_strategy = st.lists(
    st.tuples(
        st.sampled_from(["grant", "consume", "refund", "hold", "capture", "adjust"]),
        st.integers(0, 5),
        st.integers(1, 60),
    ),
    min_size=5,
    max_size=30,
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps_strategy)
def test_after_any_command_sequence_the_read_models_equal_a_replay_of_the_event_store(
    ledger: Ledger, database_url: str, schema: str, steps: list[tuple[str, int, int]]
) -> None:
    tenant_id = f"prop-{next(TENANT_NUMBERS)}"  # each example on a tenant of its own

    async def scenario() -> None:
        writer = Writer(ledger)
        writer.start()
        try:
            await drive(writer, tenant_id, steps)
        finally:
            await writer.stop()
        follower = Follower(database_url, schema, new_mapper())
        conn = await asyncpg.connect(database_url)
        try:
            await follower.create_tables(conn)
            await follower.catch_up(conn)
            report = await compare_with_read_models(conn, schema, new_mapper(), tenant_id)
            assert report["ok"], report["mismatches"]
            assert report["accounts"] == 3
            await sums_agree(conn, schema, tenant_id)
        finally:
            await conn.close()

    asyncio.run(scenario())


class Crash(Exception):
    pass


async def test_a_follower_killed_between_apply_and_commit_skips_nothing_and_applies_nothing_twice(
    writer: Writer, database_url: str, schema: str
) -> None:
    await drive(
        writer,
        "crashy",
        [
            (op, i, a)
            for op, i, a in zip(
                ["consume", "grant", "hold"] * 40, range(120), [5] * 120, strict=False
            )
        ],
    )
    conn = await asyncpg.connect(database_url)
    try:
        crashes = 0

        async def crash_on_the_third_batch(position: int) -> None:
            nonlocal crashes
            crashes += 1
            if crashes == 3:
                raise Crash(position)

        dying = Follower(
            database_url,
            schema,
            new_mapper(),
            batch_size_max=37,
            before_commit=crash_on_the_third_batch,
        )
        await dying.create_tables(conn)
        with pytest.raises(Crash):
            await dying.catch_up(conn)
        assert await dying.read_position(conn) == dying.position  # the failed batch left no trace
        restarted = Follower(database_url, schema, new_mapper(), batch_size_max=37)
        await restarted.catch_up(conn)
        report = await compare_with_read_models(conn, schema, new_mapper(), "crashy")
        assert report["ok"], report["mismatches"]
        duplicates = await conn.fetchval(
            f'SELECT count(*) - count(DISTINCT (account_id, version)) FROM "{schema}".rm_entries'
        )
        assert duplicates == 0
    finally:
        await conn.close()


async def test_a_rebuild_from_zero_gives_read_models_identical_to_the_live_ones(
    writer: Writer, database_url: str, schema: str
) -> None:
    rng = random.Random(3)
    steps = [
        (
            rng.choice(["grant", "consume", "refund", "hold", "capture"]),
            rng.randint(0, 5),
            rng.randint(1, 40),
        )
        for _ in range(150)
    ]
    await drive(writer, "rebuilt", steps)
    live = Follower(database_url, schema, new_mapper(), batch_size_max=50)
    conn = await asyncpg.connect(database_url)
    try:
        await live.create_tables(conn)
        await live.catch_up(conn)
        before = [
            await table(conn, schema, "rm_entries", "position"),
            await table(conn, schema, "rm_accounts", "tenant_id, account_id"),
            await table(conn, schema, "rm_usage", "tenant_id, day, operation, account_id"),
        ]
        events, _ = await Follower(database_url, schema, new_mapper()).rebuild()
        assert events > 150
        after = [
            await table(conn, schema, "rm_entries", "position"),
            await table(conn, schema, "rm_accounts", "tenant_id, account_id"),
            await table(conn, schema, "rm_usage", "tenant_id, day, operation, account_id"),
        ]
        assert after == before
    finally:
        await conn.close()


async def test_a_second_follower_waits_as_standby_and_takes_over(
    writer: Writer, database_url: str, schema: str
) -> None:
    await open_funded(writer, "standby", {"a": 10})
    first, second = (Follower(database_url, schema, new_mapper()) for _ in range(2))
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    first_task = asyncio.create_task(first.run(stop_first))
    while not first.active:
        await asyncio.sleep(0.02)
    second_task = asyncio.create_task(second.run(stop_second))
    await asyncio.sleep(0.5)
    assert first.active and not second.active
    stop_first.set()
    await first_task
    for _ in range(150):
        if second.active:
            break
        await asyncio.sleep(0.02)
    assert second.active
    await writer.submit(
        c.ConsumeCredits(tenant_id="standby", account_id="a", amount=1, operation="op")
    )
    target = await asyncio.to_thread(writer.ledger.max_position)
    for _ in range(150):
        if second.position >= target:
            break
        await asyncio.sleep(0.02)
    assert second.position >= target
    stop_second.set()
    await second_task


async def test_a_commit_that_lands_while_the_follower_finds_nothing_wakes_it_at_once(
    writer: Writer, database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wake-up of a commit made while the follower's read runs is kept: the follower does
    not sleep through it until its next poll."""
    await open_funded(writer, "wake", {"a": 10})
    conn = await asyncpg.connect(database_url)
    try:  # caught up before it runs, so its first read finds nothing
        before = Follower(database_url, schema, new_mapper())
        await before.create_tables(conn)
        await before.catch_up(conn)
    finally:
        await conn.close()
    monkeypatch.setattr(follower_module, "POLL_INTERVAL_S", 60.0)
    follower = Follower(database_url, schema, new_mapper())
    consume = c.ConsumeCredits(tenant_id="wake", account_id="a", amount=1, operation="op")
    reading, committed = commit_during_a_read(
        tailer_module.events_after, writer, consume, when=lambda: follower.active
    )
    monkeypatch.setattr(tailer_module, "events_after", reading)
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:
        await asyncio.wait_for(committed.wait(), 10)
        target = await asyncio.to_thread(writer.ledger.max_position)
        for _ in range(100):  # 2 s, against a poll of 60
            if follower.position >= target:
                break
            await asyncio.sleep(0.02)
        assert follower.position >= target
    finally:
        stop.set()
        await task


async def test_a_follower_whose_connection_is_cut_reconnects_by_itself_and_applies_every_event_once(
    writer: Writer, database_url: str, schema: str
) -> None:
    """Its session ended from outside (as a PostgreSQL restart ends it), once between a
    batch's apply and its commit and once while it waits for a NOTIFY, the follower connects
    again, takes its lock back and goes on from the position it recorded."""
    await drive(writer, "cut", [("consume", i, 1) for i in range(60)])
    killer = await asyncpg.connect(database_url)
    ended = batches = 0

    async def cut_the_third_batch_before_its_commit(position: int) -> None:
        nonlocal ended, batches
        batches += 1
        if batches == 3:
            ended += await terminate_session_holding(killer, follower_module.ADVISORY_LOCK_KEY)

    follower = Follower(
        database_url,
        schema,
        new_mapper(),
        batch_size_max=7,
        before_commit=cut_the_third_batch_before_its_commit,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:

        async def caught_up() -> bool:
            assert not task.done(), "the follower stopped by itself"
            return follower.position >= await asyncio.to_thread(writer.ledger.max_position)

        await eventually(caught_up)
        assert ended == 1  # cut mid-stream, the batch's transaction lost with the session
        ended += await terminate_session_holding(killer, follower_module.ADVISORY_LOCK_KEY)
        assert ended == 2  # cut while it waits, caught up
        await drive(writer, "cut-later", [("consume", i, 1) for i in range(20)])
        await eventually(caught_up)
        for tenant_id, entries in (("cut", 3 * 2 + 60), ("cut-later", 3 * 2 + 20)):
            report = await compare_with_read_models(killer, schema, new_mapper(), tenant_id)
            assert report["ok"], report["mismatches"]
            assert report["entries"] == entries
        duplicates = await killer.fetchval(
            f"SELECT count(*) - count(DISTINCT (tenant_id, account_id, version)) "
            f'FROM "{schema}".rm_entries'
        )
        assert duplicates == 0
    finally:
        stop.set()
        await task
        await killer.close()


async def test_a_follower_that_cannot_reach_the_database_keeps_trying_and_catches_up_after(
    writer: Writer, database_url: str, schema: str
) -> None:
    """The database unreachable (connections dropped and refused, as while PostgreSQL
    restarts) while commands commit: the follower retries with a growing back-off and applies
    all of them once it can connect."""
    await drive(writer, "away", [("consume", i, 1) for i in range(10)])
    parts = urlsplit(database_url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]  # the embedded server's socket
    proxy = Proxy(socket_dir or parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
    follower = Follower(parts._replace(netloc=netloc, query="").geturl(), schema, new_mapper())
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))

    async def caught_up() -> bool:
        assert not task.done(), "the follower stopped by itself"
        return follower.position >= await asyncio.to_thread(writer.ledger.max_position)

    try:
        await eventually(caught_up)
        await proxy.cut()
        await drive(writer, "away-later", [("consume", i, 1) for i in range(10)])
        await asyncio.sleep(1.0)  # several attempts refused
        assert not follower.active
        await proxy.start()
        await eventually(caught_up)
    finally:
        stop.set()
        await task
        await proxy.cut()
    conn = await asyncpg.connect(database_url)
    try:
        for tenant_id in ("away", "away-later"):
            report = await compare_with_read_models(conn, schema, new_mapper(), tenant_id)
            assert report["ok"], report["mismatches"]
            assert report["entries"] == 3 * 2 + 10
    finally:
        await conn.close()


async def eventually(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_ledger_verify_passes_an_untouched_replay_and_catches_a_changed_amount(
    writer: Writer, database_url: str, schema: str, tmp_path: Path
) -> None:
    await drive(writer, "audited", [("consume", i, 7) for i in range(10)] + [("refund", 1, 3)])
    settings_ = Settings(database_url=database_url, schema=schema)
    replay_file = tmp_path / "audited.ndjson"
    await run_replay(settings_, "audited", replay_file)
    assert run_verify(replay_file) == 0
    lines = replay_file.read_bytes().splitlines()
    assert len(lines) > 10
    target = next(i for i, line in enumerate(lines) if b'"amount":-7' in line)
    lines[target] = lines[target].replace(b'"amount":-7', b'"amount":-6')
    replay_file.write_bytes(b"\n".join(lines) + b"\n")
    assert run_verify(replay_file) == 1


async def test_a_follower_process_killed_mid_run_resumes_with_nothing_missing_or_doubled(
    writer: Writer, database_url: str, schema: str
) -> None:
    await drive(writer, "killed", [("consume", i, 1) for i in range(400)])
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_DB_SCHEMA": schema,
        "LEDGER_FOLLOWER_BATCH_SIZE": "7",
        "LEDGER_LOG_FORMAT": "json",
    }
    conn = await asyncpg.connect(database_url)
    try:
        await Follower(database_url, schema, new_mapper()).create_tables(conn)
        target = await asyncio.to_thread(writer.ledger.max_position)
        process = subprocess.Popen([sys.executable, "-m", "api", "project"], env=env, cwd=REPO_ROOT)
        position = 0
        for _ in range(500):
            position = await conn.fetchval(
                f'SELECT coalesce(max(position), 0) FROM "{schema}".rm_tracking'
            )
            if position > 0:
                break
            await asyncio.sleep(0.01)
        process.kill()  # SIGKILL: no chance to finish its transaction
        process.wait(timeout=10)
        assert 0 < position < target, "the follower should have been stopped part way"
        restarted = subprocess.Popen(
            [sys.executable, "-m", "api", "project"], env=env, cwd=REPO_ROOT
        )
        try:
            for _ in range(1000):
                if (
                    await conn.fetchval(f'SELECT max(position) FROM "{schema}".rm_tracking')
                    >= target
                ):
                    break
                await asyncio.sleep(0.02)
        finally:
            restarted.terminate()
            restarted.wait(timeout=10)
        report = await compare_with_read_models(conn, schema, new_mapper(), "killed")
        assert report["ok"], report["mismatches"]
        assert report["entries"] == 3 * 2 + 400
    finally:
        await conn.close()


async def every_kind_of_entry(writer: Writer, tenant_id: str) -> None:
    """A history with every account event the follower decodes, optional fields included."""
    await open_funded(writer, tenant_id, {}, overdraft_limit=50, purchase_rates={"EUR": "0.5"})
    base = {"tenant_id": tenant_id, "account_id": "mixed"}
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await writer.submit(c.OpenAccount(**base, metadata={"plan": "pro", "seats": [1, "2", None]}))
    await writer.submit(c.GrantCredits(**base, amount=100, reason="promo", expires_at=soon))
    await writer.submit(
        c.GrantCredits(**base, amount=500, reason="g", priority=3, metadata={"by": "ops"})
    )
    await writer.submit(
        c.PurchaseCredits(**base, price=c.Price(amount="9.99", currency="EUR"), payment_ref="p1")
    )
    consumed = await writer.submit(
        c.ConsumeCredits(
            **base, amount=40, operation="chat", resource="r", user_id="u", metadata={"é": "ü"}
        )
    )
    await writer.submit(c.ConsumeCredits(**base, amount=5, operation="embed"))
    refund = {"consumption_id": consumed.value.consumption_id, "reason": "oops"}  # type: ignore[attr-defined]
    await writer.submit(c.RefundConsumption(**base, **refund, amount=10))
    holds = []
    for expires_in_s in (300, 300, 1):
        placed = await writer.submit(
            c.PlaceHold(
                **base,
                amount=7,
                operation="image",
                expires_in_s=expires_in_s,
                resource="model-x",
                user_id="u",
                metadata={"job": expires_in_s},
            )
        )
        holds.append(placed.value.hold_id)  # type: ignore[attr-defined]
    await writer.submit(
        c.CaptureHold(**base, hold_id=holds[0], amount=3, user_id="v", metadata={"tokens": 3})
    )
    await writer.submit(c.ReleaseHold(**base, hold_id=holds[1]))
    await writer.submit(c.AdjustBalance(**base, amount=25, reason="fix"))
    await writer.submit(c.AdjustBalance(**base, amount=-15, reason="fix"))
    await asyncio.sleep(1.2)
    await writer.submit(c.ExpireCredits(**base))  # the last hold and the promo lot


async def test_the_follower_decodes_every_account_event_as_the_library_mapper_does(
    writer: Writer, database_url: str, schema: str
) -> None:
    await every_kind_of_entry(writer, "decoded")
    conn = await asyncpg.connect(database_url)
    try:
        rows = await events_after(conn, schema, 0, 10_000)
    finally:
        await conn.close()
    fast = entries_of_rows(new_mapper(), rows)
    assert fast == decode_entries(new_mapper(), rows)
    by_rows, by_mapper = Changes(), Changes()
    by_rows.add_rows(new_mapper(), rows)  # the follower's path: no Entry objects
    for tenant_id, entry in decode_entries(new_mapper(), rows):
        by_mapper.add(tenant_id, entry)
    assert by_rows == by_mapper  # the entry JSON byte for byte, accounts and usage
    assert {entry.type for _, entry in fast} == set(ENTRY_TYPES)
    assert not FIELDS_NOT_DECODED  # Entry has no field the fast path leaves out


@pytest.mark.parametrize(
    ("batch_size", "usage_keys_max"),
    [(10_000, 200_000), (7, 3)],  # one batch, usage summed in memory; many, usage staged
)
async def test_a_rebuild_of_every_kind_of_entry_equals_the_live_read_models(
    writer: Writer,
    database_url: str,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
    batch_size: int,
    usage_keys_max: int,
) -> None:
    monkeypatch.setattr(rebuild_module, "REBUILD_BATCH_SIZE_MAX", batch_size)
    monkeypatch.setattr(rebuild_module, "REBUILD_USAGE_KEYS_MAX", usage_keys_max)
    await every_kind_of_entry(writer, "kinds")
    await drive(writer, "kinds-2", [(op, i, 9) for i in range(6) for op in ALL_STEPS])
    live = Follower(database_url, schema, new_mapper(), batch_size_max=7)
    conn = await asyncpg.connect(database_url)
    try:
        await live.create_tables(conn)
        await live.catch_up(conn)
        before = await read_models(conn, schema)
        events, _ = await Follower(database_url, schema, new_mapper()).rebuild()
        assert events == live.position  # every event read, once
        assert await read_models(conn, schema) == before
        assert await live.read_position(conn) == live.position
    finally:
        await conn.close()


async def test_a_rebuild_that_fails_midway_leaves_no_rows_and_the_follower_starts_from_zero(
    writer: Writer, database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await drive(writer, "halfway", [(op, i, 9) for i in range(6) for op in ALL_STEPS])
    monkeypatch.setattr(rebuild_module, "REBUILD_BATCH_SIZE_MAX", 10)
    copies = 0
    failing = Follower(database_url, schema, new_mapper())
    copy_entries = failing.copy_entries

    async def fail_on_the_third_batch(conn: asyncpg.Connection, changes: Any) -> None:
        nonlocal copies
        copies += 1
        if copies == 3:
            raise Crash
        await copy_entries(conn, changes)

    monkeypatch.setattr(failing, "copy_entries", fail_on_the_third_batch)
    with pytest.raises(Crash):
        await failing.rebuild()
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".rm_entries') == 0
        follower = Follower(database_url, schema, new_mapper())
        assert await follower.read_position(conn) == 0
        await follower.catch_up(conn)
        report = await compare_with_read_models(conn, schema, new_mapper(), "halfway")
        assert report["ok"], report["mismatches"]
    finally:
        await conn.close()


async def test_a_rebuild_whose_decoding_fails_while_a_copy_is_in_flight_leaves_no_rows(
    writer: Writer, database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await drive(writer, "in-flight", [(op, i, 9) for i in range(6) for op in ALL_STEPS])
    monkeypatch.setattr(rebuild_module, "REBUILD_BATCH_SIZE_MAX", 10)
    decoded = 0
    failing = Follower(database_url, schema, new_mapper())
    decode = failing.decode

    async def fail_on_the_third_batch(rows: Any, changes: Any) -> None:
        nonlocal decoded
        decoded += 1
        if decoded == 3:  # the second batch's COPY has just been started
            raise Crash
        await decode(rows, changes)

    monkeypatch.setattr(failing, "decode", fail_on_the_third_batch)
    with pytest.raises(Crash):
        await failing.rebuild()
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".rm_entries') == 0
        assert await failing.read_position(conn) == 0
    finally:
        await conn.close()


async def read_models(conn: asyncpg.Connection, schema: str) -> list[list[tuple[Any, ...]]]:
    return [
        await table(conn, schema, "rm_entries", "position"),
        await table(conn, schema, "rm_accounts", "tenant_id, account_id"),
        await table(conn, schema, "rm_usage", "tenant_id, day, operation, account_id"),
    ]

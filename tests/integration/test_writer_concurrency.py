"""The group-commit writer on real PostgreSQL: concurrency, idempotency, conflicts, restarts."""

from __future__ import annotations

import asyncio
import json
import random

import psycopg
import pytest

from ledger.errors import (
    AtomicBatchFailedError,
    IdempotencyKeyReusedError,
    InsufficientCreditsError,
    InvalidCommandError,
)
from ledger.store.application import Ledger
from ledger.writer.writer import Writer
from tests import envelopes as c
from tests.integration.helpers import balance, open_funded, running_writer, stored_event_count

T = "load"
OVERDRAFT = 25


async def test_concurrent_consumes_never_cross_the_limit_and_all_survive_a_cold_reload(
    writer: Writer, ledger: Ledger, database_url: str, schema: str
) -> None:
    rng = random.Random(7)
    funded = {f"acct-{i}": (5_000 if i % 4 else 300) for i in range(20)}  # every 4th runs short
    await open_funded(writer, T, funded, overdraft_limit=OVERDRAFT)
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for _ in range(10_000):
        queue.put_nowait((rng.choice(list(funded)), rng.randint(1, 5)))
    accepted = dict.fromkeys(funded, 0)
    accepted_count = dict.fromkeys(funded, 0)
    refused = 0

    async def submitter() -> None:
        nonlocal refused
        while not queue.empty():
            account_id, amount = queue.get_nowait()
            try:
                await writer.submit(
                    c.ConsumeCredits(
                        tenant_id=T, account_id=account_id, amount=amount, operation="op"
                    )
                )
            except InsufficientCreditsError:
                refused += 1
            else:
                accepted[account_id] += amount
                accepted_count[account_id] += 1

    await asyncio.gather(*(submitter() for _ in range(32)))
    assert refused > 0, "the short accounts should have refused some consumes"
    assert writer.batches_committed < 10_000 / 4, "commands should share transactions"
    for account_id, start in funded.items():
        now = await balance(writer, T, account_id)
        assert now == start - accepted[account_id]
        assert now >= -OVERDRAFT

    cold_ledger = Ledger(database_url, schema=schema)
    cold = Writer(cold_ledger)
    cold.start()
    try:
        for account_id, start in funded.items():
            assert await balance(cold, T, account_id) == start - accepted[account_id]
            consumed = stored_event_count(
                cold_ledger, database_url, T, account_id, "CreditsConsumed"
            )
            assert consumed == accepted_count[account_id]
    finally:
        await cold.stop()
        cold_ledger.close()


async def test_the_same_idempotency_key_sent_50_times_at_once_yields_one_event(
    writer: Writer, ledger: Ledger, database_url: str
) -> None:
    await open_funded(writer, T, {"a": 1_000})
    command = c.ConsumeCredits(
        tenant_id=T, account_id="a", amount=7, operation="op", idempotency_key="same"
    )
    outcomes = await asyncio.gather(*(writer.submit(command) for _ in range(50)))
    assert len({o.value.entry_id for o in outcomes}) == 1  # type: ignore[attr-defined]
    assert sum(not o.replayed for o in outcomes) == 1
    assert {o.value.position for o in outcomes} == {outcomes[0].value.position}  # type: ignore[attr-defined]
    assert stored_event_count(ledger, database_url, T, "a", "CreditsConsumed") == 1
    assert await balance(writer, T, "a") == 993


async def test_the_same_key_on_two_writers_at_once_is_applied_once(
    writer: Writer, ledger: Ledger, database_url: str, schema: str
) -> None:
    await open_funded(writer, T, {"a": 1_000})
    other_ledger = Ledger(database_url, schema=schema)
    other = Writer(other_ledger)
    other.start()
    try:
        command = c.ConsumeCredits(
            tenant_id=T, account_id="a", amount=3, operation="op", idempotency_key="k"
        )
        outcomes = await asyncio.gather(*(w.submit(command) for w in [writer, other] * 25))
        assert len({o.value.entry_id for o in outcomes}) == 1  # type: ignore[attr-defined]
        assert stored_event_count(ledger, database_url, T, "a", "CreditsConsumed") == 1
    finally:
        await other.stop()
        other_ledger.close()


async def test_a_batch_with_a_reused_key_and_an_insufficient_consume_still_commits_the_others(
    ledger: Ledger,
) -> None:
    writer = Writer(ledger, batch_window_s=0.3)  # a long window: everything below is one batch
    writer.start()
    try:
        await open_funded(writer, T, {"a": 100, "b": 100})
        await writer.submit(
            c.ConsumeCredits(
                tenant_id=T, account_id="a", amount=1, operation="op", idempotency_key="used"
            )
        )
        batches_before = writer.batches_committed
        results = await asyncio.gather(
            writer.submit(c.ConsumeCredits(tenant_id=T, account_id="a", amount=10, operation="op")),
            writer.submit(
                c.ConsumeCredits(
                    tenant_id=T, account_id="a", amount=2, operation="op", idempotency_key="used"
                )
            ),
            writer.submit(
                c.ConsumeCredits(tenant_id=T, account_id="b", amount=1_000, operation="op")
            ),
            writer.submit(
                c.ConsumeCredits(
                    tenant_id=T, account_id="b", amount=20, operation="op", idempotency_key="new"
                )
            ),
            writer.submit(
                c.ConsumeCredits(
                    tenant_id=T, account_id="b", amount=20, operation="op", idempotency_key="new"
                )
            ),
            return_exceptions=True,
        )
        assert writer.batches_committed == batches_before + 1
        assert isinstance(results[1], IdempotencyKeyReusedError)
        assert isinstance(results[2], InsufficientCreditsError)
        assert results[3].value == results[4].value and results[4].replayed  # type: ignore[union-attr]
        assert await balance(writer, T, "a") == 89
        assert await balance(writer, T, "b") == 80
    finally:
        await writer.stop()


async def test_a_stale_cache_after_another_writer_committed_conflicts_and_is_rerun_correctly(
    writer: Writer, database_url: str, schema: str
) -> None:
    await open_funded(writer, T, {"a": 100}, overdraft_limit=0)
    assert await balance(writer, T, "a") == 100  # `writer` now caches the account
    other_ledger = Ledger(database_url, schema=schema)
    other = Writer(other_ledger)
    other.start()
    try:
        await other.submit(c.ConsumeCredits(tenant_id=T, account_id="a", amount=90, operation="op"))
        # `writer` still believes 100 are there; the conflict on save makes it look again.
        with pytest.raises(InsufficientCreditsError):
            await writer.submit(
                c.ConsumeCredits(tenant_id=T, account_id="a", amount=50, operation="op")
            )
        await writer.submit(
            c.ConsumeCredits(tenant_id=T, account_id="a", amount=10, operation="op")
        )
        assert await balance(other, T, "a") == 0
    finally:
        await other.stop()
        other_ledger.close()


async def test_two_writers_hammering_the_same_accounts_keep_every_rule(
    writer: Writer, database_url: str, schema: str
) -> None:
    funded = {f"h-{i}": 400 for i in range(4)}
    await open_funded(writer, T, funded, overdraft_limit=OVERDRAFT)
    other_ledger = Ledger(database_url, schema=schema)
    other = Writer(other_ledger)
    other.start()
    accepted = dict.fromkeys(funded, 0)
    try:

        async def hammer(target: Writer, seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(300):
                account_id, amount = rng.choice(list(funded)), rng.randint(1, 4)
                try:
                    await target.submit(
                        c.ConsumeCredits(
                            tenant_id=T, account_id=account_id, amount=amount, operation="op"
                        )
                    )
                except InsufficientCreditsError:
                    continue
                accepted[account_id] += amount

        await asyncio.gather(*(hammer(w, s) for s, w in enumerate([writer, other] * 4)))
        for account_id, start in funded.items():
            now = await balance(other, T, account_id)
            assert now == start - accepted[account_id]
            assert now >= -OVERDRAFT
    finally:
        await other.stop()
        other_ledger.close()


async def test_an_atomic_batch_applies_all_or_nothing(
    writer: Writer, ledger: Ledger, database_url: str
) -> None:
    await open_funded(writer, T, {"a": 50, "b": 50})
    before = stored_event_count(ledger, database_url, T, "a")
    with pytest.raises(AtomicBatchFailedError) as failed:
        await writer.submit_atomic(
            [
                c.ConsumeCredits(tenant_id=T, account_id="a", amount=30, operation="op"),
                c.ConsumeCredits(tenant_id=T, account_id="b", amount=60, operation="op"),
            ]
        )
    assert failed.value.index == 1
    assert stored_event_count(ledger, database_url, T, "a") == before
    assert await balance(writer, T, "a") == 50
    outcomes = await writer.submit_atomic(
        [
            c.ConsumeCredits(tenant_id=T, account_id="a", amount=30, operation="op"),
            c.ConsumeCredits(tenant_id=T, account_id="b", amount=20, operation="op"),
        ]
    )
    assert [o.value.balance for o in outcomes] == [20, 30]  # type: ignore[attr-defined]


async def test_a_failed_atomic_batch_stores_no_answer_even_for_a_command_without_events(
    writer: Writer, ledger: Ledger
) -> None:
    await open_funded(writer, T, {"a": 50})
    reopen = c.OpenAccount(tenant_id=T, account_id="a", idempotency_key="reopen-1")
    with pytest.raises(AtomicBatchFailedError):
        await writer.submit_atomic(
            [reopen, c.ConsumeCredits(tenant_id=T, account_id="a", amount=60, operation="op")]
        )
    # The key was not used up: the same key with another body is a first use, not a reuse.
    other = c.OpenAccount(
        tenant_id=T, account_id="a", metadata={"x": 1}, idempotency_key="reopen-1"
    )
    first = await writer.submit(other)
    assert not first.replayed
    # A batch that only stores an answer (an existing account, no event) commits it.
    async with running_writer(ledger) as fresh:
        again = await fresh.submit(other)
        assert again.replayed
        with pytest.raises(IdempotencyKeyReusedError):
            await fresh.submit(reopen)


async def test_each_command_of_a_non_atomic_batch_gets_its_own_answer_in_its_place(
    writer: Writer,
) -> None:
    await open_funded(writer, T, {"a": 10})

    def consume(amount: int) -> c.ConsumeCredits:
        return c.ConsumeCredits(tenant_id=T, account_id="a", amount=amount, operation="op")

    results = await writer.submit_each([consume(3), consume(0), consume(50), consume(4)])
    assert isinstance(results[1], InvalidCommandError)  # refused before the writer
    assert isinstance(results[2], InsufficientCreditsError)  # refused by the rules
    assert [r.value.balance for r in (results[0], results[3])] == [7, 3]  # type: ignore[union-attr]


async def test_stopping_the_writer_answers_every_accepted_command(ledger: Ledger) -> None:
    writer = Writer(ledger)
    writer.start()
    await open_funded(writer, T, {"a": 10_000})
    pending = [
        asyncio.ensure_future(
            writer.submit(c.ConsumeCredits(tenant_id=T, account_id="a", amount=1, operation="op"))
        )
        for _ in range(500)
    ]
    await asyncio.sleep(0)  # all 500 are queued
    await writer.stop()
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert all(not isinstance(o, Exception) for o in outcomes)
    restarted = Writer(ledger)
    restarted.start()
    try:
        assert await balance(restarted, T, "a") == 10_000 - 500
    finally:
        await restarted.stop()


async def test_answers_kept_as_events_by_earlier_versions_are_replayed_after_an_upgrade(
    writer: Writer, ledger: Ledger, database_url: str, schema: str
) -> None:
    """Before issue 6 an answer was a StoredResult event; the results table, when created,
    takes them over, so an old key is replayed and an old payment_ref never credited twice."""
    await open_funded(writer, T, {"a": 100})
    consume = c.ConsumeCredits(
        tenant_id=T, account_id="a", amount=7, operation="op", idempotency_key="old-key"
    )
    first = await writer.submit(consume)
    await writer.stop()
    # Rewrite the answer as the earlier versions stored it: an event, and no results table.
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT id, fingerprint, result_type, result, created, entry_id, entry_version "
            f'FROM "{schema}".ledger_results'
        ).fetchone()
        assert row is not None
        state = {
            "timestamp": {"_type_": "datetime_iso", "_data_": "2026-11-01T00:00:00+00:00"},
            "originator_topic": "ledger.records:StoredResult",
            "tenant_id": T,
            "kind": "idempotency",
            "key": "old-key",
            "fingerprint": row[1],
            "result_type": row[2],
            "result": json.loads(bytes(row[3])),
            "created": row[4],
            "entry_ref": [str(row[5]), row[6]],
        }
        conn.execute(
            f'INSERT INTO "{schema}".ledger_events '
            "(originator_id, originator_version, topic, state) VALUES (%s, 1, %s, %s)",
            (row[0], "ledger.records:StoredResult.Recorded", json.dumps(state).encode()),
        )
        conn.execute(f'DROP TABLE "{schema}".ledger_results')
    upgraded = Writer(Ledger(database_url, schema))
    upgraded.start()
    try:
        again = await upgraded.submit(consume)
        assert again.replayed
        assert again.value == first.value
        assert await balance(upgraded, T, "a") == 93  # charged once
    finally:
        await upgraded.stop()
        upgraded.ledger.close()

"""While a batch commits, the writer applies the next on top of it: the next one stands only if
the first committed, and sees what the first did as if it had."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from ledger.errors import UnavailableError
from ledger.store.application import Ledger
from ledger.writer import writer as writer_module
from ledger.writer.session import BatchSession
from ledger.writer.writer import Writer
from tests import envelopes as c
from tests.integration.helpers import balance, open_funded, running_writer, stored_event_count

T = "pipeline"


class HeldCommits:
    """Holds the writer's first commit from then on until released, and counts the batches
    collected for the store: a second one collected while the first is held was applied on
    top of it."""

    def __init__(self, ledger: Ledger, *, fail_first: bool = False) -> None:
        self.ledger = ledger
        self.fail_first = fail_first
        self.release = threading.Event()
        self.records = 0
        self.collects = 0
        self._record, self._collect = ledger.record, ledger.collect

    def __enter__(self) -> HeldCommits:
        self.ledger.record = self._held_record  # type: ignore[method-assign]
        self.ledger.collect = self._counted_collect  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.ledger.record = self._record  # type: ignore[method-assign]
        self.ledger.collect = self._collect  # type: ignore[method-assign]

    def _held_record(self, *args: Any, **kwargs: Any) -> Any:
        self.records += 1
        if self.records == 1:
            assert self.release.wait(10), "the test never released the first commit"
            if self.fail_first:
                raise OperationalError("the store went away before the commit")
        return self._record(*args, **kwargs)

    def _counted_collect(self, *args: Any, **kwargs: Any) -> Any:
        self.collects += 1
        return self._collect(*args, **kwargs)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


def consume(amount: int, key: str | None = None) -> c.ConsumeCredits:
    return c.ConsumeCredits(
        tenant_id=T, account_id="a", amount=amount, operation="op", idempotency_key=key
    )


async def test_a_refusal_resting_on_a_batch_that_did_not_commit_is_decided_again(
    writer: Writer, ledger: Ledger
) -> None:
    await open_funded(writer, T, {"a": 100}, overdraft_limit=0)
    with HeldCommits(ledger, fail_first=True) as held:
        first = asyncio.create_task(writer.submit(consume(100)))
        await until(lambda: held.records == 1)
        # On top of the first batch nothing is left: this one is refused there, in memory.
        second = asyncio.create_task(writer.submit(consume(50)))
        await until(lambda: held.collects == 2)
        held.release.set()
        with pytest.raises(UnavailableError):
            await first
        outcome = await second  # the first never committed: 100 were there all along
    assert outcome.value.balance == 50  # type: ignore[attr-defined]
    assert await balance(writer, T, "a") == 50


async def test_a_batch_on_top_of_one_that_conflicts_runs_again_on_what_was_committed(
    writer: Writer, ledger: Ledger, database_url: str, schema: str
) -> None:
    await open_funded(writer, T, {"a": 100}, overdraft_limit=0)
    assert await balance(writer, T, "a") == 100  # cached: the other writer's consume is unseen
    other_ledger = Ledger(database_url, schema=schema)
    try:
        async with running_writer(other_ledger) as other:
            with HeldCommits(ledger) as held:
                first = asyncio.create_task(writer.submit(consume(50)))
                await until(lambda: held.records == 1)
                await other.submit(consume(10))  # takes the version the first batch wrote
                second = asyncio.create_task(writer.submit(consume(30)))
                await until(lambda: held.collects == 2)
                held.release.set()
                answers = await asyncio.gather(first, second)
    finally:
        other_ledger.close()
    assert [a.value.balance for a in answers] == [40, 10]  # type: ignore[attr-defined]
    assert await balance(writer, T, "a") == 10
    assert stored_event_count(ledger, database_url, T, "a", "CreditsConsumed") == 3


async def test_a_retry_racing_its_first_attempt_replays_it_without_a_second_commit(
    writer: Writer, ledger: Ledger, database_url: str
) -> None:
    await open_funded(writer, T, {"a": 100})
    with HeldCommits(ledger) as held:
        first = asyncio.create_task(writer.submit(consume(7, key="job-1")))
        await until(lambda: held.records == 1)
        retry = asyncio.create_task(writer.submit(consume(7, key="job-1")))
        await until(lambda: held.collects == 2)
        held.release.set()
        original, replayed = await asyncio.gather(first, retry)
    assert replayed.replayed and replayed.value == original.value
    assert held.records == 1  # the retry was answered from the batch before it
    assert stored_event_count(ledger, database_url, T, "a", "CreditsConsumed") == 1
    assert await balance(writer, T, "a") == 93


async def test_an_account_opened_by_the_batch_still_committing_is_found_by_the_next(
    writer: Writer, ledger: Ledger
) -> None:
    await open_funded(writer, T, {})
    with HeldCommits(ledger) as held:
        opened = asyncio.create_task(writer.submit(c.OpenAccount(tenant_id=T, account_id="new")))
        await until(lambda: held.records == 1)
        granted = asyncio.create_task(
            writer.submit(c.GrantCredits(tenant_id=T, account_id="new", amount=5, reason="r"))
        )
        await until(lambda: held.collects == 2)
        held.release.set()
        await opened
        outcome = await granted
    assert outcome.value.balance == 5  # type: ignore[attr-defined]


async def test_a_busy_writer_keeps_no_more_than_the_batch_in_flight_and_the_next(
    writer: Writer, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under sustained load every batch is applied on top of the one before: none may keep
    the whole chain of earlier batches (their answers and commands) alive."""
    await open_funded(writer, T, {"a": 10**9})
    alive: weakref.WeakSet[BatchSession] = weakref.WeakSet()

    class Counted(BatchSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            alive.add(self)

    monkeypatch.setattr(writer_module, "BatchSession", Counted)
    slow_commits = 0
    record = ledger.record

    def slow_record(*args: Any, **kwargs: Any) -> Any:
        nonlocal slow_commits
        slow_commits += 1
        time.sleep(0.01)  # commands keep coming while it commits: the pipeline never empties
        return record(*args, **kwargs)

    monkeypatch.setattr(ledger, "record", slow_record)
    counts: list[int] = []
    submitted = []
    while slow_commits < 40:
        submitted.append(asyncio.ensure_future(writer.submit(consume(1))))
        await asyncio.sleep(0.002)
        if slow_commits >= 20:
            gc.collect()
            counts.append(len(alive))
    await asyncio.gather(*submitted)
    assert max(counts) <= 3, counts  # in flight, applied on top of it, being made

"""The writer in a child process (api/writer_process.py): the same answers as the writer's thread,
every answer committed, and nothing acknowledged lost or applied twice when the child is killed.
A real child process and a real PostgreSQL; nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.roles.supervisor import Supervisor
from api.roles.writer_process import WriterProcess
from api.settings import Settings
from ledger.errors import (
    AtomicBatchFailedError,
    InsufficientCreditsError,
    InvalidCommandError,
    UnavailableError,
)
from ledger.outcome import Outcome
from ledger.store.application import Ledger
from ledger.writer.writer import Writer
from tests import envelopes as c
from tests.integration.helpers import balance, open_funded

T = "acme"
# Deadline of the waits below; a wait is never the assertion itself.
RESTART_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def writer_process(database_url: str, schema: str) -> AsyncIterator[WriterProcess]:
    """The writer's child under a supervisor of its own, as the app's Runtime runs it."""
    supervisor = Supervisor(Settings(database_url=database_url, schema=schema))
    remote = WriterProcess(supervisor)
    await supervisor.start()
    try:
        yield remote
    finally:
        await supervisor.stop()


def consume(amount: int, key: str | None = None, account_id: str = "ada") -> c.ConsumeCredits:
    return c.ConsumeCredits(
        tenant_id=T, account_id=account_id, amount=amount, operation="op", idempotency_key=key
    )


async def until_answering(remote: WriterProcess) -> None:
    """Polls until a restarted child answers (until then: `unavailable`)."""
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while True:
        try:
            await remote.submit(c.GetAccount(tenant_id=T, account_id="ada"))
            return
        except UnavailableError:
            assert time.monotonic() < deadline, "the writer child was not started again"
            await asyncio.sleep(0.1)


async def test_the_child_answers_as_the_thread_does_values_and_errors_alike(
    ledger: Ledger, writer: Writer, database_url: str, schema: str
) -> None:
    async with writer_process(database_url, schema) as remote:
        assert remote.process is not None and remote.process.pid != os.getpid()
        assert remote.ready and remote.restarts == 0
        await open_funded(remote, T, {"ada": 10})  # type: ignore[arg-type]
        first = await remote.submit(consume(3, "k1"))
        again = await remote.submit(consume(3, "k1"))
        assert (first.value.balance, first.replayed) == (7, False)  # type: ignore[attr-defined]
        assert (again.value.balance, again.replayed) == (7, True)  # type: ignore[attr-defined]
        assert first.value.position > 0  # type: ignore[attr-defined]

        with pytest.raises(InsufficientCreditsError) as short:
            await remote.submit(consume(100))
        assert short.value.available == 7
        with pytest.raises(AtomicBatchFailedError) as atomic:
            await remote.submit_atomic([consume(1), consume(100)])
        assert atomic.value.index == 1
        assert isinstance(atomic.value.cause, InsufficientCreditsError)
        each = await remote.submit_each([consume(1), consume(1_000), consume(2)])
        assert isinstance(each[0], Outcome) and isinstance(each[2], Outcome)
        assert isinstance(each[1], InsufficientCreditsError)
        with pytest.raises(InvalidCommandError):  # checked before it leaves this process
            await remote.submit(consume(0))
        assert remote.commands_committed >= 7 and remote.batches_committed >= 1
        # Where its time went travels with the answers; a work waits at least as long as its
        # batch took to store.
        assert remote.works_answered >= remote.batches_committed
        assert remote.apply_us > 0 and remote.commit_us > 0
        assert remote.queued_us >= remote.commit_us
    # The thread writer on the same store reads what the child committed.
    assert await balance(writer, T, "ada") == 4


async def test_stop_answers_every_command_accepted_before_the_child_exits(
    ledger: Ledger, writer: Writer, database_url: str, schema: str
) -> None:
    supervisor = Supervisor(Settings(database_url=database_url, schema=schema))
    remote = WriterProcess(supervisor)
    await supervisor.start()
    await open_funded(remote, T, {"ada": 10_000})  # type: ignore[arg-type]
    submitted = [asyncio.ensure_future(remote.submit(consume(1, f"s{i}"))) for i in range(2_000)]
    await asyncio.sleep(0)  # the submissions are queued in this process, not yet sent
    await remote.stop()
    results = await asyncio.gather(*submitted, return_exceptions=True)
    assert [r for r in results if not isinstance(r, Outcome)] == []
    assert remote.process is not None and remote.process.returncode == 0
    assert await balance(writer, T, "ada") == 10_000 - 2_000
    with pytest.raises(UnavailableError):  # stopped: nothing more is accepted
        await remote.submit(consume(1))
    await supervisor.stop()


async def test_a_killed_child_loses_nothing_acknowledged_and_a_retry_applies_nothing_twice(
    ledger: Ledger, writer: Writer, database_url: str, schema: str
) -> None:
    initial, total = 1_000_000, 3_000
    async with writer_process(database_url, schema) as remote:
        await open_funded(remote, T, {"ada": initial})  # type: ignore[arg-type]
        killed = remote.process
        assert killed is not None
        acknowledged: list[str] = []

        async def submit(key: str) -> Any:
            outcome = await remote.submit(consume(1, key))
            acknowledged.append(key)
            return outcome

        keys = [f"kill-{i}" for i in range(total)]
        tasks = []
        sent_kill = False  # once: poll() stays None until the parent reaps the killed child
        for index, key in enumerate(keys):  # a steady stream, so the kill lands mid-flight
            tasks.append(asyncio.ensure_future(submit(key)))
            if index % 100 == 99:
                await asyncio.sleep(0.005)
            if len(acknowledged) >= 500 and not sent_kill:
                os.kill(killed.pid, signal.SIGKILL)
                sent_kill = True
        if not sent_kill:
            os.kill(killed.pid, signal.SIGKILL)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [r for r in results if not isinstance(r, Outcome)]
        assert failures, "the kill should have cut some commands off"
        assert all(isinstance(f, UnavailableError) for f in failures), failures[:3]

        assert not remote.ready  # the child is gone until it is started again
        await until_answering(remote)
        assert remote.ready and remote.restarts == 1
        assert remote.process is not None and remote.process.pid != killed.pid
        # Every acknowledged consume is stored (some cut-off ones may be too: unknown outcome).
        committed = initial - await balance(writer, T, "ada")
        assert len(acknowledged) <= committed <= total
        # Retried with their keys, the cut-off ones apply once; the stored ones replay.
        unanswered = [key for key, r in zip(keys, results, strict=True) if r in failures]
        retried = await remote.submit_each([consume(1, key) for key in unanswered])
        assert all(isinstance(r, Outcome) for r in retried)
        again = await remote.submit_each([consume(1, key) for key in acknowledged[:100]])
        assert all(isinstance(r, Outcome) and r.replayed for r in again)
    assert await balance(writer, T, "ada") == initial - total


async def test_sigterm_to_the_child_alone_cuts_no_answer_off(
    ledger: Ledger, writer: Writer, database_url: str, schema: str
) -> None:
    """The child ends when serve closes the socket, not on SIGTERM: a signal to the whole
    process group (systemd) must not drop answers that serve is still waiting for."""
    async with writer_process(database_url, schema) as remote:
        await open_funded(remote, T, {"ada": 100_000})  # type: ignore[arg-type]
        child = remote.process
        assert child is not None
        tasks = []
        for index in range(2_000):
            tasks.append(asyncio.ensure_future(remote.submit(consume(1, f"term-{index}"))))
            if index % 100 == 99:
                await asyncio.sleep(0.005)
            if index == 1_000:
                os.kill(child.pid, signal.SIGTERM)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [r for r in results if not isinstance(r, Outcome)] == []
        assert remote.process is child and child.poll() is None and remote.restarts == 0
    assert child.returncode == 0  # stopped by closing the socket, after draining
    assert await balance(writer, T, "ada") == 100_000 - 2_000

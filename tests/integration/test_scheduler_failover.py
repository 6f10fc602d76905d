"""Two `python -m api schedule` processes on one database, the active one killed with SIGKILL
in the middle of a sweep: the standby takes over, and every due hold ends exactly once (docs/
adr/0007). Real processes on real PostgreSQL, counted in the event store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.store.application import Ledger
from ledger.writer.writer import Writer
from tests import envelopes as c

ROOT = Path(__file__).resolve().parents[2]
T = "acme"
HOLDS = 3_000  # one per account: three sweep rounds of SWEEP_BATCH_MAX
HOLD_EXPIRES_IN_S = 3  # time enough to start both schedulers before they fall due
WAIT_S = 60.0


class ScheduleProcess:
    """`python -m api schedule` on the test's schema; its JSON log lines kept."""

    def __init__(self, database_url: str, schema: str) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
        environ.update(
            LEDGER_DATABASE_URL=database_url,
            LEDGER_DB_SCHEMA=schema,
            LEDGER_LOG_FORMAT="json",
            LEDGER_LOG_LEVEL="info",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api", "schedule"],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                self.events.append(line)

    def logged(self, event: str) -> bool:
        return any(line.get("event") == event for line in self.events)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def schedulers(database_url: str, schema: str) -> Iterator[list[ScheduleProcess]]:
    started: list[ScheduleProcess] = []
    yield started
    for process in started:
        process.stop()


def counts(database_url: str, ledger: Ledger) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f"SELECT count(*) FILTER (WHERE topic LIKE '%Account.HoldExpired'), "
            f"count(DISTINCT originator_id) FILTER (WHERE topic LIKE '%Account.HoldExpired'), "
            f"count(*) FILTER (WHERE topic LIKE '%HoldRecord.Ended') "
            f"FROM {ledger.events_table}"
        ).fetchone()
    assert row is not None
    return {"release": row[0], "accounts": row[1], "ended": row[2]}


def undone(database_url: str, schema: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f'SELECT count(*) FROM "{schema}".due_items WHERE done_position IS NULL'
        ).fetchone()
    assert row is not None
    return int(row[0])


async def wait_for(condition: Any, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.01)


async def test_a_scheduler_killed_mid_sweep_leaves_nothing_missed_and_nothing_doubled(
    database_url: str,
    schema: str,
    ledger: Ledger,
    writer: Writer,
    schedulers: list[ScheduleProcess],
) -> None:
    await writer.submit(
        c.CreateTenant(tenant_id=T, name=T, settings=c.TenantSettings(signup_bonus=100))
    )
    accounts = [f"acct-{n}" for n in range(HOLDS)]
    opened = await writer.submit_each([c.OpenAccount(tenant_id=T, account_id=a) for a in accounts])
    assert all(not isinstance(o, Exception) for o in opened)

    active = ScheduleProcess(database_url, schema)
    schedulers.append(active)
    await wait_for(lambda: active.logged("scheduler_active"), "the first scheduler active")
    standby = ScheduleProcess(database_url, schema)
    schedulers.append(standby)
    await wait_for(lambda: standby.logged("standby"), "the second scheduler standby")

    placed = await writer.submit_each(
        [
            c.PlaceHold(
                tenant_id=T,
                account_id=a,
                amount=10,
                operation="OP",
                expires_in_s=HOLD_EXPIRES_IN_S,
            )
            for a in accounts
        ]
    )
    assert all(not isinstance(p, Exception) for p in placed)

    await wait_for(lambda: counts(database_url, ledger)["release"] > 0, "the first expiries")
    os.kill(active.process.pid, signal.SIGKILL)
    active.process.wait()
    at_kill = counts(database_url, ledger)["release"]
    assert 0 < at_kill < HOLDS, f"killed after {at_kill} of {HOLDS}: not mid-sweep"

    await wait_for(lambda: standby.logged("scheduler_active"), "the standby active")
    await wait_for(
        lambda: (
            counts(database_url, ledger)["release"] >= HOLDS and undone(database_url, schema) == 0
        ),
        "every hold ended",
    )
    assert counts(database_url, ledger) == {"release": HOLDS, "accounts": HOLDS, "ended": HOLDS}
    statuses = await writer.submit_each(
        [
            c.GetHold(tenant_id=T, account_id=a, hold_id=p.value.hold_id)
            for a, p in zip(accounts, placed, strict=True)
        ]  # type: ignore[union-attr]
    )
    assert {s.value.status for s in statuses} == {"expired"}  # type: ignore[union-attr]

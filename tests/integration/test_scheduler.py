"""The scheduler on real PostgreSQL (docs/adr/0007): what falls due is recorded on time with no
command touching the account, exactly once through restarts and a change of active scheduler,
and reads never show it unrecorded.

The scheduler and the writers here share a clock the tests move (`MovingClock`), except where
the database's clock is the point (the read rule, a replica whose clock is behind): there the
waits are a second or two of wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from ledger.accounts.account_events import HoldPlaced
from ledger.accounts.area import AREA as ACCOUNTS
from ledger.accounts.schedules import HOLD_EXPIRY, LOT_EXPIRY
from ledger.accounts.views import AccountView
from ledger.areas import REGISTRY
from ledger.commands import AccountCommand
from ledger.errors import UnavailableError
from ledger.ids import account_aggregate_id, aggregate_id
from ledger.registry import (
    SCHEDULE_KEYS,
    Area,
    CommandSpec,
    DueChange,
    DueItem,
    Registry,
    Schedule,
)
from ledger.store.application import Ledger
from ledger.store.transcoder import new_mapper
from ledger.tenants.area import AREA as TENANTS
from ledger.writer.writer import Writer
from projections import due_times
from projections.due_times import ExpiryReads
from projections.follower import Follower
from projections.scheduler import Scheduler
from tests import envelopes as c
from tests.integration.helpers import open_funded, stored_event_count

T = "acme"
A = "ada@example.com"
WAIT_S = 10.0  # for the roles to do their work: never a wait on the clock


class MovingClock:
    """The time the writer and the scheduler act at, moved by the test."""

    def __init__(self) -> None:
        self.at = datetime.now(tz=UTC)

    def __call__(self) -> datetime:
        return self.at

    def move(self, **delta: float) -> None:
        self.at += timedelta(**delta)


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = WAIT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        met = condition()
        if not isinstance(met, bool):
            met = await met
        if met:
            return
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(*roles: Any) -> AsyncIterator[asyncio.Event]:
    """Runs each role's `run(stop)` as a task until the block ends (or the event is set)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(role.run(stop)) for role in roles]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock()


@pytest.fixture
async def timed_writer(ledger: Ledger, clock: MovingClock) -> AsyncIterator[Writer]:
    writer = Writer(ledger, clock=clock)
    writer.start()
    yield writer
    await writer.stop()


@pytest.fixture
def follower(database_url: str, schema: str) -> Follower:
    return Follower(database_url, schema, new_mapper())


def scheduler_of(database_url: str, schema: str, clock: Any = None, **options: Any) -> Scheduler:
    return Scheduler(database_url, schema, new_mapper(), clock=clock, **options)


async def fetch(database_url: str, schema: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


async def entry_types(database_url: str, schema: str, account_id: str = A) -> list[str]:
    rows = await fetch(
        database_url,
        schema,
        "SELECT type FROM rm_entries WHERE tenant_id = $1 AND account_id = $2 ORDER BY position",
        T,
        account_id,
    )
    return [row["type"] for row in rows]


async def due_rows(database_url: str, schema: str) -> list[asyncpg.Record]:
    return await fetch(database_url, schema, "SELECT * FROM due_items ORDER BY due_at")


async def fund(writer: Writer, clock: MovingClock) -> tuple[str, str]:
    """An account with a lot expiring in 10 s, credits that never expire, and a hold of 30
    expiring in 1 s; returns (lot_id, hold_id)."""
    await open_funded(writer, T, {A: 7})
    lot = await writer.submit(
        c.GrantCredits(
            tenant_id=T,
            account_id=A,
            amount=100,
            reason="trial",
            expires_at=clock() + timedelta(seconds=10),
        )
    )
    hold = await writer.submit(
        c.PlaceHold(tenant_id=T, account_id=A, amount=30, operation="OP", expires_in_s=1)
    )
    return lot.value.lot_id, hold.value.hold_id  # type: ignore[attr-defined]


async def account_view(writer: Writer) -> Any:
    return (await writer.submit(c.GetAccount(tenant_id=T, account_id=A))).value


# --------------------------------------------------------------------------- on time


async def test_holds_and_lots_expire_on_time_with_no_command_touching_the_account(
    database_url: str, schema: str, clock: MovingClock, timed_writer: Writer, follower: Follower
) -> None:
    scheduler = scheduler_of(database_url, schema, clock)
    async with running(follower, scheduler):
        _, hold_id = await fund(timed_writer, clock)
        await wait_until(
            lambda: _count(database_url, schema, "SELECT count(*) FROM due_items", expect=2)
        )
        clock.move(seconds=1)
        scheduler.wake()
        await wait_until(lambda: _has(database_url, schema, "release"))
        assert (await account_view(timed_writer)).held == 0
        hold = await timed_writer.submit(c.GetHold(tenant_id=T, account_id=A, hold_id=hold_id))
        assert hold.value.status == "expired"  # type: ignore[attr-defined]
        clock.move(seconds=9)
        scheduler.wake()
        await wait_until(lambda: _has(database_url, schema, "expire"))
        await wait_until(lambda: _count(database_url, schema, "SELECT count(*) FROM due_items"))
    assert await entry_types(database_url, schema) == [
        "open", "grant", "grant", "hold", "release", "expire",
    ]  # fmt: skip
    view = await account_view(timed_writer)
    assert (view.balance, view.held, view.available, view.totals.expired) == (7, 0, 7, 100)
    assert scheduler.sent == 2 and scheduler.failed == 0


async def _has(database_url: str, schema: str, entry_type: str) -> bool:
    return entry_type in await entry_types(database_url, schema)


async def _count(database_url: str, schema: str, sql: str, expect: int = 0) -> bool:
    try:
        rows = await fetch(database_url, schema, sql)
    except asyncpg.UndefinedTableError:  # the scheduler has not created it yet
        return False
    return int(rows[0][0]) == expect


async def test_a_due_item_with_nothing_left_to_do_is_cleared_once_its_command_committed(
    database_url: str,
    schema: str,
    ledger: Ledger,
    clock: MovingClock,
    timed_writer: Writer,
    follower: Follower,
) -> None:
    scheduler = scheduler_of(database_url, schema, clock)
    async with running(follower, scheduler):
        await open_funded(timed_writer, T, {A: 0})
        await timed_writer.submit(
            c.GrantCredits(
                tenant_id=T,
                account_id=A,
                amount=10,
                reason="trial",
                expires_at=clock() + timedelta(seconds=5),
            )
        )
        await timed_writer.submit(  # used up before it expires: no event clears its item
            c.ConsumeCredits(tenant_id=T, account_id=A, amount=10, operation="OP")
        )
        await wait_until(lambda: _count(database_url, schema, "SELECT count(*) FROM due_items", 1))
        recorded = stored_event_count(ledger, database_url, T, A)
        clock.move(seconds=5)
        scheduler.wake()
        await wait_until(lambda: _count(database_url, schema, "SELECT count(*) FROM due_items"))
        for _ in range(3):  # later sweeps find nothing to send
            clock.move(seconds=60)
            scheduler.wake()
            await asyncio.sleep(0.05)
    assert stored_event_count(ledger, database_url, T, A) == recorded
    assert (scheduler.sent, scheduler.failed) == (1, 0)


# --------------------------------------------------------------------- exactly once


async def test_a_restarted_scheduler_resumes_and_never_applies_an_item_twice(
    database_url: str,
    schema: str,
    ledger: Ledger,
    clock: MovingClock,
    timed_writer: Writer,
    follower: Follower,
) -> None:
    first = scheduler_of(database_url, schema, clock)
    async with running(follower, first):
        lot_id, hold_id = await fund(timed_writer, clock)
        await wait_until(lambda: _count(database_url, schema, "SELECT count(*) FROM due_items", 2))
    # While no scheduler runs, the hold falls due and its command commits, as if a scheduler
    # had sent it and died before marking it done.
    clock.move(seconds=1)
    rows = await due_rows(database_url, schema)
    hold_row = next(row for row in rows if row["kind"] == HOLD_EXPIRY)
    item = DueItem(T, A, HOLD_EXPIRY, hold_id, hold_row["due_at"])
    await timed_writer.submit(c.Envelope(tenant_id=T, command=REGISTRY.scheduled_command(item)))
    clock.move(seconds=9)
    second = scheduler_of(database_url, schema, clock)
    async with running(follower, second):
        await wait_until(lambda: _count(database_url, schema, "SELECT count(*) FROM due_items"))
    assert stored_event_count(ledger, database_url, T, A, "HoldExpired") == 1
    assert stored_event_count(ledger, database_url, T, A, "LotExpired") == 1
    assert await entry_types(database_url, schema) == [
        "open", "grant", "grant", "hold", "release", "expire",
    ]  # fmt: skip
    # The lot's applied; the hold's cleared by its event, or (had the sweep come first)
    # answered from its key: either way once.
    assert lot_id and second.sent in (1, 2)


async def test_a_standby_scheduler_takes_over_when_the_active_one_stops(
    database_url: str, schema: str, clock: MovingClock, timed_writer: Writer, follower: Follower
) -> None:
    active = scheduler_of(database_url, schema, clock)
    standby = scheduler_of(database_url, schema, clock)
    async with running(follower), running(active) as stop_active:
        await wait_until(lambda: active.active)
        async with running(standby):
            await fund(timed_writer, clock)
            await wait_until(
                lambda: _count(database_url, schema, "SELECT count(*) FROM due_items", 2)
            )
            assert not standby.active
            stop_active.set()
            await wait_until(lambda: not active.active)
            clock.move(seconds=10)
            await wait_until(lambda: standby.active)
            standby.wake()
            await wait_until(lambda: _count(database_url, schema, "SELECT count(*) FROM due_items"))
    assert await entry_types(database_url, schema) == [
        "open", "grant", "grant", "hold", "release", "expire",
    ]  # fmt: skip
    assert (active.sent, standby.sent) == (0, 2)


async def test_a_failed_command_is_tried_again_after_a_back_off_and_never_dropped(
    database_url: str, schema: str, clock: MovingClock, timed_writer: Writer, follower: Follower
) -> None:
    scheduler = scheduler_of(database_url, schema, clock)
    async with running(follower, scheduler):
        await fund(timed_writer, clock)
        await wait_until(lambda: _count(database_url, schema, "SELECT count(*) FROM due_items", 2))
        conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
        try:  # an item of an account that does not exist: its command fails
            await conn.execute(
                "INSERT INTO due_items (tenant_id, kind, key, account_id, due_at, position, "
                "retry_at) VALUES ($1, $2, 'k', 'nobody', $3, 0, $3)",
                T,
                LOT_EXPIRY,
                clock(),
            )
        finally:
            await conn.close()
        scheduler.wake()
        await wait_until(lambda: scheduler.failed == 1)
        clock.move(seconds=0.5)  # inside the first back-off: not sent again
        scheduler.wake()
        await asyncio.sleep(0.1)
        assert scheduler.failed == 1
        clock.move(seconds=1)
        scheduler.wake()
        await wait_until(lambda: scheduler.failed == 2)
    [row] = [r for r in await due_rows(database_url, schema) if r["account_id"] == "nobody"]
    assert row["attempts"] == 2 and row["done_position"] is None


class Crash(AccountCommand, tag="test_crash", frozen=True, kw_only=True):
    """A later area's scheduled command whose handler has a bug."""

    due_at: datetime


def crash(envelope: Any, session: Any) -> Any:
    raise RuntimeError("a bug in a handler")


CRASHING = Area(
    name="crashing",
    views={},
    commands=[CommandSpec(Crash, crash, AccountView, key_space=SCHEDULE_KEYS)],
    schedules=[
        Schedule(
            kind="test_crash",
            events=(HoldPlaced,),
            changes=lambda e: [
                DueChange("test_crash", e.hold_id, e.tenant_id, e.account_id, e.expires_at)
            ],
            command=lambda item: Crash(account_id=item.account_id, due_at=item.due_at),
        )
    ],
)


async def test_an_item_whose_command_crashes_fails_alone_and_the_others_are_applied(
    database_url: str, schema: str, clock: MovingClock, timed_writer: Writer, follower: Follower
) -> None:
    registry = Registry([TENANTS, ACCOUNTS, CRASHING])
    scheduler = scheduler_of(database_url, schema, clock, registry=registry)
    async with running(follower, scheduler):
        await fund(timed_writer, clock)
        await wait_until(lambda: _count(database_url, schema, "SELECT count(*) FROM due_items", 3))
        clock.move(seconds=1)  # the hold's two items fall due: its expiry and the crashing one
        scheduler.wake()
        await wait_until(lambda: scheduler.failed == 1)
        await wait_until(lambda: _has(database_url, schema, "release"))
    [row] = [r for r in await due_rows(database_url, schema) if r["kind"] == "test_crash"]
    assert row["attempts"] == 1 and row["done_position"] is None  # tried again later
    assert scheduler.sent == 1


# ------------------------------------------------------------------ the read rule


@pytest.fixture
async def pool(database_url: str, schema: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert created is not None
    yield created
    await created.close()


async def test_a_read_of_the_read_models_never_shows_an_expiry_unrecorded(
    database_url: str,
    schema: str,
    ledger: Ledger,
    writer: Writer,
    follower: Follower,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(due_times, "READ_EXPIRY_WAIT_MAX_S", 0.3)
    reads = ExpiryReads(pool, schema)
    scheduler = scheduler_of(database_url, schema)  # the database's clock
    async with running(follower):
        async with pool.acquire() as conn:
            await follower.create_tables(conn)
            await scheduler.create_tables(conn)
        await open_funded(writer, T, {A: 0})
        # 3 s ahead: room for the commands below on a loaded machine before it is due.
        expires_at = await database_now(database_url) + timedelta(seconds=3)
        await writer.submit(
            c.GrantCredits(tenant_id=T, account_id=A, amount=50, reason="r", expires_at=expires_at)
        )
        await reads.settled(T, A)  # nothing due yet
        await asyncio.sleep(
            max(0.0, (expires_at - await database_now(database_url)).total_seconds())
        )
        with pytest.raises(UnavailableError):  # no scheduler: it cannot vouch
            await reads.settled(T, A)
        with pytest.raises(UnavailableError):
            await reads.settled(T)
        late = scheduler_of(database_url, schema, lambda: datetime.now(tz=UTC) - timedelta(hours=1))
        async with running(late):  # knows the item, but its clock has not reached it
            await wait_until(
                lambda: _count(database_url, schema, "SELECT count(*) FROM due_items", 1)
            )
            with pytest.raises(UnavailableError):
                await reads.settled(T, A)
        async with running(scheduler):
            await wait_until(lambda: scheduler.sent == 1)
            await reads.settled(T, A)  # once projected, within the wait
            await reads.settled(T)
            assert await entry_types(database_url, schema) == ["open", "grant", "expire"]


async def database_now(database_url: str) -> datetime:
    conn = await asyncpg.connect(database_url)
    try:
        now: datetime = await conn.fetchval("SELECT clock_timestamp()")
        return now
    finally:
        await conn.close()


async def test_a_replica_whose_clock_is_behind_never_keeps_an_expired_lot_available(
    database_url: str, schema: str, ledger: Ledger, follower: Follower, pool: asyncpg.Pool
) -> None:
    """Its writer's clock is 10 minutes behind; the scheduler and the read rule go by the
    database's: the expiry is recorded on time, and every read shows it."""
    behind = Writer(ledger, clock=lambda: datetime.now(tz=UTC) - timedelta(minutes=10))
    behind.start()
    reads = ExpiryReads(pool, schema)
    scheduler = scheduler_of(database_url, schema)  # the database's clock
    async with pool.acquire() as conn:
        await follower.create_tables(conn)
        await scheduler.create_tables(conn)
    try:
        await open_funded(behind, T, {A: 7})
        # 3 s ahead: room for the commands below on a loaded machine before it is due.
        expires_at = await database_now(database_url) + timedelta(seconds=3)
        await behind.submit(
            c.GrantCredits(tenant_id=T, account_id=A, amount=50, reason="r", expires_at=expires_at)
        )
        await behind.submit(
            c.PlaceHold(tenant_id=T, account_id=A, amount=5, operation="OP", expires_in_s=603)
        )  # by the database's clock it expires 3 s from now too
        async with running(follower, scheduler):
            # Before the expiry by the database's clock, the read models' reads answer.
            await reads.settled(T, A)
            await wait_until(lambda: scheduler.sent == 2)  # on time, though the writer is late
            view = await account_view(behind)
            assert (view.balance, view.held, view.available) == (7, 0, 7)
            last = ledger.max_position()  # a read with min_position=last
            await wait_until(lambda: follower.position >= last)
            now = await reads.settled(T, A)  # the database's time, whatever the replica's says
            assert now >= expires_at
            rows = await fetch(
                database_url,
                schema,
                "SELECT balance, held FROM rm_accounts WHERE tenant_id = $1 AND account_id = $2",
                T,
                A,
            )
            assert (rows[0]["balance"], rows[0]["held"]) == (7, 0)
    finally:
        await behind.stop()


# ------------------------------------------------------------------ a batch's cold loads


async def test_aggregates_loaded_together_are_those_loaded_one_by_one(
    ledger: Ledger, writer: Writer
) -> None:
    """From a snapshot and the events after it, or from the events alone, as the library's
    repository loads each; an id with no events is left out."""
    await open_funded(writer, T, {A: 1_000, "bob": 10})
    for _ in range(210):  # past SNAPSHOT_INTERVAL: ada's account has a snapshot
        await writer.submit(c.ConsumeCredits(tenant_id=T, account_id=A, amount=1, operation="OP"))
    hold = await writer.submit(c.PlaceHold(tenant_id=T, account_id="bob", amount=3, operation="OP"))
    ids = [
        account_aggregate_id(T, A),
        account_aggregate_id(T, "bob"),
        aggregate_id(T, "hold", hold.value.hold_id),  # type: ignore[attr-defined]
        account_aggregate_id(T, "nobody"),
    ]
    assert ledger.snapshots is not None
    assert list(ledger.snapshots.get(ids[0], desc=True, limit=1))  # the snapshot path
    together = await asyncio.to_thread(ledger.load_many, ids)
    assert set(together) == set(ids[:3])
    for aggregate_id_ in ids[:3]:
        alone = ledger.repository.get(aggregate_id_)
        assert type(together[aggregate_id_]) is type(alone)
        assert vars(together[aggregate_id_]) == vars(alone)

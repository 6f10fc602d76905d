"""Auto top-up end to end on real PostgreSQL, NATS and an HTTP receiver: a crossing makes one
`topup_requested` entry (on NATS and as a `topup.requested` webhook, with the topup_id the
payment side reuses), a batch handled again asks nothing twice; the scheduler sends each retry
on time and once, with the same topup_id, through a change of active scheduler, and gives up
after the last attempt; the purchase that follows ends the retries; retries due before an
upgrade from the watcher's own due table are found in the event store.

The watcher, the scheduler and the writers share a clock the tests move (`MovingClock`, as in
tests/integration/test_scheduler.py): a retry due in 5 minutes is due when the test says."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import nats
import pytest

from api.http.webhook_endpoints import WebhookEndpoints
from api.roles.topups import TRACKING_TABLE, TopUpWatcher
from ledger.accounts.stored_entries import ACCOUNT_TOPIC_PREFIX
from ledger.areas import REGISTRY
from ledger.registry import DueItem, Registry
from ledger.store.application import Ledger
from ledger.store.sealed import SecretBox, new_secret_key
from ledger.store.transcoder import new_mapper
from ledger.topups.record import TOPUP_ATTEMPTS_MAX
from ledger.topups.schedules import TOPUP_RETRY, retry_delay
from ledger.writer.writer import Writer
from projections.due_times import ExpiryReads
from projections.follower import Follower
from projections.scheduler import Scheduler
from tests import envelopes as c
from tests.integration.helpers import open_funded, stored_event_count
from tests.integration.test_relay import running_relay
from tests.integration.test_scheduler import MovingClock, wait_until
from tests.integration.test_scheduler import running as running_roles
from tests.integration.test_webhooks import LOCAL, running
from tests.webhook_receivers import Receiver

T, A = "acme", "ada"


@contextlib.asynccontextmanager
async def watching(writer: Writer, database_url: str, schema: str) -> AsyncIterator[TopUpWatcher]:
    watcher = TopUpWatcher(database_url, schema, new_mapper(), writer.submit)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        yield watcher
    finally:
        stop.set()
        await task


async def eventually(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def topup_events(ledger: Ledger, database_url: str) -> int:
    return stored_event_count(ledger, database_url, T, A, "TopUpRequested")


async def test_a_crossing_is_one_topup_request_on_nats_and_webhooks_even_when_handled_twice(
    writer: Writer, ledger: Ledger, database_url: str, schema: str, nats_url: str, stream_name: str
) -> None:
    box = SecretBox(new_secret_key())
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    receiver = Receiver()
    url = await receiver.start()
    client = await nats.connect(nats_url)
    seen: list[Any] = []

    async def collect(message: Any) -> None:
        seen.append(json.loads(message.data))

    try:
        endpoints = WebhookEndpoints(pool, schema, box, LOCAL)
        await endpoints.create_tables()
        await endpoints.create(T, url, ["topup.requested"], "")
        await open_funded(writer, T, {A: 100})
        await writer.submit(c.SetTenantTopUp(tenant_id=T, below=50, target=500, monthly_max=3))
        await client.subscribe(f"ledger.{T}.{A}.topup_requested", cb=collect)
        async with (
            running_relay(database_url, schema, nats_url, stream_name),
            running(database_url, schema, box),
        ):
            async with watching(writer, database_url, schema) as first:
                await writer.submit(
                    c.ConsumeCredits(tenant_id=T, account_id=A, amount=60, operation="op")
                )
                await receiver.wait_for(1)
            conn = await asyncpg.connect(database_url)
            await conn.execute(f'UPDATE "{schema}".{TRACKING_TABLE} SET position = 0')
            await conn.close()
            async with watching(writer, database_url, schema) as again:
                await eventually(lambda: _caught_up(again, first.position))
            await eventually(lambda: _count(seen, 1))
    finally:
        await client.close()
        await receiver.stop()
        await pool.close()
    assert topup_events(ledger, database_url) == 1
    [hook] = receiver.received
    assert hook.json["type"] == "topup.requested"
    metadata = hook.json["data"]["metadata"]
    assert (metadata["credits"], metadata["attempt"]) == (460, 1)
    assert seen[0]["metadata"]["topup_id"] == metadata["topup_id"]
    assert seen[0]["type"] == "topup_requested" and seen[0]["amount"] == 0


async def _caught_up(watcher: TopUpWatcher, position: int) -> bool:
    return watcher.position >= position


async def _count(seen: list[Any], n: int) -> bool:
    return len(seen) >= n


# ------------------------------------------------------------ retries, sent by the scheduler


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock()


@pytest.fixture
async def timed_writer(ledger: Ledger, clock: MovingClock) -> AsyncIterator[Writer]:
    writer = Writer(ledger, clock=clock)
    writer.start()
    yield writer
    await writer.stop()


def scheduler_of(
    database_url: str, schema: str, clock: MovingClock, registry: Registry = REGISTRY
) -> Scheduler:
    return Scheduler(database_url, schema, new_mapper(), clock=clock, registry=registry)


async def fetch(database_url: str, schema: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


async def retry_item(database_url: str, schema: str) -> asyncpg.Record | None:
    """The account's top-up retry in the due model, if it has one."""
    try:
        rows = await fetch(
            database_url,
            schema,
            "SELECT * FROM due_items WHERE kind = $1 AND tenant_id = $2 AND key = $3",
            TOPUP_RETRY,
            T,
            A,
        )
    except asyncpg.UndefinedTableError:  # the scheduler has not made its tables yet
        return None
    return rows[0] if rows else None


async def item_for(database_url: str, schema: str, detail_prefix: str) -> asyncpg.Record:
    """The retry item once it is the one for that attempt (`<attempt>:`), not yet done."""
    found: list[asyncpg.Record] = []

    async def there() -> bool:
        row = await retry_item(database_url, schema)
        if row is None or row["done_position"] is not None:
            return False
        if not row["detail"].startswith(detail_prefix):
            return False
        found.append(row)
        return True

    await wait_until(there)
    return found[-1]


async def open_topup(writer: Writer) -> Any:
    return (await writer.submit(c.GetAccountTopUp(tenant_id=T, account_id=A))).value


async def cross(writer: Writer) -> None:
    """An account of 100 with a policy below 50, and the consumption that takes it below."""
    await open_funded(writer, T, {A: 100})
    await writer.submit(c.SetAccountTopUp(tenant_id=T, account_id=A, below=50, amount=100))
    await writer.submit(c.ConsumeCredits(tenant_id=T, account_id=A, amount=60, operation="op"))


async def test_a_due_retry_asks_again_with_the_same_topup_id_until_the_purchase_follows(
    ledger: Ledger, database_url: str, schema: str, clock: MovingClock, timed_writer: Writer
) -> None:
    scheduler = scheduler_of(database_url, schema, clock)
    watcher = TopUpWatcher(database_url, schema, new_mapper(), timed_writer.submit)
    async with running_roles(watcher, scheduler):
        await cross(timed_writer)
        first = await item_for(database_url, schema, "2:")
        clock.at = first["due_at"]
        scheduler.wake()
        await wait_until(lambda: topup_events(ledger, database_url) == 2)
        view = await open_topup(timed_writer)
        assert view.open.attempt == 2
        topup_id = view.open.topup_id
        await timed_writer.submit(
            c.PurchaseCredits(
                tenant_id=T,
                account_id=A,
                price=c.Price(amount="1", currency="USD"),
                payment_ref="pi_topup",
                amount=100,
            )
        )

        async def cleared() -> bool:
            row = await retry_item(database_url, schema)
            return row is not None and row["done_position"] is not None

        await wait_until(cleared)  # by the purchase: nothing left due
        for _ in range(3):
            clock.move(hours=2)
            scheduler.wake()
            await asyncio.sleep(0.1)
    assert topup_events(ledger, database_url) == 2  # nothing after the purchase
    assert scheduler.sent == 1
    view = await open_topup(timed_writer)
    assert view.open is None and view.last == {
        "topup_id": topup_id,
        "status": "closed",
        "by": "pi_topup",
    }


async def test_retries_are_sent_on_time_once_through_a_failover_then_it_is_abandoned(
    ledger: Ledger, database_url: str, schema: str, clock: MovingClock, timed_writer: Writer
) -> None:
    active = scheduler_of(database_url, schema, clock)
    standby = scheduler_of(database_url, schema, clock)
    watcher = TopUpWatcher(database_url, schema, new_mapper(), timed_writer.submit)
    async with running_roles(watcher), running_roles(active) as stop_active:
        await wait_until(lambda: active.active)
        async with running_roles(standby):
            await cross(timed_writer)
            first = await item_for(database_url, schema, "2:")
            asked = await open_topup(timed_writer)
            topup_id, requested_at = asked.open.topup_id, asked.open.requested_at
            assert first["detail"] == f"2:{topup_id}"
            assert abs(first["due_at"] - (requested_at + retry_delay(1))) < timedelta(seconds=1)
            # On time: not a moment before.
            clock.at = first["due_at"] - timedelta(seconds=1)
            active.wake()
            await asyncio.sleep(0.2)
            assert topup_events(ledger, database_url) == 1
            clock.at = first["due_at"]
            active.wake()
            await wait_until(lambda: topup_events(ledger, database_url) == 2)

            # The active scheduler stops as it sends the next retry: its command commits, and
            # the standby, taking over, may find the item not yet marked done and send it again.
            second = await item_for(database_url, schema, "3:")
            again = (await open_topup(timed_writer)).open
            assert (again.topup_id, again.attempt) == (topup_id, 2)
            assert abs(second["due_at"] - (again.requested_at + retry_delay(2))) < timedelta(
                seconds=1
            )
            stop_active.set()
            await wait_until(lambda: not active.active)
            clock.at = second["due_at"]
            item = DueItem(T, A, TOPUP_RETRY, A, second["due_at"], second["detail"])
            await timed_writer.submit(
                c.Envelope(tenant_id=T, command=REGISTRY.scheduled_command(item))
            )
            await wait_until(lambda: standby.active)
            standby.wake()
            third = await item_for(database_url, schema, "4:")
            assert topup_events(ledger, database_url) == 3

            clock.at = third["due_at"]
            standby.wake()
            last = await item_for(database_url, schema, f"{TOPUP_ATTEMPTS_MAX + 1}:")
            assert topup_events(ledger, database_url) == TOPUP_ATTEMPTS_MAX

            clock.at = last["due_at"]  # the last attempt unanswered: given up
            standby.wake()

            async def abandoned() -> bool:
                return (await open_topup(timed_writer)).open is None

            await wait_until(abandoned)
            for _ in range(3):  # nothing more, however late
                clock.move(days=1)
                standby.wake()
                await asyncio.sleep(0.1)
    assert topup_events(ledger, database_url) == TOPUP_ATTEMPTS_MAX
    record_events = await fetch(
        database_url,
        schema,
        f"SELECT topic FROM {ledger.events_table} WHERE topic LIKE 'ledger.topups:TopUpRecord.%' "
        "ORDER BY notification_id",
    )
    assert [row["topic"].rsplit(".", 1)[-1] for row in record_events] == [
        "Created", "Requested", "Requested", "Requested", "Requested", "Abandoned",
    ]  # fmt: skip
    view = await open_topup(timed_writer)
    assert view.last == {"topup_id": topup_id, "status": "abandoned"}
    row = await retry_item(database_url, schema)
    assert row is not None and row["done_position"] is not None
    assert active.sent == 1 and standby.sent in (2, 3)  # the third answered from its key
    assert active.failed == standby.failed == 0


async def test_a_due_retry_does_not_hold_reads_of_the_read_models(
    database_url: str, schema: str, clock: MovingClock, timed_writer: Writer
) -> None:
    """A retry records a request of 0 credits: reads of the account's entries and balance do
    not wait for it, nor fail while the scheduler is down."""
    scheduler = scheduler_of(database_url, schema, clock)
    watcher = TopUpWatcher(database_url, schema, new_mapper(), timed_writer.submit)
    async with running_roles(watcher, scheduler):
        await cross(timed_writer)
        await item_for(database_url, schema, "2:")
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:  # due an hour ago by the database's clock, and no scheduler running
        await conn.execute(
            "UPDATE due_items SET due_at = now() - interval '1 hour', "
            "retry_at = now() - interval '1 hour' WHERE kind = $1",
            TOPUP_RETRY,
        )
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:  # the read models' tables, which the rule reads
            await Follower(database_url, schema, new_mapper()).create_tables(conn)
        reads = ExpiryReads(pool, schema)
        assert (await reads.check(T, A))[1] and (await reads.check(T, None))[1]
    finally:
        await pool.close()


# --------------------------------------------------------------------------- upgrading


OLD_DUE_TABLE = "ledger_topup_due"  # the watcher's own due times, before the scheduler's


def without_topup_retries() -> Registry:
    """The registry as the due model of an earlier version had it: no top-up schedule."""
    return Registry(
        [replace(area, schedules=()) if area.name == "topups" else area for area in REGISTRY.areas]
    )


@pytest.mark.parametrize("before", ["no_due_model", "due_model_of_issue_14"])
async def test_a_retry_due_in_the_old_watchers_table_is_found_in_the_event_store_on_upgrade(
    before: str,
    ledger: Ledger,
    database_url: str,
    schema: str,
    clock: MovingClock,
    timed_writer: Writer,
) -> None:
    """An open request made by the earlier version, whose retry its watcher kept in its own
    table: the scheduler's due model finds it in the event store, whether it starts from
    position 0 (no scheduler ran) or had kept holds' and lots' items past that position."""
    watcher = TopUpWatcher(database_url, schema, new_mapper(), timed_writer.submit)
    async with running_roles(watcher):
        await cross(timed_writer)
        await wait_until(lambda: topup_events(ledger, database_url) == 1)
    asked = await open_topup(timed_writer)
    if before == "due_model_of_issue_14":
        old = scheduler_of(database_url, schema, clock, without_topup_retries())
        [row] = await fetch(  # the request's entry: the due model reads the Account's events
            database_url,
            schema,
            f"SELECT max(notification_id) FROM {ledger.events_table} WHERE topic LIKE $1",
            f"{ACCOUNT_TOPIC_PREFIX}%",
        )
        async with running_roles(old):
            await wait_until(lambda: old.due.position >= row[0])
        conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
        try:  # issue 14's due model recorded its position only
            await conn.execute("DELETE FROM due_tracking WHERE name <> 'due_times'")
        finally:
            await conn.close()
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:  # what the earlier watcher left: harmless, read by nothing
        await conn.execute(
            f"CREATE TABLE {OLD_DUE_TABLE} (tenant_id text NOT NULL, account_id text NOT NULL, "
            "topup_id text NOT NULL, attempt integer NOT NULL, due_at timestamptz NOT NULL, "
            "PRIMARY KEY (tenant_id, account_id))"
        )
        await conn.execute(
            f"INSERT INTO {OLD_DUE_TABLE} VALUES ($1, $2, $3, 1, $4)",
            T,
            A,
            asked.open.topup_id,
            asked.open.requested_at + retry_delay(1),
        )
    finally:
        await conn.close()

    scheduler = scheduler_of(database_url, schema, clock)
    async with running_roles(scheduler):
        item = await item_for(database_url, schema, "2:")
        assert item["detail"] == f"2:{asked.open.topup_id}"
        clock.at = item["due_at"]
        scheduler.wake()
        await wait_until(lambda: topup_events(ledger, database_url) == 2)
    view = await open_topup(timed_writer)
    assert (view.open.topup_id, view.open.attempt) == (asked.open.topup_id, 2)
    kinds = await fetch(
        database_url, schema, "SELECT name FROM due_tracking WHERE name LIKE 'schedule:%'"
    )
    assert sorted(row["name"] for row in kinds) == sorted(
        f"schedule:{kind}" for kind in REGISTRY.schedules
    )

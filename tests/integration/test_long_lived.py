"""No dead ends for long-lived data, on real PostgreSQL: an account granted credits every day
keeps a few lots and loads cold from its snapshot as it was; a tenant rotating its keys without
end keeps a bounded key list and loads cold from its snapshot, its keys still found by hash."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from api.http.auth import load_grant
from ledger.ids import account_aggregate_id, tenant_aggregate_id
from ledger.limits import API_KEYS_ENDED_KEPT, SNAPSHOT_INTERVAL
from ledger.store.application import Ledger
from ledger.store.transcoder import new_mapper
from ledger.tenants.api_keys import hash_api_key
from ledger.writer.writer import Writer
from projections.audit import compare_with_read_models
from projections.follower import Follower
from tests import envelopes as c

T = "longlived"
A = "daily"
DAYS = 400


@contextlib.asynccontextmanager
async def writer_on(ledger: Ledger, clock: Callable[[], datetime]) -> AsyncIterator[Writer]:
    writer = Writer(ledger, clock=clock)
    writer.start()
    try:
        yield writer
    finally:
        await writer.stop()


def as_json(value: Any) -> Any:
    return json.loads(msgspec.json.encode(value))


async def daily_life(writer: Writer, today: list[datetime]) -> None:
    """DAYS days of a grant and a consumption, a weekly hold captured with its user and
    resource, a monthly promotion expiring in 30 days and a quarterly purchase."""
    account = {"tenant_id": T, "account_id": A}
    await writer.submit(c.GrantCredits(**account, amount=500, reason="welcome"))
    for day in range(DAYS):
        today[0] = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
        await writer.submit(c.GrantCredits(**account, amount=10, reason="daily"))
        if day % 30 == 0:
            expires_at = today[0] + timedelta(days=30)
            await writer.submit(
                c.GrantCredits(
                    **account, amount=100, reason="promo", priority=50, expires_at=expires_at
                )
            )
        if day % 90 == 45:
            price = c.Price(amount="5", currency="USD")
            await writer.submit(
                c.PurchaseCredits(**account, amount=500, price=price, payment_ref=f"p{day}")
            )
        if day % 7 == 3:
            hold = await writer.submit(
                c.PlaceHold(**account, amount=30, operation="render", user_id="u", resource="m")
            )
            await writer.submit(
                c.CaptureHold(**account, hold_id=hold.value.hold_id, amount=25)  # type: ignore[attr-defined]
            )
        await writer.submit(c.ConsumeCredits(**account, amount=14, operation="chat"))


async def test_an_account_granted_credits_daily_keeps_a_few_lots_and_loads_cold_as_it_was(
    database_url: str, schema: str
) -> None:
    today = [datetime(2026, 1, 1, tzinfo=UTC)]
    ledger = Ledger(database_url, schema)
    try:
        async with writer_on(ledger, lambda: today[0]) as writer:
            await writer.submit(c.CreateTenant(tenant_id=T, name=T))
            await writer.submit(c.OpenAccount(tenant_id=T, account_id=A))
            await daily_life(writer, today)
            warm = await writer.submit(c.GetAccount(tenant_id=T, account_id=A))
        assert warm.value.version > 4 * SNAPSHOT_INTERVAL  # type: ignore[attr-defined]
        assert len(warm.value.lots) <= 4  # type: ignore[attr-defined]
        assert ledger.snapshots is not None
        (snapshot,) = ledger.snapshots.get(account_aggregate_id(T, A), desc=True, limit=1)
        assert snapshot.originator_version >= 4 * SNAPSHOT_INTERVAL
        assert len(snapshot.state["lots"]) <= 4
    finally:
        ledger.close()
    cold_ledger = Ledger(database_url, schema)
    try:
        async with writer_on(cold_ledger, lambda: today[0]) as cold:
            read = await cold.submit(c.GetAccount(tenant_id=T, account_id=A))
            assert as_json(read.value) == as_json(warm.value)
            grant = await cold.submit(
                c.GrantCredits(tenant_id=T, account_id=A, amount=10, reason="daily")
            )
            daily_lot = next(
                lot
                for lot in read.value.lots
                if lot.priority == 100 and lot.source == "grant"  # type: ignore[attr-defined]
            )
            assert grant.value.lot_id == daily_lot.lot_id  # type: ignore[attr-defined]
    finally:
        cold_ledger.close()
    conn = await asyncpg.connect(database_url)
    try:
        follower = Follower(database_url, schema, new_mapper())
        await follower.create_tables(conn)
        await follower.catch_up(conn)
        report = await compare_with_read_models(conn, schema, new_mapper(), T)
        assert report["ok"], report["mismatches"]
        captures = await conn.fetch(
            f'SELECT entry FROM "{schema}".rm_entries WHERE type = $1', "capture"
        )
        assert captures and all(
            (json.loads(row["entry"])["user_id"], json.loads(row["entry"])["resource"])
            == ("u", "m")
            for row in captures
        )
    finally:
        await conn.close()


async def test_a_tenant_rotating_its_key_without_end_keeps_a_bounded_list_and_loads_cold(
    database_url: str, schema: str
) -> None:
    ledger = Ledger(database_url, schema)
    rotations = 2 * SNAPSHOT_INTERVAL + 50  # two events each
    try:
        async with writer_on(ledger, lambda: datetime.now(UTC)) as writer:
            created = await writer.submit(c.CreateTenant(tenant_id=T, name=T))
            first = created.value.api_key  # type: ignore[attr-defined]
            key_id, secret = first.key_id, first.key
            for _ in range(rotations):
                rotated = await writer.submit(c.RotateApiKey(tenant_id=T, key_id=key_id, grace_s=0))
                key_id, secret = rotated.value.key_id, rotated.value.key  # type: ignore[attr-defined]
        assert ledger.snapshots is not None
        (snapshot,) = ledger.snapshots.get(tenant_aggregate_id(T), desc=True, limit=1)
        assert snapshot.originator_version >= 4 * SNAPSHOT_INTERVAL
    finally:
        ledger.close()
    cold = Ledger(database_url, schema)
    try:
        tenant = cold.repository.get(tenant_aggregate_id(T))
        assert tenant.version == 1 + 2 * rotations + 1  # created, its first key, rotations
        assert len(tenant.api_keys) == API_KEYS_ENDED_KEPT + 1
        working = load_grant(cold, hash_api_key(secret))
        assert working is not None and not working.revoked and working.key_id == key_id
        assert working.expires_at is None
        forgotten = load_grant(cold, hash_api_key(first.key))
        assert forgotten is not None and forgotten.revoked  # ended long ago: still refused
    finally:
        cold.close()

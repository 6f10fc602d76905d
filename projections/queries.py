"""Queries of the read models (asyncpg). Each is one indexed range scan (see schema.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

import asyncpg
import msgspec

from ledger.errors import InvalidCommandError, UnavailableError
from projections.schema import TRACKING_NAME

# A page of entries or history holds at most this many entries.
PAGE_SIZE_MAX = 1_000
PAGE_SIZE_DEFAULT = 100
# How long a query waits for the read models to reach a `min_position`.
READ_WAIT_MAX_S = 5.0
READ_WAIT_POLL_S = 0.01
# A usage report spans at most this many days.
USAGE_DAYS_MAX = 366
USAGE_GROUPS = ("operation", "account_id", "day")
# Rows fetched per round trip while streaming a whole history.
STREAM_CHUNK = 1_000


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    as_of: datetime
    balance: int
    available: int
    held: int


class UsageRow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    count: int
    credits: int
    refunded: int
    expired: int = 0  # credits of lots that expired (counted under no operation)
    operation: str | None = None
    account_id: str | None = None
    day: date | None = None


class UsageTotal(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    count: int
    credits: int
    refunded: int
    expired: int = 0  # present when there is any, as in the items


class UsageReport(msgspec.Struct, frozen=True, kw_only=True):
    from_: date = msgspec.field(name="from")
    to: date
    group_by: list[str]
    items: list[UsageRow]
    total: UsageTotal


class ReadModels:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.s = f'"{schema}"'

    async def position(self) -> int:
        value = await self.pool.fetchval(
            f"SELECT position FROM {self.s}.rm_tracking WHERE name = $1", TRACKING_NAME
        )
        return int(value or 0)

    async def wait_for(self, min_position: int | None) -> None:
        """Returns once the read models hold `min_position`; UnavailableError past the bound."""
        if not min_position:
            return
        deadline = time.monotonic() + READ_WAIT_MAX_S
        while await self.position() < min_position:
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"the read models have not reached position {min_position} yet; retry"
                )
            await asyncio.sleep(READ_WAIT_POLL_S)

    async def account_known(self, tenant_id: str, account_id: str) -> bool:
        found = await self.pool.fetchval(
            f"SELECT 1 FROM {self.s}.rm_accounts WHERE tenant_id = $1 AND account_id = $2",
            tenant_id,
            account_id,
        )
        return found is not None

    async def entries_page(
        self, tenant_id: str, account_id: str | None, after: int, limit: int
    ) -> bytes:
        """A page `{"items": [Entry...], "next_after": position|null}` as JSON, oldest first."""
        if account_id is None:
            rows = await self.pool.fetch(
                f"SELECT position, entry::text FROM {self.s}.rm_entries "
                f"WHERE tenant_id = $1 AND position > $2 ORDER BY position LIMIT $3",
                tenant_id,
                after,
                limit,
            )
        else:
            rows = await self.pool.fetch(
                f"SELECT position, entry::text FROM {self.s}.rm_entries "
                f"WHERE tenant_id = $1 AND account_id = $2 AND position > $3 ORDER BY position LIMIT $4",
                tenant_id,
                account_id,
                after,
                limit,
            )
        next_after = str(rows[-1][0]).encode() if len(rows) == limit else b"null"
        items = b",".join(row[1].encode() for row in rows)
        return b'{"items":[' + items + b'],"next_after":' + next_after + b"}"

    async def entries_after(
        self, tenant_id: str, account_id: str | None, after: int, upto: int, limit: int
    ) -> list[tuple[int, bytes]]:
        """(position, Entry JSON) of the tenant's (or one account's) entries in (after, upto]."""
        account_filter = "" if account_id is None else " AND account_id = $5"
        args: list[Any] = [tenant_id, after, upto, limit]
        if account_id is not None:
            args.append(account_id)
        rows = await self.pool.fetch(
            f"SELECT position, entry::text FROM {self.s}.rm_entries WHERE tenant_id = $1 "
            f"AND position > $2 AND position <= $3{account_filter} ORDER BY position LIMIT $4",
            *args,
        )
        return [(int(row[0]), row[1].encode()) for row in rows]

    async def stream_history(self, tenant_id: str) -> AsyncIterator[bytes]:
        """Every entry of the tenant, in ledger order, one JSON line each."""
        after = 0
        while True:
            rows = await self.pool.fetch(
                f"SELECT position, entry::text FROM {self.s}.rm_entries "
                f"WHERE tenant_id = $1 AND position > $2 ORDER BY position LIMIT $3",
                tenant_id,
                after,
                STREAM_CHUNK,
            )
            if not rows:
                return
            yield b"".join(row[1].encode() + b"\n" for row in rows)
            after = rows[-1][0]

    async def balance_as_of(self, tenant_id: str, account_id: str, as_of: datetime) -> Balance:
        row = await self.pool.fetchrow(
            f"SELECT balance, held FROM {self.s}.rm_entries "
            f"WHERE tenant_id = $1 AND account_id = $2 AND recorded_at <= $3 "
            f"ORDER BY recorded_at DESC, position DESC LIMIT 1",
            tenant_id,
            account_id,
            as_of,
        )
        balance, held = (row["balance"], row["held"]) if row else (0, 0)
        return Balance(
            account_id=account_id, as_of=as_of, balance=balance, available=balance - held, held=held
        )

    async def usage(
        self,
        tenant_id: str,
        from_day: date,
        to_day: date,
        group_by: list[str],
        account_id: str | None,
    ) -> UsageReport:
        if to_day < from_day or (to_day - from_day).days >= USAGE_DAYS_MAX:
            raise InvalidCommandError(f"from..to must be 1 to {USAGE_DAYS_MAX} days, from first")
        unknown = [name for name in group_by if name not in USAGE_GROUPS]
        if unknown or len(set(group_by)) != len(group_by):
            raise InvalidCommandError(
                f"group_by takes distinct names among {', '.join(USAGE_GROUPS)}"
            )
        columns = ", ".join(group_by)
        select = (columns + ", ") if columns else ""
        group = f" GROUP BY {columns} ORDER BY {columns}" if columns else ""
        filters = "tenant_id = $1 AND day >= $2 AND day <= $3"
        args: list[Any] = [tenant_id, from_day, to_day]
        if account_id is not None:
            filters += " AND account_id = $4"
            args.append(account_id)
        rows = await self.pool.fetch(
            f"SELECT {select}sum(count)::bigint AS count, sum(credits)::bigint AS credits, "
            f"sum(refunded)::bigint AS refunded, sum(expired)::bigint AS expired "
            f"FROM {self.s}.rm_usage WHERE {filters}{group}",
            *args,
        )
        items = [
            UsageRow(
                count=row["count"] or 0,
                credits=row["credits"] or 0,
                refunded=row["refunded"] or 0,
                expired=row["expired"] or 0,
                # Expiries are kept under operation "": shown under none.
                **{name: row[name] or None for name in group_by},
            )
            for row in rows
            if row["count"] is not None
        ]
        total = UsageTotal(
            count=sum(i.count for i in items),
            credits=sum(i.credits for i in items),
            refunded=sum(i.refunded for i in items),
            expired=sum(i.expired for i in items),
        )
        return UsageReport(from_=from_day, to=to_day, group_by=group_by, items=items, total=total)

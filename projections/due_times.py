"""Due times: the read model of what falls due, and the read rule built on it (docs/adr/0007).

`DueTimes` is a consumer of the shared tailer (projections/tailer.py), as the follower is: for
each stored event whose topic one of the areas' schedules lists (ledger/registry.py
`Schedule`), it applies what that schedule says the event does to its due items (a hold placed
adds one, its end clears it), and records its position, in one transaction. The scheduler
(projections/scheduler.py) sweeps the items that are due and marks each done once its command
has committed.

`due_items` holds one row per (tenant, kind, key): the account, `due_at`, `detail` (what the
item's command needs beyond its key), the position of the event that set it and, once its work
is in the store, `done_position`, the store's position when it was known done. A done row is purged once the read models hold that position: until
then it still counts for the read rule, so nobody reads the read models between an expiry's
commit and its projection as if nothing were due. `attempts` and `retry_at` back off a command
that failed.

A schedule new since the model was built (an area's, added by an upgrade) has seen none of
the events before the model's position: on activation the model first reads those from
position 0 for that kind's topics alone (`_catch_up`), then keeps it with the others.
`due_tracking` records each kind kept (`schedule:<kind>`); a model of issue 14, which recorded
none, kept the holds' and lots' (KINDS_BEFORE_TRACKING). The scheduler sweeps only once that is
done (`ready`).

The read rule (`ExpiryReads.settled`): a read of the read models (an account's entries or
balance, a tenant's history or usage) first waits, at most READ_EXPIRY_WAIT_MAX_S, until no
item of its account (or tenant) due by the database's clock is left undone or unprojected, and
the due model has seen every entry of the read models there that carries an `expires_at`
already past; else `503 unavailable`. Only the kinds whose schedule says reads wait for them
count (`Schedule.reads_wait`: expiries do, top-up retries do not). The time is the database's: every replica reads by the
same clock whatever its own says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from eventsourcing.persistence import Mapper

from ledger.accounts.schedules import HOLD_EXPIRY, LOT_EXPIRY
from ledger.accounts.stored_entries import ACCOUNT_TOPIC_PREFIX, event_of_row
from ledger.areas import REGISTRY
from ledger.errors import UnavailableError
from ledger.registry import DUE_DETAIL_LENGTH_MAX, DueItem, Registry
from projections.event_store import events_of_topics
from projections.schema import TRACKING_NAME, tracking_statement
from projections.tailer import CONNECTION_ERRORS

log = structlog.get_logger("projections.due_times")

# Stored events read per transaction. Most are skipped by topic before decoding.
BATCH_SIZE_MAX = 2_000
# The back-up poll, should a NOTIFY be missed.
POLL_INTERVAL_S = 0.5
# The due model's row in due_tracking.
DUE_TRACKING_NAME = "due_times"
# due_tracking's row per kind of due item the model keeps: `schedule:<kind>`.
KIND_TRACKING_PREFIX = "schedule:"
# The kinds a due model made before it recorded its kinds (issue 14's) kept all along.
KINDS_BEFORE_TRACKING = (HOLD_EXPIRY, LOT_EXPIRY)
# How long a read of the read models waits for what is due by its time to be recorded and
# projected before it answers 503 (the scheduler is down or far behind), and how often it looks.
READ_EXPIRY_WAIT_MAX_S = 5.0
READ_EXPIRY_WAIT_POLL_S = 0.02
# Entries of the read models after the due model's position a read looks through for one
# that expires by its time; past this many the due model is too far behind to tell: it waits.
UNSEEN_ENTRIES_SCAN_MAX = 1_000
# Reruns of a batch that met a deadlock with the scheduler marking the same rows done.
DEADLOCK_RETRIES_MAX = 5


def due_statements(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        f"""CREATE TABLE IF NOT EXISTS {s}.due_items (
            tenant_id text NOT NULL,
            kind text NOT NULL,
            key text NOT NULL,
            account_id text NOT NULL,
            due_at timestamptz NOT NULL,
            detail text NOT NULL DEFAULT '',
            position bigint NOT NULL,
            done_position bigint,
            attempts integer NOT NULL DEFAULT 0,
            retry_at timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, kind, key)
        )""",
        # Made before items had a detail (issue 14): theirs is "".
        f"ALTER TABLE {s}.due_items ADD COLUMN IF NOT EXISTS detail text NOT NULL DEFAULT ''",
        f"CREATE INDEX IF NOT EXISTS due_items_next ON {s}.due_items (retry_at) "
        "WHERE done_position IS NULL",
        f"CREATE INDEX IF NOT EXISTS due_items_done ON {s}.due_items (done_position) "
        "WHERE done_position IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS due_items_account ON {s}.due_items "
        "(tenant_id, account_id, due_at)",
        f"CREATE INDEX IF NOT EXISTS due_items_tenant ON {s}.due_items (tenant_id, due_at)",
        f"""CREATE TABLE IF NOT EXISTS {s}.due_tracking (
            name text PRIMARY KEY,
            position bigint NOT NULL
        )""",
    ]


@dataclass
class _Pending:
    """What a batch leaves of one due item: its last setting, and a clear after it."""

    account_id: str
    due_at: datetime | None  # None: no setting in this batch, only a clear
    position: int
    cleared_at: int | None = None
    detail: str = ""


class DueTimes:
    """The tailer's consumer that keeps `due_items` (see the module's docstring)."""

    name = "scheduler"

    def __init__(
        self,
        schema: str,
        mapper: Mapper[UUID],
        registry: Registry,
        lock_key: int,
        *,
        on_added: Callable[[], None] | None = None,
        batch_size_max: int = BATCH_SIZE_MAX,
    ) -> None:
        self.schema = schema
        self.mapper = mapper
        self.registry = registry
        self.lock_key = lock_key
        self.on_added = on_added
        self.batch_size_max = batch_size_max
        self.position = 0
        # Only the events of a schedule's topics are decoded: the others come without state,
        # and when they are all the Account's, the others are not read at all.
        self.state_topics = frozenset(registry.schedules_by_topic)
        self.accounts_only = all(
            topic.startswith(ACCOUNT_TOPIC_PREFIX) for topic in self.state_topics
        )
        # Held while a batch's rows are written, and by the scheduler while it marks items
        # done: the same rows, from two connections, in one order.
        self.lock = asyncio.Lock()
        # Whether the active model has caught up on every kind (the sweep waits until then).
        self.ready = False
        self._s = f'"{schema}"'

    @property
    def poll_interval_s(self) -> float:
        return POLL_INTERVAL_S

    def table_statements(self) -> list[str]:
        # The read models' position too, which the scheduler purges against (if no follower
        # has made it yet).
        return [tracking_statement(self.schema), *due_statements(self.schema)]

    async def read_position(self, conn: asyncpg.Connection) -> int:
        value = await conn.fetchval(
            f"SELECT position FROM {self._s}.due_tracking WHERE name = $1", DUE_TRACKING_NAME
        )
        return int(value or 0)

    async def activate(self, conn: asyncpg.Connection, position: int) -> None:
        """Catches up on the kinds it has not kept (a schedule new since it was built), then
        says it is ready."""
        self.ready = False
        self.position = position
        rows = await conn.fetch(
            f"SELECT name FROM {self._s}.due_tracking WHERE starts_with(name, $1)",
            KIND_TRACKING_PREFIX,
        )
        recorded = {row["name"].removeprefix(KIND_TRACKING_PREFIX) for row in rows}
        kept = recorded or (set(KINDS_BEFORE_TRACKING) if position > 0 else set())
        new = [kind for kind in self.registry.schedules if kind not in kept]
        if new and position > 0:
            await self._catch_up(conn, new, position)
        unrecorded = [kind for kind in self.registry.schedules if kind not in recorded]
        if unrecorded:
            await conn.executemany(
                f"INSERT INTO {self._s}.due_tracking (name, position) VALUES ($1, $2) "
                f"ON CONFLICT (name) DO NOTHING",
                [(KIND_TRACKING_PREFIX + kind, position) for kind in unrecorded],
            )
        self.ready = True
        log.info("scheduler_active", position=position)
        if new and position > 0 and self.on_added is not None:
            self.on_added()  # the sweep looks at once at what the catch-up found

    async def _catch_up(self, conn: asyncpg.Connection, kinds: list[str], through: int) -> None:
        """Builds the kinds' items from the events up to `through`, the model's position: the
        tailer follows on from there for every kind. Done again from 0 if interrupted (its
        kinds are recorded only after), which leaves the same rows."""
        started = time.monotonic()
        topics = self.registry.topics_of(kinds)
        after, read = 0, 0
        while rows := await events_of_topics(
            conn, self.schema, after, through, topics, self.batch_size_max
        ):
            await self._store(conn, self.changes_of(rows, kinds=set(kinds)), None)
            after, read = int(rows[-1][0]), read + len(rows)
        log.info(
            "due_times_caught_up",
            kinds=kinds,
            through=through,
            events=read,
            took_s=round(time.monotonic() - started, 3),
        )

    async def handle(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> int:
        """Applies what the batch's events do to due items, and records its position, in one
        transaction."""
        pending = self.changes_of(rows)
        last = int(rows[-1][0])
        await self._store(conn, pending, last)
        self.position = last
        if self.on_added is not None and any(p.due_at is not None for p in pending.values()):
            self.on_added()
        return last

    async def _store(
        self,
        conn: asyncpg.Connection,
        pending: dict[tuple[str, str, str], _Pending],
        position: int | None,
    ) -> None:
        """Writes the changes, and the model's position if given, in one transaction."""
        for attempt in range(DEADLOCK_RETRIES_MAX + 1):
            try:
                async with self.lock, conn.transaction():
                    await self._apply(conn, pending)
                    if position is not None:
                        await conn.execute(
                            f"INSERT INTO {self._s}.due_tracking (name, position) "
                            f"VALUES ($1, $2) "
                            f"ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
                            DUE_TRACKING_NAME,
                            position,
                        )
                return
            except asyncpg.DeadlockDetectedError:
                if attempt == DEADLOCK_RETRIES_MAX:
                    raise
                log.warning("due_times_deadlock", attempt=attempt)

    def changes_of(
        self, rows: list[asyncpg.Record], kinds: Collection[str] | None = None
    ) -> dict[tuple[str, str, str], _Pending]:
        """What the rows do to due items (of `kinds` only, if given), per item: its last
        setting and any clear after it. Only events of a schedule's topics are decoded."""
        by_topic = self.registry.schedules_by_topic
        pending: dict[tuple[str, str, str], _Pending] = {}
        for position, originator_id, version, topic, state in rows:
            schedules = [
                schedule
                for schedule in by_topic.get(topic, ())
                if kinds is None or schedule.kind in kinds
            ]
            if not schedules:
                continue
            event = event_of_row(self.mapper, originator_id, version, topic, state)
            for schedule in schedules:
                for change in schedule.changes(event):
                    key = (change.tenant_id, change.kind, change.key)
                    if change.due_at is not None:
                        assert len(change.detail) <= DUE_DETAIL_LENGTH_MAX, change
                        pending[key] = _Pending(
                            change.account_id, change.due_at, position, detail=change.detail
                        )
                    elif key in pending:
                        pending[key].cleared_at = position
                    else:
                        pending[key] = _Pending(change.account_id, None, position, position)
        return pending

    async def _apply(
        self, conn: asyncpg.Connection, pending: dict[tuple[str, str, str], _Pending]
    ) -> None:
        s = self._s
        keys = sorted(pending)  # one order for every writer of these rows
        added = [k for k in keys if pending[k].due_at is not None]
        cleared = [k for k in keys if pending[k].due_at is None]
        if added:
            await conn.execute(
                f"INSERT INTO {s}.due_items (tenant_id, kind, key, account_id, due_at, detail, "
                f"position, done_position, attempts, retry_at) "
                f"SELECT t, k, y, a, d, x, p, c, 0, d FROM unnest($1::text[], $2::text[], "
                f"$3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::bigint[], "
                f"$8::bigint[]) AS u(t, k, y, a, d, x, p, c) "
                f"ON CONFLICT (tenant_id, kind, key) DO UPDATE SET account_id = EXCLUDED.account_id, "
                f"due_at = EXCLUDED.due_at, detail = EXCLUDED.detail, position = EXCLUDED.position, "
                f"done_position = EXCLUDED.done_position, attempts = 0, retry_at = EXCLUDED.due_at",
                [k[0] for k in added],
                [k[1] for k in added],
                [k[2] for k in added],
                [pending[k].account_id for k in added],
                [pending[k].due_at for k in added],
                [pending[k].detail for k in added],
                [pending[k].position for k in added],
                [pending[k].cleared_at for k in added],
            )
        if cleared:
            await conn.execute(
                f"UPDATE {s}.due_items d SET done_position = "
                f"greatest(coalesce(d.done_position, 0), u.p) "
                f"FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(t, k, y, p) "
                f"WHERE d.tenant_id = u.t AND d.kind = u.k AND d.key = u.y",
                [k[0] for k in cleared],
                [k[1] for k in cleared],
                [k[2] for k in cleared],
                [pending[k].cleared_at for k in cleared],
            )


# ------------------------------------------------------------------- what the scheduler asks


async def due_now(
    conn: asyncpg.Connection, schema: str, now: datetime, limit: int
) -> list[DueItem]:
    """Items due by `now` (and past any retry wait), not yet done, earliest first."""
    rows = await conn.fetch(
        f'SELECT tenant_id, account_id, kind, key, due_at, detail FROM "{schema}".due_items '
        f"WHERE done_position IS NULL AND retry_at <= $1 ORDER BY retry_at LIMIT $2",
        now,
        limit,
    )
    return [DueItem(*row) for row in rows]


async def next_due_at(conn: asyncpg.Connection, schema: str) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        f'SELECT min(retry_at) FROM "{schema}".due_items WHERE done_position IS NULL'
    )
    return value


def _item_columns(items: list[DueItem]) -> list[list[Any]]:
    ordered = sorted(items, key=lambda i: (i.tenant_id, i.kind, i.key))
    return [
        [i.tenant_id for i in ordered],
        [i.kind for i in ordered],
        [i.key for i in ordered],
        [i.due_at for i in ordered],
    ]


async def mark_done(
    conn: asyncpg.Connection, schema: str, items: list[DueItem], position: int
) -> None:
    """The items' commands have committed, their events (if any) at or below `position`: each
    is done unless an event has since set it to another time."""
    await conn.execute(
        f'UPDATE "{schema}".due_items d SET done_position = '
        f"greatest(coalesce(d.done_position, 0), $5) "
        f"FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS u(t, k, y, d) "
        f"WHERE d.tenant_id = u.t AND d.kind = u.k AND d.key = u.y AND d.due_at = u.d",
        *_item_columns(items),
        position,
    )


async def mark_failed(
    conn: asyncpg.Connection,
    schema: str,
    items: list[DueItem],
    now: datetime,
    first_s: float,
    max_s: float,
) -> None:
    """The items' commands failed: each is tried again after a back-off that doubles from
    `first_s` to `max_s`."""
    await conn.execute(
        f'UPDATE "{schema}".due_items d SET attempts = d.attempts + 1, '
        f"retry_at = $5::timestamptz + "
        f"make_interval(secs => least($7::float8, $6::float8 * power(2, d.attempts))) "
        f"FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS u(t, k, y, d) "
        f"WHERE d.tenant_id = u.t AND d.kind = u.k AND d.key = u.y AND d.due_at = u.d",
        *_item_columns(items),
        now,
        first_s,
        max_s,
    )


async def purge_done(conn: asyncpg.Connection, schema: str) -> int:
    """Deletes the done items whose work the read models hold; returns how many."""
    s = f'"{schema}"'
    status: str = await conn.execute(
        f"DELETE FROM {s}.due_items WHERE done_position IS NOT NULL AND done_position <= "
        f"coalesce((SELECT position FROM {s}.rm_tracking WHERE name = $1), 0)",
        TRACKING_NAME,
    )
    return int(status.rsplit(" ", 1)[-1])


# ------------------------------------------------------------------------ the read rule


def _settled_sql(schema: str, *, account: bool) -> str:
    s = f'"{schema}"'
    scope = "tenant_id = $1 AND account_id = $2" if account else "tenant_id = $1"
    limit = "$3" if account else "$2"
    names = ("$4", "$5") if account else ("$3", "$4")
    kinds = "$6" if account else "$5"
    return (
        f"WITH t AS (SELECT clock_timestamp() AS now), "
        f"rm AS (SELECT coalesce((SELECT position FROM {s}.rm_tracking WHERE name = {names[0]}), 0) AS p), "
        f"due AS (SELECT coalesce((SELECT position FROM {s}.due_tracking WHERE name = {names[1]}), 0) AS p) "
        f"SELECT t.now, "
        f"EXISTS (SELECT 1 FROM {s}.due_items, rm WHERE {scope} AND due_at <= t.now "
        f"AND kind = ANY({kinds}::text[]) "
        f"AND (done_position IS NULL OR done_position > rm.p)) AS pending, "
        f"(SELECT count(*) > {limit} OR coalesce(bool_or((e.entry->>'expires_at')::timestamptz <= t.now), false) "
        f"FROM (SELECT entry FROM {s}.rm_entries, due WHERE {scope} AND position > due.p "
        f"ORDER BY position LIMIT {limit} + 1) e) AS unseen "
        f"FROM t"
    )


class ExpiryReads:
    """The read rule, on the API's pool, for the kinds of due item reads wait for."""

    def __init__(self, pool: asyncpg.Pool, schema: str, kinds: Sequence[str] | None = None) -> None:
        self.pool = pool
        self.kinds = list(REGISTRY.read_wait_kinds if kinds is None else kinds)
        self._account_sql = _settled_sql(schema, account=True)
        self._tenant_sql = _settled_sql(schema, account=False)

    async def check(self, tenant_id: str, account_id: str | None) -> tuple[datetime, bool]:
        """(the database's time, whether the read models show everything due by then)."""
        if account_id is None:
            row = await self.pool.fetchrow(
                self._tenant_sql,
                tenant_id,
                UNSEEN_ENTRIES_SCAN_MAX,
                TRACKING_NAME,
                DUE_TRACKING_NAME,
                self.kinds,
            )
        else:
            row = await self.pool.fetchrow(
                self._account_sql,
                tenant_id,
                account_id,
                UNSEEN_ENTRIES_SCAN_MAX,
                TRACKING_NAME,
                DUE_TRACKING_NAME,
                self.kinds,
            )
        assert row is not None
        return row["now"], not (row["pending"] or row["unseen"])

    async def settled(
        self,
        tenant_id: str,
        account_id: str | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> datetime:
        """Returns the read's time (the database's) once the read models show everything due
        by then for the account (or the tenant); UnavailableError past READ_EXPIRY_WAIT_MAX_S."""
        deadline = time.monotonic() + READ_EXPIRY_WAIT_MAX_S
        while True:
            try:
                now, settled = await self.check(tenant_id, account_id)
            except CONNECTION_ERRORS as error:
                log.warning("read_expiry_check_failed", error=str(error) or type(error).__name__)
                raise UnavailableError("the read models are unreachable; retry") from error
            if settled:
                return now
            if time.monotonic() > deadline:
                log.warning("read_waited_for_expiries", tenant_id=tenant_id, account_id=account_id)
                raise UnavailableError(
                    "credits due to expire by now are not recorded in the read models yet "
                    "(the scheduler is behind); retry"
                )
            await sleep(READ_EXPIRY_WAIT_POLL_S)

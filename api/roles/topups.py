"""`ledger topups`: the auto top-up watcher (ledger/topups/).

A consumer of the event store's tailer, like the relay. It keeps its own copy of every
policy (`ledger_topup_policies`, from the policies' events, with its position), so an entry
costs no query. For each entry that takes an
account's `available` from at or above its policy's `below` to below it, it sends
`RequestTopUp` with the idempotency key `topup:<position>`, so a batch handled again after a
crash asks nothing twice; the ledger decides (one open request per account, the monthly cap)
and records a `topup_requested` entry, which every channel then carries.

Retries: the watcher keeps each open request's next due time in its own table
(`ledger_topup_due`, written with its position in one transaction, from the
`topup_requested` and `purchase` entries it reads), and every TICK_S sends `RetryTopUp` for
those due (`topup-retry:<topup_id>:<attempt>`): the ledger asks again with the same topup_id,
or abandons it after TOPUP_ATTEMPTS_MAX requests. This is a due time of this area's own, to be
moved onto the scheduler's registry once it lands (docs/adr/0007).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import structlog
from eventsourcing.persistence import Mapper

from api.roles.embedded import database_url
from api.roles.signals import run_until_signalled
from api.settings import Settings
from events.low_balance import HOLD_ENDED_TYPES, crossed_below
from ledger.accounts.account import Account
from ledger.accounts.stored_entries import entries_of_rows, event_of_row
from ledger.commands import Command, Envelope
from ledger.errors import LedgerError, UnavailableError
from ledger.outcome import Outcome
from ledger.store.application import Ledger
from ledger.store.transcoder import new_mapper
from ledger.topups.commands import RequestTopUp, RetryTopUp
from ledger.topups.policy import TopUpPolicy, TopUpSettings
from ledger.topups.views import TopUpOutcome
from ledger.writer.writer import Writer
from projections.tailer import CONNECTION_ERRORS, Tailer, wait_any

log = structlog.get_logger("api.roles.topups")

# From a request to its retry, by attempt: 5 min, 15 min, 1 h; the request after the last is
# abandoned (ledger.topups.record.TOPUP_ATTEMPTS_MAX = 4).
RETRY_DELAYS_S: tuple[float, ...] = (300, 900, 3_600)
TICK_S = 5.0
DUE_PER_TICK_MAX = 100
BATCH_SIZE_MAX = 500
POLL_INTERVAL_S = 0.5
SUBMIT_BACKOFF_S = 1.0
DUE_TABLE = "ledger_topup_due"
POLICY_TABLE = "ledger_topup_policies"
POLICY_TOPIC_PREFIX = "ledger.topups:TopUpPolicy."
TRACKING_TABLE = "ledger_topup_tracking"
ADVISORY_LOCK_KEY = 0x6C656467_746F7075  # "ledg" "topu"

_settings_encoder = msgspec.json.Encoder()
_settings_decoder = msgspec.json.Decoder(TopUpSettings)

Submit = Callable[[Envelope[Command]], Awaitable[Outcome]]


class TopUpWatcher:
    name = "topups"
    lock_key = ADVISORY_LOCK_KEY
    # Every event: the policies' own events keep the watcher's copy of them (POLICY_TABLE, in
    # memory too), so deciding whether an entry crosses costs no query.
    accounts_only = False
    state_topics = None  # reads accounts and top-up records alike

    def __init__(
        self,
        url: str,
        schema: str,
        mapper: Mapper[UUID],
        submit: Submit,
        *,
        retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
        tick_s: float = TICK_S,
    ) -> None:
        self.schema = schema
        self.mapper = mapper
        self.submit = submit
        self.retry_delays_s = retry_delays_s
        self.tick_s = tick_s
        self.position = 0
        self.requested = 0
        self._s = f'"{schema}"'
        self._tailer = Tailer(url, schema, self)
        self._policies: dict[tuple[str, str], TopUpSettings] = {}
        self._policy_keys: dict[UUID, tuple[str, str]] = {}
        self._stop = asyncio.Event()

    @property
    def batch_size_max(self) -> int:
        return BATCH_SIZE_MAX

    @property
    def poll_interval_s(self) -> float:
        return POLL_INTERVAL_S

    def table_statements(self) -> list[str]:
        s = self._s
        return [
            f"""CREATE TABLE IF NOT EXISTS {s}.{DUE_TABLE} (
                tenant_id text NOT NULL,
                account_id text NOT NULL,
                topup_id text NOT NULL,
                attempt integer NOT NULL,
                due_at timestamptz NOT NULL,
                PRIMARY KEY (tenant_id, account_id)
            )""",
            f"CREATE INDEX IF NOT EXISTS {DUE_TABLE}_due ON {s}.{DUE_TABLE} (due_at)",
            f"CREATE TABLE IF NOT EXISTS {s}.{TRACKING_TABLE} "
            "(name text PRIMARY KEY, position bigint NOT NULL)",
            f"""CREATE TABLE IF NOT EXISTS {s}.{POLICY_TABLE} (
                policy_id uuid PRIMARY KEY,
                tenant_id text NOT NULL,
                account_id text NOT NULL,
                settings bytea NOT NULL
            )""",
        ]

    async def read_position(self, conn: asyncpg.Connection) -> int:
        value = await conn.fetchval(
            f"SELECT position FROM {self._s}.{TRACKING_TABLE} WHERE name = 'topups'"
        )
        return int(value or 0)

    async def activate(self, conn: asyncpg.Connection, position: int) -> None:
        self.position = position
        self._policies.clear()
        self._policy_keys.clear()
        for row in await conn.fetch(
            f"SELECT policy_id, tenant_id, account_id, settings FROM {self._s}.{POLICY_TABLE}"
        ):
            key = (row["tenant_id"], row["account_id"])
            self._policy_keys[row["policy_id"]] = key
            self._policies[key] = _settings_decoder.decode(bytes(row["settings"]))
        log.info("topups_active", position=position, policies=len(self._policies))

    def retry_delay_s(self, attempt: int) -> float:
        return self.retry_delays_s[min(attempt, len(self.retry_delays_s)) - 1]

    def _policy_changes(self, rows: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
        """The policies' events among the rows, applied to the copy in memory; the rows of
        POLICY_TABLE they change."""
        changed: list[tuple[Any, ...]] = []
        for _, originator_id, version, topic, state in rows:
            if not topic.startswith(POLICY_TOPIC_PREFIX):
                continue
            event = event_of_row(self.mapper, originator_id, version, topic, state)
            if isinstance(event, TopUpPolicy.Created):
                self._policy_keys[originator_id] = (event.tenant_id, event.account_id)
            key = self._policy_keys.get(originator_id)
            settings = getattr(event, "settings", None)
            if key is None or not isinstance(settings, TopUpSettings):
                continue
            self._policies[key] = settings
            changed.append((originator_id, key[0], key[1], _settings_encoder.encode(settings)))
        return changed

    async def handle(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> int:
        last = int(rows[-1][0])
        policies = self._policy_changes(rows)
        due: list[tuple[str, str, str, int, Any]] = []
        done: list[tuple[str, str]] = []
        rows_at: dict[int, Any] = {}
        # No policy anywhere: no entry can cross one, nor be a top-up request (policies are
        # never removed, only disabled), so the batch is not even decoded.
        decoded = entries_of_rows(self.mapper, rows) if self._policies else []
        for tenant_id, entry in decoded:
            account_id = entry.account_id
            if entry.type == Account.TopUpRequested.entry_type and entry.metadata:
                attempt = int(entry.metadata["attempt"])
                at = entry.recorded_at + timedelta(seconds=self.retry_delay_s(attempt))
                due.append((tenant_id, account_id, str(entry.metadata["topup_id"]), attempt, at))
            elif entry.type == Account.CreditsPurchased.entry_type:
                done.append((tenant_id, account_id))
            if entry.type in HOLD_ENDED_TYPES or (entry.amount == 0 and entry.type != "hold"):
                continue  # `available` cannot fall
            settings = self._policy(tenant_id, account_id)
            if settings is None or not settings.enabled:
                continue
            crossing: Any = entry
            if entry.type == Account.HoldPlaced.entry_type:
                rows_at = rows_at or {int(row[0]): row for row in rows}
                crossing = event_of_row(self.mapper, *rows_at[entry.position][1:])
            if crossed_below(crossing, settings.below):
                command = RequestTopUp(
                    account_id=account_id,
                    position=entry.position,
                    idempotency_key=f"topup:{entry.position}",
                )
                if await self._submitted(Envelope(tenant_id=tenant_id, command=command)) is None:
                    return self.position  # stopped: this batch is handled again next time
                self.requested += 1
        async with conn.transaction():
            if policies:
                await conn.executemany(
                    f"INSERT INTO {self._s}.{POLICY_TABLE} (policy_id, tenant_id, account_id, "
                    "settings) VALUES ($1, $2, $3, $4) ON CONFLICT (policy_id) DO UPDATE SET "
                    "settings = EXCLUDED.settings",
                    policies,
                )
            for tenant_id, account_id in done:
                await conn.execute(
                    f"DELETE FROM {self._s}.{DUE_TABLE} WHERE tenant_id = $1 AND account_id = $2",
                    tenant_id,
                    account_id,
                )
            if due:
                await conn.executemany(
                    f"INSERT INTO {self._s}.{DUE_TABLE} (tenant_id, account_id, topup_id, attempt, "
                    "due_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, account_id) DO "
                    "UPDATE SET topup_id = EXCLUDED.topup_id, attempt = EXCLUDED.attempt, "
                    "due_at = EXCLUDED.due_at",
                    due,
                )
            await conn.execute(
                f"INSERT INTO {self._s}.{TRACKING_TABLE} (name, position) VALUES ('topups', $1) "
                "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
                last,
            )
        self.position = last
        return last

    def _policy(self, tenant_id: str, account_id: str) -> TopUpSettings | None:
        """The account's own policy, else the tenant's default."""
        own = self._policies.get((tenant_id, account_id))
        return own if own is not None else self._policies.get((tenant_id, ""))

    async def _submitted(self, envelope: Envelope[Command]) -> Outcome | None:
        """The command's outcome, sent again while the ledger is unavailable; None once
        stopped. A refusal is logged (the ledger decided) and answered as None too."""
        while not self._stop.is_set():
            try:
                return await self.submit(envelope)
            except UnavailableError as error:
                log.warning("topup_submit_unavailable", detail=error.detail)
                await wait_any(self._stop, None, SUBMIT_BACKOFF_S)
            except LedgerError as error:
                log.warning(
                    "topup_command_refused",
                    op=type(envelope.command).__name__,
                    code=error.code,
                    detail=error.detail,
                )
                return None
        return None

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        ticker = asyncio.create_task(self._tick_loop(stop))
        try:
            await self._tailer.run(stop)
        finally:
            stop.set()
            await ticker

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection | None = None
        while not stop.is_set():
            await wait_any(stop, None, self.tick_s)
            if stop.is_set() or not self._tailer.active:
                continue
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self._tailer.database_url)
                await self.retry_due(conn)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as error:
                log.warning("topup_retries_failed", error=str(error) or type(error).__name__)
                conn = None
        if conn is not None and not conn.is_closed():
            await conn.close()

    async def retry_due(self, conn: asyncpg.Connection) -> int:
        """Sends the retries that are due; how many."""
        rows = await conn.fetch(
            f"SELECT tenant_id, account_id, topup_id, attempt FROM {self._s}.{DUE_TABLE} "
            "WHERE due_at <= now() ORDER BY due_at LIMIT $1",
            DUE_PER_TICK_MAX,
        )
        for row in rows:
            attempt = int(row["attempt"]) + 1
            command = RetryTopUp(
                account_id=row["account_id"],
                topup_id=row["topup_id"],
                attempt=attempt,
                idempotency_key=f"topup-retry:{row['topup_id']}:{attempt}",
            )
            outcome = await self._submitted(Envelope(tenant_id=row["tenant_id"], command=command))
            status = (
                outcome.value.status
                if outcome and isinstance(outcome.value, TopUpOutcome)
                else None
            )
            if status in ("abandoned", "closed") or outcome is None:
                await conn.execute(
                    f"DELETE FROM {self._s}.{DUE_TABLE} WHERE tenant_id = $1 AND account_id = $2 "
                    "AND topup_id = $3",
                    row["tenant_id"],
                    row["account_id"],
                    row["topup_id"],
                )
            else:  # its topup_requested entry sets the next due time; until then, not again
                await conn.execute(
                    f"UPDATE {self._s}.{DUE_TABLE} SET due_at = now() + make_interval(secs => $3) "
                    "WHERE tenant_id = $1 AND account_id = $2",
                    row["tenant_id"],
                    row["account_id"],
                    self.retry_delay_s(attempt),
                )
        return len(rows)


async def run_topups(settings: Settings) -> None:
    """The watcher alone, with a writer of its own on the same store (as a replica has)."""
    url = database_url(settings)
    ledger = await asyncio.to_thread(Ledger, url, settings.schema)
    writer = Writer(ledger)
    writer.start()
    try:
        watcher = TopUpWatcher(url, settings.schema, new_mapper(), writer.submit)
        await run_until_signalled(watcher.run)
    finally:
        await writer.stop()
        await asyncio.to_thread(ledger.close)

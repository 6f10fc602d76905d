"""`ledger topups`: the auto top-up watcher (ledger/topups/).

A consumer of the event store's tailer, like the relay: it detects crossings, and only that.
It keeps its own copy of every policy (`ledger_topup_policies`, from the policies' events, with
its position), so an entry costs no query. For each entry that takes an account's `available`
from at or above its policy's `below` to below it, it sends `RequestTopUp` with the idempotency
key `topup:<position>`, so a batch handled again after a crash asks nothing twice; the ledger
decides (one open request per account, the monthly cap) and records a `topup_requested` entry,
which every channel then carries.

Retries are not the watcher's: that entry makes the request's retry a due item of the
scheduler (ledger/topups/schedules.py, docs/adr/0007), which sends `RetryTopUp` on time under
a deterministic key until the purchase that follows closes the request or the last attempt
gives it up. A `ledger_topup_due` table left by an earlier version (whose watcher kept the
retries' due times itself) is read by nothing: the scheduler's due model finds those retries
in the event store (docs/reliability.md, "Upgrading").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
from ledger.topups.commands import RequestTopUp
from ledger.topups.policy import TopUpPolicy, TopUpSettings
from ledger.writer.writer import Writer
from projections.tailer import Tailer, wait_any

log = structlog.get_logger("api.roles.topups")

# Stored events read per batch, and the back-up poll should a NOTIFY be missed.
BATCH_SIZE_MAX = 500
POLL_INTERVAL_S = 0.5
# While the ledger is unavailable, a request is sent again this often (never dropped).
SUBMIT_BACKOFF_S = 1.0
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
    state_topics = None  # reads accounts' and policies' events alike

    def __init__(self, url: str, schema: str, mapper: Mapper[UUID], submit: Submit) -> None:
        self.schema = schema
        self.mapper = mapper
        self.submit = submit
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
        rows_at: dict[int, Any] = {}
        # No policy anywhere: no entry can cross one (policies are never removed, only
        # disabled), so the batch is not even decoded.
        decoded = entries_of_rows(self.mapper, rows) if self._policies else []
        for tenant_id, entry in decoded:
            account_id = entry.account_id
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
        await self._tailer.run(stop)


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

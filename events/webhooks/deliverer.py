"""The deliverer: every ledger message to each tenant's webhook endpoints (docs/adr/0009).

Like the relay it is a consumer of the event store's tailer (projections/tailer.py), handed the
Account's events after its stored position. For each batch it writes one delivery row per
message and subscribed endpoint and stores its position, in one transaction: a message is
queued exactly once whatever happens to the process. A sender loop (running only while this
deliverer holds the lock) then POSTs what is due, oldest first, one message at a time per
(endpoint, account), so each account's messages arrive in ledger order; an attempt's outcome
and the delivery's next due time are written after it returns, so a kill -9 mid-attempt sends
that message again (at least once: receivers dedupe by `webhook-id`).

Retries follow RETRY_SCHEDULE_S (about 24 h in all); then the delivery is `failed` and the next
message of that account goes. An endpoint that has failed every attempt for DISABLE_AFTER_S and
at least DISABLE_AFTER_FAILURES times is disabled: nothing more is queued or sent to it until it
is enabled again (its pending deliveries then resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import h11
import structlog
from eventsourcing.persistence import Mapper

from events.low_balance import HOLD_ENDED_TYPES, crossed_below
from events.webhooks import store
from events.webhooks.http_client import Rules, UrlRefusedError, post
from events.webhooks.messages import WebhookMessage, of_entry, of_low_balance, subscribed
from events.webhooks.signing import webhook_headers
from ledger.accounts.account import Account
from ledger.accounts.stored_entries import entries_of_rows, event_of_row
from ledger.ids import tenant_aggregate_id
from ledger.store.sealed import SealError, SecretBox
from ledger.tenants.tenant import Tenant
from projections.tailer import CONNECTION_ERRORS, Tailer, wait_any

log = structlog.get_logger("events.webhooks")

# Seconds from a failed attempt to the next: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h,
# 8 h, 8 h: eleven attempts over 23.7 h, then the delivery is failed.
RETRY_SCHEDULE_S: tuple[float, ...] = (5, 30, 120, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 28_800)
# An endpoint failing this long, and this many attempts in a row, is disabled.
DISABLE_AFTER_S = 24 * 3600.0
DISABLE_AFTER_FAILURES = 10
# Attempts in flight at once (each to a different endpoint and account).
SEND_CONCURRENCY_MAX = 16
# Account events queued per transaction.
BATCH_SIZE_MAX = 256
POLL_INTERVAL_S = 0.5
# How long the sender waits at most before looking for due deliveries again.
SENDER_IDLE_S = 1.0
SENDER_BACKOFF_S = 1.0
# Endpoints and thresholds are re-read at least this often.
CACHE_TTL_S = 1.0
POOL_SIZE_MAX = 4
ADVISORY_LOCK_KEY = 0x6C656467_77656268  # "ledg" "webh"


class Deliverer:
    name = "webhooks"
    lock_key = ADVISORY_LOCK_KEY
    accounts_only = True
    state_topics = None  # delivers every Account event

    def __init__(
        self,
        database_url: str,
        schema: str,
        mapper: Mapper[UUID],
        box: SecretBox,
        rules: Rules,
        *,
        retry_schedule_s: tuple[float, ...] = RETRY_SCHEDULE_S,
        disable_after_s: float = DISABLE_AFTER_S,
        disable_after_failures: int = DISABLE_AFTER_FAILURES,
        send_concurrency: int = SEND_CONCURRENCY_MAX,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.mapper = mapper
        self.box = box
        self.rules = rules
        self.retry_schedule_s = retry_schedule_s
        self.disable_after_s = disable_after_s
        self.disable_after_failures = disable_after_failures
        self.send_concurrency = send_concurrency
        self.position = 0
        self.queued = 0
        self.attempted = 0
        self._s = f'"{schema}"'
        self._tailer = Tailer(database_url, schema, self)
        self._wake = asyncio.Event()
        self._endpoints: dict[str, tuple[float, list[tuple[str, list[str]]]]] = {}
        self._thresholds: dict[str, tuple[float, int | None]] = {}
        self._any = False
        self._any_checked_at = -CACHE_TTL_S

    @property
    def active(self) -> bool:
        return self._tailer.active

    @property
    def batch_size_max(self) -> int:
        return BATCH_SIZE_MAX

    @property
    def poll_interval_s(self) -> float:
        return POLL_INTERVAL_S

    def table_statements(self) -> list[str]:
        return store.table_statements(self.schema)

    async def read_position(self, conn: asyncpg.Connection) -> int:
        value = await conn.fetchval(
            f"SELECT position FROM {self._s}.{store.TRACKING} WHERE name = $1",
            store.TRACKING_NAME,
        )
        return int(value or 0)

    async def activate(self, conn: asyncpg.Connection, position: int) -> None:
        self.position = position
        self._wake.set()
        log.info("webhooks_active", position=position)

    # ------------------------------------------------------------------ queueing

    async def handle(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> int:
        """Queues the batch's messages for their endpoints and stores the position, together."""
        last = int(rows[-1][0])
        queued = []
        messages = await self.messages_of(conn, rows) if await self._any_endpoint(conn) else []
        for message in messages:
            for endpoint_id, patterns in await self._endpoints_of(conn, message.tenant_id):
                if subscribed(patterns, message.type):
                    queued.append(
                        (
                            endpoint_id,
                            message.tenant_id,
                            message.account_id,
                            message.message_id,
                            message.type,
                            message.position,
                            message.body,
                        )
                    )
        async with conn.transaction():
            if queued:
                await conn.executemany(
                    f"INSERT INTO {self._s}.{store.DELIVERIES} (endpoint_id, tenant_id, "
                    "account_id, message_id, type, position, payload) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    queued,
                )
            await conn.execute(
                f"INSERT INTO {self._s}.{store.TRACKING} (name, position) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
                store.TRACKING_NAME,
                last,
            )
        self.position = last
        self.queued += len(queued)
        if queued:
            self._wake.set()
        return last

    async def messages_of(
        self, conn: asyncpg.Connection, rows: list[asyncpg.Record]
    ) -> list[WebhookMessage]:
        """Each entry's message, then its low-balance message when it takes `available` below
        the tenant's threshold: what the relay publishes, in the same order."""
        messages: list[WebhookMessage] = []
        rows_at: dict[int, Any] = {}
        for tenant_id, entry in entries_of_rows(self.mapper, rows):
            if not await self._endpoints_of(conn, tenant_id):
                continue
            messages.append(of_entry(tenant_id, entry))
            threshold = await self._threshold(conn, tenant_id)
            if threshold is None or entry.type in HOLD_ENDED_TYPES:
                continue
            crossing: Any = entry
            if entry.type == Account.HoldPlaced.entry_type:
                rows_at = rows_at or {int(row[0]): row for row in rows}
                crossing = event_of_row(self.mapper, *rows_at[entry.position][1:])
            if crossed_below(crossing, threshold):
                messages.append(of_low_balance(tenant_id, entry, threshold))
        return messages

    async def _any_endpoint(self, conn: asyncpg.Connection) -> bool:
        """Whether any tenant has an enabled endpoint (else a batch is not even decoded)."""
        now = time.monotonic()
        if now - self._any_checked_at >= CACHE_TTL_S:
            self._any = bool(
                await conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {self._s}.{store.ENDPOINTS} WHERE enabled)"
                )
            )
            self._any_checked_at = now
        return self._any

    async def _endpoints_of(
        self, conn: asyncpg.Connection, tenant_id: str
    ) -> list[tuple[str, list[str]]]:
        cached = self._endpoints.get(tenant_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CACHE_TTL_S:
            return cached[1]
        rows = await conn.fetch(
            f"SELECT endpoint_id, event_types FROM {self._s}.{store.ENDPOINTS} "
            "WHERE tenant_id = $1 AND enabled ORDER BY created_at",
            tenant_id,
        )
        endpoints = [(row["endpoint_id"], list(row["event_types"])) for row in rows]
        self._endpoints[tenant_id] = (now, endpoints)
        return endpoints

    async def _threshold(self, conn: asyncpg.Connection, tenant_id: str) -> int | None:
        cached = self._thresholds.get(tenant_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CACHE_TTL_S:
            return cached[1]
        tenant: Any = None
        for row in await self._tailer.aggregate_events(conn, tenant_aggregate_id(tenant_id)):
            tenant = event_of_row(self.mapper, *row).mutate(tenant)
        threshold = tenant.settings.low_balance_threshold if isinstance(tenant, Tenant) else None
        self._thresholds[tenant_id] = (now, threshold)
        return threshold

    # ------------------------------------------------------------------- running

    async def run(self, stop: asyncio.Event) -> None:
        """Tails and sends until `stop` is set (standby while another deliverer is active)."""
        sender = asyncio.create_task(self._send_loop(stop))
        try:
            await self._tailer.run(stop)
        finally:
            stop.set()
            await sender

    async def _send_loop(self, stop: asyncio.Event) -> None:
        pool: asyncpg.Pool | None = None
        try:
            while not stop.is_set():
                if not self._tailer.active:
                    await wait_any(self._wake, stop, SENDER_IDLE_S)
                    continue
                try:
                    if pool is None:
                        pool = await asyncpg.create_pool(
                            self.database_url, min_size=1, max_size=POOL_SIZE_MAX
                        )
                    self._wake.clear()
                    sent = await self._send_due(pool)
                except (*CONNECTION_ERRORS, asyncpg.PostgresError) as error:
                    log.warning("webhooks_sender_failed", error=str(error) or type(error).__name__)
                    await wait_any(stop, None, SENDER_BACKOFF_S)
                    continue
                if not sent:
                    await wait_any(self._wake, stop, SENDER_IDLE_S)
        finally:
            if pool is not None:
                with contextlib.suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
                    await asyncio.wait_for(pool.close(), timeout=5)

    async def _send_due(self, pool: asyncpg.Pool) -> int:
        """One attempt at the oldest pending delivery of each (endpoint, account) that is due;
        how many it made."""
        heads = await pool.fetch(
            f"""SELECT h.delivery_id, h.message_id, h.payload, h.attempts, h.endpoint_id,
                       e.url, e.sealed_secret
                FROM (SELECT DISTINCT ON (endpoint_id, account_id)
                             delivery_id, endpoint_id, message_id, payload, attempts, due_at
                      FROM {self._s}.{store.DELIVERIES} WHERE status = 'pending'
                      ORDER BY endpoint_id, account_id, delivery_id) h
                JOIN {self._s}.{store.ENDPOINTS} e ON e.endpoint_id = h.endpoint_id
                WHERE e.enabled AND h.due_at <= now()
                ORDER BY h.due_at, h.delivery_id LIMIT $1""",
            self.send_concurrency,
        )
        await asyncio.gather(*(self._attempt(pool, head) for head in heads))
        return len(heads)

    async def _attempt(self, pool: asyncpg.Pool, head: asyncpg.Record) -> None:
        body = bytes(head["payload"])
        status: int | None = None
        answer = b""
        error: str | None = None
        started = time.monotonic()
        try:
            secret = self.box.unseal(head["sealed_secret"])
            headers = webhook_headers(secret, head["message_id"], int(time.time()), body)
            result = await post(head["url"], body, headers, self.rules)
            status, answer = result.status, result.body
            if not 200 <= status < 300:
                error = f"answered {status}" + (
                    " (redirects are not followed)" if 300 <= status < 400 else ""
                )
        except UrlRefusedError as refused:
            error = f"refused: {refused}"
        except SealError as sealed:
            error = str(sealed)
        except TimeoutError:
            error = "no answer within the response timeout"
        except (OSError, h11.ProtocolError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        duration_ms = int((time.monotonic() - started) * 1000)
        self.attempted += 1
        await self._record(pool, head, status, answer, error, duration_ms)

    async def _record(
        self,
        pool: asyncpg.Pool,
        head: asyncpg.Record,
        status: int | None,
        answer: bytes,
        error: str | None,
        duration_ms: int,
    ) -> None:
        attempt = int(head["attempts"]) + 1
        delivery_id, endpoint_id = head["delivery_id"], head["endpoint_id"]
        s = self._s
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {s}.{store.ATTEMPTS} (delivery_id, attempt, status, error, "
                "duration_ms, answer) VALUES ($1, $2, $3, $4, $5, $6)",
                delivery_id,
                attempt,
                status,
                None if error is None else error[: store.LOGGED_ERROR_LENGTH_MAX],
                duration_ms,
                answer[: store.LOGGED_ANSWER_BYTES_MAX].decode("utf-8", "replace"),
            )
            if error is None:
                await conn.execute(
                    f"UPDATE {s}.{store.DELIVERIES} SET status = 'delivered', attempts = $2, "
                    "delivered_at = now(), last_status = $3, last_error = NULL "
                    "WHERE delivery_id = $1",
                    delivery_id,
                    attempt,
                    status,
                )
                await conn.execute(
                    f"UPDATE {s}.{store.ENDPOINTS} SET consecutive_failures = 0, "
                    "failing_since = NULL WHERE endpoint_id = $1 AND consecutive_failures > 0",
                    endpoint_id,
                )
                return
            retry_index = attempt - 1
            gave_up = retry_index >= len(self.retry_schedule_s)
            delay_s = 0.0 if gave_up else self.retry_schedule_s[retry_index]
            await conn.execute(
                f"UPDATE {s}.{store.DELIVERIES} SET status = $2, attempts = $3, "
                "due_at = now() + make_interval(secs => $4), last_status = $5, last_error = $6 "
                "WHERE delivery_id = $1",
                delivery_id,
                "failed" if gave_up else "pending",
                attempt,
                delay_s,
                status,
                error,
            )
            failing = await conn.fetchrow(
                f"UPDATE {s}.{store.ENDPOINTS} SET consecutive_failures = consecutive_failures + 1, "
                "failing_since = coalesce(failing_since, now()) WHERE endpoint_id = $1 "
                "RETURNING consecutive_failures, now() - failing_since AS failing_for",
                endpoint_id,
            )
            if (
                failing is not None
                and failing["consecutive_failures"] >= self.disable_after_failures
                and failing["failing_for"] >= timedelta(seconds=self.disable_after_s)
            ):
                await conn.execute(
                    f"UPDATE {s}.{store.ENDPOINTS} SET enabled = false, disabled_reason = $2, "
                    "updated_at = now() WHERE endpoint_id = $1",
                    endpoint_id,
                    f"every attempt failed for {failing['failing_for']} "
                    f"({failing['consecutive_failures']} in a row); last: {error}",
                )
                log.warning("webhook_endpoint_disabled", endpoint_id=endpoint_id, error=error)
        log.info(
            "webhook_attempt_failed",
            delivery_id=delivery_id,
            endpoint_id=endpoint_id,
            attempt=attempt,
            error=error,
            gave_up=gave_up,
        )

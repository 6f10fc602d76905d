"""Payment providers' side of the ledger, beside the event store: each tenant's sealed webhook
signing secrets, and the inbox of every provider event received.

The inbox keeps each event raw, as it arrived (the exact bytes the signature covered), under
(tenant, provider, event id): a redelivery finds its row and is not applied twice. A row is
written before the event is applied and marked after: `received` (not yet applied: a crash in
between leaves it so, and the provider's retry applies it), `applied`, `ignored` (a type the
ledger does not act on) or `failed` (it cannot be applied as it is; the detail says why).
Rows are kept for as long as the ledger (they are the record of what each provider said).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from api.http.problems import ApiError
from ledger.errors import LimitExceededError
from ledger.ids import new_id
from ledger.store.sealed import SecretBox
from projections.ddl_lock import run_ddl

SECRETS_TABLE = "ledger_webhook_secrets"
INBOX_TABLE = "ledger_payment_inbox"
# Signing secrets per tenant and provider: the current one and those being rotated out.
WEBHOOK_SECRETS_MAX = 5
# A secret's length: Stripe's are "whsec_" and some 32 characters.
WEBHOOK_SECRET_LENGTH_MAX = 256
# Inbox rows per page (default and most).
INBOX_PAGE_DEFAULT = 100
INBOX_PAGE_MAX = 1_000
# Characters of an inbox row's failure detail kept.
DETAIL_LENGTH_MAX = 1_000


class WebhookSecretView(msgspec.Struct, frozen=True, kw_only=True):
    secret_id: str
    provider: str
    hint: str  # the last 4 characters, to tell secrets apart
    created_at: datetime


class InboxEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    seq: int
    provider: str
    event_id: str
    type: str
    status: str
    received_at: datetime
    payload: msgspec.Raw
    applied_at: datetime | None = None
    detail: str | None = None
    payment_ref: str | None = None
    account_id: str | None = None
    position: int | None = None


class InboxPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[InboxEvent]
    next_after: int | None


class PaymentStore:
    def __init__(self, pool: asyncpg.Pool, schema: str, box: SecretBox | None) -> None:
        self.pool = pool
        self.schema = schema
        self.box = box
        self._s = f'"{schema}"'

    def table_statements(self) -> list[str]:
        s = self._s
        return [
            f"""CREATE TABLE IF NOT EXISTS {s}.{SECRETS_TABLE} (
                tenant_id text NOT NULL,
                provider text NOT NULL,
                secret_id text NOT NULL,
                sealed bytea NOT NULL,
                hint text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (tenant_id, provider, secret_id)
            )""",
            f"""CREATE TABLE IF NOT EXISTS {s}.{INBOX_TABLE} (
                seq bigserial UNIQUE,
                tenant_id text NOT NULL,
                provider text NOT NULL,
                event_id text NOT NULL,
                type text NOT NULL,
                payload bytea NOT NULL,
                status text NOT NULL,
                received_at timestamptz NOT NULL DEFAULT now(),
                applied_at timestamptz,
                detail text,
                payment_ref text,
                account_id text,
                position bigint,
                PRIMARY KEY (tenant_id, provider, event_id)
            )""",
            f"CREATE INDEX IF NOT EXISTS {INBOX_TABLE}_tenant ON {s}.{INBOX_TABLE} "
            "(tenant_id, seq)",
        ]

    async def create_tables(self) -> None:
        async with self.pool.acquire() as conn:
            await run_ddl(conn, self.schema, self.table_statements())

    def _box(self) -> SecretBox:
        if self.box is None:
            raise ApiError("unavailable", "LEDGER_SECRET_KEY is not set on this replica")
        return self.box

    # ------------------------------------------------------------------ secrets

    async def add_secret(self, tenant_id: str, provider: str, secret: str) -> WebhookSecretView:
        sealed = self._box().seal(secret)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", tenant_id, provider
            )
            count = await conn.fetchval(
                f"SELECT count(*) FROM {self._s}.{SECRETS_TABLE} "
                "WHERE tenant_id = $1 AND provider = $2",
                tenant_id,
                provider,
            )
            if count >= WEBHOOK_SECRETS_MAX:
                raise LimitExceededError(
                    f"a tenant keeps at most {WEBHOOK_SECRETS_MAX} {provider} secrets: "
                    "delete the retired one first"
                )
            row = await conn.fetchrow(
                f"INSERT INTO {self._s}.{SECRETS_TABLE} "
                "(tenant_id, provider, secret_id, sealed, hint) VALUES ($1, $2, $3, $4, $5) "
                "RETURNING secret_id, provider, hint, created_at",
                tenant_id,
                provider,
                new_id(),
                sealed,
                secret[-4:],
            )
        return WebhookSecretView(**dict(row))

    async def list_secrets(self, tenant_id: str, provider: str) -> list[WebhookSecretView]:
        rows = await self.pool.fetch(
            f"SELECT secret_id, provider, hint, created_at FROM {self._s}.{SECRETS_TABLE} "
            "WHERE tenant_id = $1 AND provider = $2 ORDER BY created_at",
            tenant_id,
            provider,
        )
        return [WebhookSecretView(**dict(row)) for row in rows]

    async def delete_secret(self, tenant_id: str, provider: str, secret_id: str) -> bool:
        status = await self.pool.execute(
            f"DELETE FROM {self._s}.{SECRETS_TABLE} "
            "WHERE tenant_id = $1 AND provider = $2 AND secret_id = $3",
            tenant_id,
            provider,
            secret_id,
        )
        return bool(status.endswith(" 1"))

    async def secrets(self, tenant_id: str, provider: str) -> list[str]:
        """The tenant's secrets, unsealed (none can have been added without a key)."""
        if self.box is None:
            return []
        rows = await self.pool.fetch(
            f"SELECT sealed FROM {self._s}.{SECRETS_TABLE} WHERE tenant_id = $1 AND provider = $2",
            tenant_id,
            provider,
        )
        box = self._box()
        return [box.unseal(row["sealed"]) for row in rows]

    # -------------------------------------------------------------------- inbox

    async def receive(
        self, tenant_id: str, provider: str, event_id: str, event_type: str, payload: bytes
    ) -> str | None:
        """Keeps the event raw; None when it is new, else the status of the row already kept
        (a redelivery)."""
        inserted = await self.pool.fetchval(
            f"INSERT INTO {self._s}.{INBOX_TABLE} "
            "(tenant_id, provider, event_id, type, payload, status) "
            "VALUES ($1, $2, $3, $4, $5, 'received') ON CONFLICT DO NOTHING RETURNING seq",
            tenant_id,
            provider,
            event_id,
            event_type,
            payload,
        )
        if inserted is not None:
            return None
        status: str = await self.pool.fetchval(
            f"SELECT status FROM {self._s}.{INBOX_TABLE} "
            "WHERE tenant_id = $1 AND provider = $2 AND event_id = $3",
            tenant_id,
            provider,
            event_id,
        )
        return status

    async def finish(
        self,
        tenant_id: str,
        provider: str,
        event_id: str,
        status: str,
        *,
        detail: str | None = None,
        payment_ref: str | None = None,
        account_id: str | None = None,
        position: int | None = None,
    ) -> None:
        await self.pool.execute(
            f"UPDATE {self._s}.{INBOX_TABLE} SET status = $4, applied_at = now(), detail = $5, "
            "payment_ref = $6, account_id = $7, position = $8 "
            "WHERE tenant_id = $1 AND provider = $2 AND event_id = $3",
            tenant_id,
            provider,
            event_id,
            status,
            None if detail is None else detail[:DETAIL_LENGTH_MAX],
            payment_ref,
            account_id,
            position,
        )

    async def events(self, tenant_id: str, after: int, limit: int) -> InboxPage:
        rows = await self.pool.fetch(
            f"SELECT seq, provider, event_id, type, status, received_at, payload, applied_at, "
            f"detail, payment_ref, account_id, position FROM {self._s}.{INBOX_TABLE} "
            "WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            tenant_id,
            after,
            limit,
        )
        items = [_inbox_event(dict(row)) for row in rows]
        next_after = items[-1].seq if len(items) == limit else None
        return InboxPage(items=items, next_after=next_after)


def _inbox_event(row: dict[str, Any]) -> InboxEvent:
    row["payload"] = msgspec.Raw(bytes(row["payload"]))
    return InboxEvent(**{key: value for key, value in row.items() if value is not None})

"""A tenant's webhook endpoints, as the API manages them: create (the signing secret shown
once), list, read, change, enable again, delete; each one's delivery log, and a redelivery."""

from __future__ import annotations

import asyncpg

from events.webhooks import store
from events.webhooks.http_client import Rules, UrlRefusedError, check_url
from events.webhooks.signing import new_endpoint_secret
from ledger.errors import (
    InvalidCommandError,
    LimitExceededError,
    NotFoundError,
    UnavailableError,
)
from ledger.ids import new_id
from ledger.store.sealed import SecretBox
from projections.ddl_lock import run_ddl

EVENT_TYPE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.*")


def check_event_types(event_types: list[str]) -> list[str]:
    if len(event_types) > store.EVENT_TYPES_PER_ENDPOINT_MAX:
        raise InvalidCommandError(
            f"an endpoint subscribes to at most {store.EVENT_TYPES_PER_ENDPOINT_MAX} event types"
        )
    for event_type in event_types:
        if not 1 <= len(event_type) <= store.EVENT_TYPE_LENGTH_MAX or not set(event_type) <= (
            EVENT_TYPE_CHARACTERS
        ):
            raise InvalidCommandError(
                f"event type {event_type!r} must be 1-{store.EVENT_TYPE_LENGTH_MAX} of a-z, 0-9, "
                "_ . and * (entry.consume, entry.*, low_balance, topup.requested, *)"
            )
    return sorted(set(event_types))


def check_description(description: str) -> str:
    if len(description) > store.DESCRIPTION_LENGTH_MAX or not description.isprintable():
        raise InvalidCommandError(
            f"description must be at most {store.DESCRIPTION_LENGTH_MAX} printable characters"
        )
    return description


def checked_url(url: str, rules: Rules) -> str:
    try:
        check_url(url, rules)
    except UrlRefusedError as error:
        raise InvalidCommandError(f"url refused: {error}") from error
    return url


class WebhookEndpoints:
    def __init__(
        self, pool: asyncpg.Pool, schema: str, box: SecretBox | None, rules: Rules
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.box = box
        self.rules = rules
        self._s = f'"{schema}"'

    async def create_tables(self) -> None:
        async with self.pool.acquire() as conn:
            await run_ddl(conn, self.schema, store.table_statements(self.schema))

    def _sealing(self) -> SecretBox:
        if self.box is None:
            raise UnavailableError("LEDGER_SECRET_KEY is not set on this replica")
        return self.box

    async def create(
        self, tenant_id: str, url: str, event_types: list[str], description: str
    ) -> store.EndpointView:
        checked_url(url, self.rules)
        types = check_event_types(event_types)
        check_description(description)
        secret = new_endpoint_secret()
        sealed = self._sealing().seal(secret)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), 0)", tenant_id)
            count = await conn.fetchval(
                f"SELECT count(*) FROM {self._s}.{store.ENDPOINTS} WHERE tenant_id = $1",
                tenant_id,
            )
            if count >= store.ENDPOINTS_PER_TENANT_MAX:
                raise LimitExceededError(
                    f"a tenant may have at most {store.ENDPOINTS_PER_TENANT_MAX} webhook endpoints"
                )
            row = await conn.fetchrow(
                f"INSERT INTO {self._s}.{store.ENDPOINTS} (endpoint_id, tenant_id, url, "
                "event_types, description, sealed_secret) VALUES ($1, $2, $3, $4, $5, $6) "
                f"RETURNING {store.ENDPOINT_COLUMNS}",
                "ep_" + new_id().replace("-", ""),
                tenant_id,
                url,
                types,
                description,
                sealed,
            )
        return store.endpoint_view(row, secret)

    async def all(self, tenant_id: str) -> list[store.EndpointView]:
        rows = await self.pool.fetch(
            f"SELECT {store.ENDPOINT_COLUMNS} FROM {self._s}.{store.ENDPOINTS} "
            "WHERE tenant_id = $1 ORDER BY created_at",
            tenant_id,
        )
        return [store.endpoint_view(row) for row in rows]

    async def get(self, tenant_id: str, endpoint_id: str) -> store.EndpointView:
        row = await self.pool.fetchrow(
            f"SELECT {store.ENDPOINT_COLUMNS} FROM {self._s}.{store.ENDPOINTS} "
            "WHERE tenant_id = $1 AND endpoint_id = $2",
            tenant_id,
            endpoint_id,
        )
        if row is None:
            raise NotFoundError(f"webhook endpoint {endpoint_id} not found")
        return store.endpoint_view(row)

    async def update(
        self,
        tenant_id: str,
        endpoint_id: str,
        *,
        url: str | None,
        event_types: list[str] | None,
        description: str | None,
        enabled: bool | None,
    ) -> store.EndpointView:
        """Changes what is given; `enabled: true` enables a disabled endpoint again and clears
        its failure count (its pending deliveries resume)."""
        if url is not None:
            checked_url(url, self.rules)
        types = None if event_types is None else check_event_types(event_types)
        if description is not None:
            check_description(description)
        row = await self.pool.fetchrow(
            f"UPDATE {self._s}.{store.ENDPOINTS} SET url = coalesce($3, url), "
            "event_types = coalesce($4, event_types), description = coalesce($5, description), "
            "enabled = coalesce($6, enabled), "
            "disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END, "
            "consecutive_failures = CASE WHEN $6 THEN 0 ELSE consecutive_failures END, "
            "failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END, "
            "updated_at = now() WHERE tenant_id = $1 AND endpoint_id = $2 "
            f"RETURNING {store.ENDPOINT_COLUMNS}",
            tenant_id,
            endpoint_id,
            url,
            types,
            description,
            enabled,
        )
        if row is None:
            raise NotFoundError(f"webhook endpoint {endpoint_id} not found")
        return store.endpoint_view(row)

    async def delete(self, tenant_id: str, endpoint_id: str) -> None:
        """Removes the endpoint; its pending deliveries end as failed (kept in the log)."""
        async with self.pool.acquire() as conn, conn.transaction():
            deleted = await conn.execute(
                f"DELETE FROM {self._s}.{store.ENDPOINTS} WHERE tenant_id = $1 AND endpoint_id = $2",
                tenant_id,
                endpoint_id,
            )
            if not deleted.endswith(" 1"):
                raise NotFoundError(f"webhook endpoint {endpoint_id} not found")
            await conn.execute(
                f"UPDATE {self._s}.{store.DELIVERIES} SET status = 'failed', "
                "last_error = 'the endpoint was deleted' WHERE endpoint_id = $1 AND status = 'pending'",
                endpoint_id,
            )

    async def deliveries(
        self, tenant_id: str, endpoint_id: str, after: int, limit: int, status: str | None
    ) -> store.DeliveryPage:
        await self.get(tenant_id, endpoint_id)
        return await store.deliveries_page(
            self.pool, self.schema, endpoint_id, after, limit, status
        )

    async def redeliver(self, tenant_id: str, endpoint_id: str, delivery_id: int) -> None:
        """Sends the delivery again (with the same webhook-id), as soon as its account's earlier
        pending deliveries to the endpoint are done, with a full retry schedule."""
        await self.get(tenant_id, endpoint_id)
        status = await self.pool.execute(
            f"UPDATE {self._s}.{store.DELIVERIES} SET status = 'pending', attempts = 0, "
            "due_at = now() WHERE endpoint_id = $1 AND delivery_id = $2",
            endpoint_id,
            delivery_id,
        )
        if not status.endswith(" 1"):
            raise NotFoundError(f"delivery {delivery_id} not found")

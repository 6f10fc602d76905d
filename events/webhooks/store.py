"""The tables of outbound webhooks, beside the event store: each tenant's endpoints (their
signing secrets sealed), the deliveries the deliverer owes them (one row per message and
endpoint, written in the same transaction as the deliverer's position: none is lost), and the
log of every attempt.

A delivery is `pending` (due at `due_at`), `delivered`, or `failed` (its retries ran out, or
it was sent to an endpoint since deleted); a manual redelivery makes it pending again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

ENDPOINTS = "ledger_webhook_endpoints"
DELIVERIES = "ledger_webhook_deliveries"
ATTEMPTS = "ledger_webhook_attempts"
TRACKING = "ledger_webhook_tracking"
TRACKING_NAME = "webhooks"

# Endpoints per tenant: each receives every message it subscribes to.
ENDPOINTS_PER_TENANT_MAX = 10
# Event types (or patterns) one endpoint subscribes to; none: all.
EVENT_TYPES_PER_ENDPOINT_MAX = 20
EVENT_TYPE_LENGTH_MAX = 64
DESCRIPTION_LENGTH_MAX = 1_000
# Bytes of an answer the attempt log keeps.
LOGGED_ANSWER_BYTES_MAX = 1_024
LOGGED_ERROR_LENGTH_MAX = 500
# Deliveries per page of the log (default and most).
DELIVERIES_PAGE_DEFAULT = 50
DELIVERIES_PAGE_MAX = 500


def table_statements(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        f"""CREATE TABLE IF NOT EXISTS {s}.{ENDPOINTS} (
            endpoint_id text PRIMARY KEY,
            tenant_id text NOT NULL,
            url text NOT NULL,
            event_types text[] NOT NULL,
            description text NOT NULL DEFAULT '',
            sealed_secret bytea NOT NULL,
            enabled boolean NOT NULL DEFAULT true,
            disabled_reason text,
            consecutive_failures integer NOT NULL DEFAULT 0,
            failing_since timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )""",
        f"CREATE INDEX IF NOT EXISTS {ENDPOINTS}_tenant ON {s}.{ENDPOINTS} (tenant_id)",
        f"""CREATE TABLE IF NOT EXISTS {s}.{DELIVERIES} (
            delivery_id bigserial PRIMARY KEY,
            endpoint_id text NOT NULL,
            tenant_id text NOT NULL,
            account_id text NOT NULL,
            message_id text NOT NULL,
            type text NOT NULL,
            position bigint NOT NULL,
            payload bytea NOT NULL,
            status text NOT NULL DEFAULT 'pending',
            attempts integer NOT NULL DEFAULT 0,
            due_at timestamptz NOT NULL DEFAULT now(),
            created_at timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz,
            last_status integer,
            last_error text,
            UNIQUE (endpoint_id, message_id)
        )""",
        f"CREATE INDEX IF NOT EXISTS {DELIVERIES}_pending ON {s}.{DELIVERIES} "
        "(endpoint_id, account_id, delivery_id) WHERE status = 'pending'",
        f"CREATE INDEX IF NOT EXISTS {DELIVERIES}_log ON {s}.{DELIVERIES} "
        "(endpoint_id, delivery_id)",
        f"""CREATE TABLE IF NOT EXISTS {s}.{ATTEMPTS} (
            attempt_id bigserial PRIMARY KEY,
            delivery_id bigint NOT NULL,
            attempt integer NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            status integer,
            error text,
            duration_ms integer NOT NULL,
            answer text
        )""",
        f"CREATE INDEX IF NOT EXISTS {ATTEMPTS}_delivery ON {s}.{ATTEMPTS} (delivery_id)",
        f"""CREATE TABLE IF NOT EXISTS {s}.{TRACKING} (
            name text PRIMARY KEY,
            position bigint NOT NULL
        )""",
    ]


class EndpointView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    endpoint_id: str
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    disabled_reason: str | None = None
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    secret: str | None = None  # only in the answer that created it


class AttemptView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    attempt: int
    at: datetime
    duration_ms: int
    status: int | None = None
    error: str | None = None
    answer: str | None = None


class DeliveryView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    delivery_id: int
    message_id: str
    type: str
    account_id: str
    position: int
    status: str
    attempts: int
    created_at: datetime
    due_at: datetime | None = None
    delivered_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    attempt_log: list[AttemptView] = []


class DeliveryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[DeliveryView]
    next_after: int | None


ENDPOINT_COLUMNS = (
    "endpoint_id, url, event_types, description, enabled, created_at, updated_at, "
    "disabled_reason, consecutive_failures, failing_since"
)


def endpoint_view(row: Any, secret: str | None = None) -> EndpointView:
    values = {key: value for key, value in dict(row).items() if value is not None}
    values["event_types"] = list(values.get("event_types", []))
    return EndpointView(**values, secret=secret)


def delivery_view(row: Any, attempts: list[Any]) -> DeliveryView:
    values = {key: value for key, value in dict(row).items() if value is not None}
    if values.get("status") != "pending":
        values.pop("due_at", None)
    return DeliveryView(
        **values,
        attempt_log=[
            AttemptView(
                **{k: v for k, v in dict(a).items() if v is not None and k != "delivery_id"}
            )
            for a in attempts
        ],
    )


async def deliveries_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    schema: str,
    endpoint_id: str,
    after: int,
    limit: int,
    status: str | None,
) -> DeliveryPage:
    s = f'"{schema}"'
    rows = await conn.fetch(
        f"SELECT delivery_id, message_id, type, account_id, position, status, attempts, "
        f"created_at, due_at, delivered_at, last_status, last_error FROM {s}.{DELIVERIES} "
        "WHERE endpoint_id = $1 AND delivery_id > $2 AND ($3::text IS NULL OR status = $3) "
        "ORDER BY delivery_id LIMIT $4",
        endpoint_id,
        after,
        status,
        limit,
    )
    ids = [row["delivery_id"] for row in rows]
    attempts = await conn.fetch(
        f"SELECT delivery_id, attempt, at, status, error, duration_ms, answer FROM {s}.{ATTEMPTS} "
        "WHERE delivery_id = ANY($1::bigint[]) ORDER BY attempt_id",
        ids,
    )
    by_delivery: dict[int, list[Any]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt["delivery_id"], []).append(attempt)
    items = [delivery_view(row, by_delivery.get(row["delivery_id"], [])) for row in rows]
    return DeliveryPage(
        items=items, next_after=items[-1].delivery_id if len(items) == limit else None
    )

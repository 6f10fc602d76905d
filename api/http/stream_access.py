"""Who may open a stream: `POST /v1/stream-tokens`, and the check of a token when a stream
opens with it (api/http/stream_tokens.py signs and verifies them)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from litestar import post
from litestar.params import JSONBody

from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import tenant_key
from api.http.parameters import SECURITY
from api.http.problems import ApiError, responses
from api.http.read_models import known_account
from api.http.services import Services
from api.http.stream_tokens import Payload, StreamAccess, StreamToken, StreamTokenRequest
from ledger.ids import tenant_aggregate_id
from ledger.tenants.api_keys import ACCOUNTS_READ, REPORTS_READ
from ledger.tenants.tenant import Tenant


def key_still_valid(services: Services, payload: Payload) -> str | None:
    """Runs in a thread: why the token's key no longer opens streams, or None."""
    try:
        tenant: Any = services.ledger.repository.get(tenant_aggregate_id(payload.t))
    except AggregateNotFoundError:
        return "the stream token's tenant is not known"
    assert isinstance(tenant, Tenant)
    key = tenant.api_keys.get(payload.k)
    if key is None or key.revoked_at is not None:
        return "the API key the stream token was made with was revoked"
    if key.expires_at is not None and key.expires_at <= datetime.now(tz=UTC):
        return "the API key the stream token was made with has expired"
    if tenant.disabled:
        return "the stream token's tenant is disabled"
    return None


async def access_of_token(services: Services, token: str) -> StreamAccess:
    """The stream a token opens; ApiError `unauthorized` when it opens none."""
    payload = services.stream_tokens.verify(token)
    refused = await asyncio.to_thread(key_still_valid, services, payload)
    if refused is not None:
        raise ApiError("unauthorized", refused)
    return StreamAccess(tenant_id=payload.t, account_id=payload.a)


@post(
    "/v1/stream-tokens",
    summary="A short-lived token a browser opens /v1/stream or /v1/ws with, instead of a key",
    responses=responses("forbidden", "not_found"),
    security=SECURITY,
    guards=[tenant_key(None)],
    tags=["streams"],
)
async def create_stream_token(
    principal: PrincipalDep, services: ServicesDep, data: JSONBody[StreamTokenRequest]
) -> StreamToken:
    """Signed, not stored: it streams the caller's tenant (scope `reports:read`) or, with
    `account_id`, only that account (scope `accounts:read` or `reports:read`), and opens
    streams until `expires_at`; a stream it opened stays open. Revoking the key, or disabling
    the tenant, stops it opening new ones."""
    if data.account_id is None:
        principal.require_tenant(REPORTS_READ)
    elif not principal.scopes & {ACCOUNTS_READ, REPORTS_READ}:
        raise ApiError("forbidden", f"the API key lacks the scope {ACCOUNTS_READ}")
    if data.account_id is not None:
        await known_account(services, principal.tenant(), data.account_id)
    assert principal.key_id is not None
    return services.stream_tokens.issue(
        principal.tenant(), principal.key_id, data.account_id, data.ttl_s
    )

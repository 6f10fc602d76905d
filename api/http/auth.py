"""Authentication and scopes. Keys are looked up by their SHA-256; nothing else is stored.

A key's state (scopes, expiry, revocation) is cached for at most AUTH_CACHE_TTL_S, so a
revocation, or the end of a rotated key's grace period set through any replica, takes effect
everywhere within a second.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from eventsourcing.application import AggregateNotFoundError
from litestar.connection import ASGIConnection

from api.http.problems import ApiError
from api.http.ratelimit import RateLimiter
from ledger.commands import Command, Envelope
from ledger.ids import api_key_aggregate_id, tenant_aggregate_id
from ledger.store.application import Ledger
from ledger.tenants.api_keys import API_KEY_PREFIX, ApiKeyIndex, hash_api_key
from ledger.tenants.tenant import Tenant

log = structlog.get_logger("api.http.auth")

KEY_PATTERN = re.compile(r"^lk_live_[A-Za-z0-9_-]{43}$")
# How stale a cached key state may be: the bound on how long a revoked key keeps working.
AUTH_CACHE_TTL_S = 0.5
AUTH_CACHE_SIZE_MAX = 10_000
# A caller's header value is looked at only up to this length.
AUTH_HEADER_LENGTH_MAX = 512

OPERATOR_ONLY_DETAIL = "this operation needs the platform operator's key"
TENANT_ONLY_DETAIL = "the operator's key manages tenants only; use a tenant key"


@dataclass(frozen=True)
class KeyGrant:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked: bool


@dataclass(frozen=True)
class Principal:
    is_admin: bool
    tenant_id: str | None
    key_id: str | None
    scopes: frozenset[str]

    def tenant(self) -> str:
        assert self.tenant_id is not None
        return self.tenant_id

    def require_tenant(self, scope: str | None) -> None:
        """Refuses the operator's key, and a tenant key without `scope` (None: any scope)."""
        if self.is_admin:
            raise ApiError("forbidden", TENANT_ONLY_DETAIL)
        if scope is not None and scope not in self.scopes:
            raise ApiError("forbidden", f"the API key lacks the scope {scope}")

    def envelope(self, command: Command) -> Envelope[Command]:
        """The command as this tenant's key sends it."""
        return Envelope(tenant_id=self.tenant(), command=command, key_id=self.key_id)

    def require_operator(self) -> None:
        if not self.is_admin:
            raise ApiError("forbidden", OPERATOR_ONLY_DETAIL)


def presented_key(request: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    return request.headers.get("x-api-key")


def load_grant(ledger: Ledger, key_hash: str) -> KeyGrant | None:
    """Runs in a thread: two aggregate loads."""
    try:
        index: Any = ledger.repository.get(api_key_aggregate_id(key_hash))
        tenant: Any = ledger.repository.get(tenant_aggregate_id(index.tenant_id))
    except AggregateNotFoundError:
        return None
    assert isinstance(index, ApiKeyIndex) and isinstance(tenant, Tenant)
    key = tenant.api_keys.get(index.key_id)
    if key is None:  # ended long ago: the tenant no longer keeps it (API_KEYS_ENDED_KEPT)
        return KeyGrant(
            tenant_id=tenant.tenant_id,
            key_id=index.key_id,
            scopes=frozenset(),
            expires_at=None,
            revoked=True,
        )
    return KeyGrant(
        tenant_id=tenant.tenant_id,
        key_id=index.key_id,
        scopes=frozenset(key.scopes),
        expires_at=key.expires_at,
        revoked=key.revoked_at is not None,
    )


class Authenticator:
    def __init__(self, ledger: Ledger, admin_key: str, limiter: RateLimiter) -> None:
        self.ledger = ledger
        self.admin_key = admin_key
        self.limiter = limiter
        self._cache: OrderedDict[str, tuple[float, KeyGrant | None]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[KeyGrant | None]] = {}
        self.on_used: Any = None  # called with (tenant_id, key_id) after a successful auth

    async def grant_of(self, key_hash: str) -> KeyGrant | None:
        cached = self._cache.get(key_hash)
        now = time.monotonic()
        if cached is not None and now - cached[0] < AUTH_CACHE_TTL_S:
            return cached[1]
        loading = self._loading.get(key_hash)
        if loading is not None:  # one load per key at a time; the others wait for it
            return await asyncio.shield(loading)
        future: asyncio.Future[KeyGrant | None] = asyncio.get_running_loop().create_future()
        self._loading[key_hash] = future
        try:
            grant = await asyncio.to_thread(load_grant, self.ledger, key_hash)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters get it, nobody else needs to
            raise
        finally:
            self._loading.pop(key_hash, None)
        future.set_result(grant)
        self._cache[key_hash] = (now, grant)
        self._cache.move_to_end(key_hash)
        while len(self._cache) > AUTH_CACHE_SIZE_MAX:
            self._cache.popitem(last=False)
        return grant

    def forget(self) -> None:
        self._cache.clear()

    def _limit(self, bucket: str) -> None:
        wait_s = self.limiter.retry_after_s(bucket)
        if wait_s:
            raise ApiError(
                "rate_limited",
                f"rate limit reached; retry in {wait_s} s",
                {"Retry-After": str(wait_s)},
            )

    async def authenticate(self, request: ASGIConnection[Any, Any, Any, Any]) -> Principal:
        key = presented_key(request)
        if not key or len(key) > AUTH_HEADER_LENGTH_MAX:
            raise ApiError("unauthorized", "send an API key as 'Authorization: Bearer <key>'")
        if hmac.compare_digest(key.encode(), self.admin_key.encode()):
            self._limit("admin")
            return Principal(is_admin=True, tenant_id=None, key_id=None, scopes=frozenset())
        if not key.startswith(API_KEY_PREFIX) or not KEY_PATTERN.fullmatch(key):
            raise ApiError("unauthorized", "the API key is malformed")
        key_hash = hash_api_key(key)
        self._limit(key_hash)
        grant = await self.grant_of(key_hash)
        if grant is None:
            raise ApiError("unauthorized", "the API key is not known")
        if grant.revoked:
            raise ApiError("unauthorized", "the API key was revoked")
        if grant.expires_at is not None and grant.expires_at <= datetime.now(tz=UTC):
            raise ApiError("unauthorized", "the API key has expired")
        structlog.contextvars.bind_contextvars(tenant_id=grant.tenant_id)
        if self.on_used is not None:
            self.on_used(grant.tenant_id, grant.key_id)
        return Principal(
            is_admin=False, tenant_id=grant.tenant_id, key_id=grant.key_id, scopes=grant.scopes
        )

"""API keys: their secrets, the hash that is stored instead, and the index from a key's hash
to its tenant.

Keys are random 256-bit secrets, so a SHA-256 of the key is what is stored. The index
aggregate's id is derived from that hash, so an authentication is one aggregate load, no scan.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.domain import Aggregate

from ledger.topics import stored_as

API_KEY_PREFIX = "lk_live_"
API_KEY_SECRET_BYTES = 32
ACCOUNTS_READ = "accounts:read"
ACCOUNTS_WRITE = "accounts:write"  # open, grant, purchase, adjust
CREDITS_CONSUME = "credits:consume"  # consume, refund, holds
REPORTS_READ = "reports:read"  # usage, history, audit, streams
KEYS_MANAGE = "keys:manage"
SCOPES = (ACCOUNTS_READ, ACCOUNTS_WRITE, CREDITS_CONSUME, REPORTS_READ, KEYS_MANAGE)


class ApiKey(msgspec.Struct, kw_only=True):
    """One of a tenant's keys, as the Tenant keeps it: never the secret, only its hash.

    Fields added since keys were first stored have defaults (snapshots hold the old shape)."""

    key_id: str
    name: str
    scopes: list[str]
    expires_at: datetime | None
    key_hash: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None
    # Set by a rotation: the key that replaced this one, the key this one replaced.
    successor_key_id: str | None = None
    predecessor_key_id: str | None = None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def ended_at(self, now: datetime) -> datetime | None:
        """When the key stopped working (revoked, or past its expiry), or None if it works."""
        ends = [self.revoked_at] if self.revoked_at is not None else []
        if self.expires_at is not None and self.expires_at <= now:
            ends.append(self.expires_at)
        return min(ends, default=None)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_SECRET_BYTES)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@stored_as("ledger.tenant")
class ApiKeyIndex(Aggregate):
    """Finds the tenant and key id of a key from its hash; id = ids.api_key_aggregate_id(hash)."""

    class Created(Aggregate.Created):
        tenant_id: str
        key_id: str

    def __init__(self, tenant_id: str, key_id: str, **_: Any) -> None:
        self.tenant_id = tenant_id
        self.key_id = key_id

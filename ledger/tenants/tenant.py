"""The Tenant aggregate (settings and API keys) and the ApiKey index that finds a key's tenant.

Keys are random 256-bit secrets, so a SHA-256 of the key is what is stored: nothing that could
be used as a key is ever written down. The index aggregate's id is derived from that hash, so
an authentication is one aggregate load, with no scan.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from ledger.errors import ApiKeyNotFoundError, LimitExceededError
from ledger.limits import API_KEYS_PER_TENANT_MAX
from ledger.topics import stored_as

API_KEY_PREFIX = "lk_live_"
API_KEY_SECRET_BYTES = 32
SCOPES = ("accounts:read", "accounts:write", "credits:consume", "reports:read", "keys:manage")


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_SECRET_BYTES)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@stored_as("ledger.tenant")
class Tenant(Aggregate):
    class Created(Aggregate.Created):
        tenant_id: str
        name: str
        settings: dict[str, Any]

    class Updated(Aggregate.Event):
        name: str
        settings: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.name = self.name
            aggregate.settings = self.settings

    class ApiKeyCreated(Aggregate.Event):
        key_id: str
        name: str
        scopes: list[str]
        expires_at: datetime | None
        key_hash: str
        key_prefix: str  # the first characters, to recognise a key in a list

        def apply(self, aggregate: Any) -> None:
            aggregate.api_keys[self.key_id] = {
                "key_id": self.key_id,
                "name": self.name,
                "scopes": self.scopes,
                "expires_at": self.expires_at,
                "key_hash": self.key_hash,
                "key_prefix": self.key_prefix,
                "created_at": self.timestamp,
                "revoked_at": None,
            }

    class ApiKeyRevoked(Aggregate.Event):
        key_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.api_keys[self.key_id]["revoked_at"] = self.timestamp

    def __init__(self, tenant_id: str, name: str, settings: dict[str, Any], **_: Any) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.settings = settings
        self.api_keys: dict[str, dict[str, Any]] = {}

    def update(self, *, name: str, settings: dict[str, Any]) -> None:
        self.trigger_event(self.Updated, name=name, settings=settings)

    def add_api_key(
        self, *, key_id: str, key: str, name: str, scopes: list[str], expires_at: datetime | None
    ) -> None:
        if len(self.api_keys) >= API_KEYS_PER_TENANT_MAX:
            raise LimitExceededError(
                f"a tenant may have at most {API_KEYS_PER_TENANT_MAX} API keys"
            )
        self.trigger_event(
            self.ApiKeyCreated,
            key_id=key_id,
            name=name,
            scopes=scopes,
            expires_at=expires_at,
            key_hash=hash_api_key(key),
            key_prefix=key[: len(API_KEY_PREFIX) + 4],
        )

    def revoke_api_key(self, key_id: str) -> None:
        api_key = self.api_keys.get(key_id)
        if api_key is None:
            raise ApiKeyNotFoundError(f"API key {key_id} not found")
        if api_key["revoked_at"] is None:
            self.trigger_event(self.ApiKeyRevoked, key_id=key_id)


@stored_as("ledger.tenant")
class ApiKeyIndex(Aggregate):
    """Finds the tenant and key id of a key from its hash; id = ids.api_key_aggregate_id(hash)."""

    class Created(Aggregate.Created):
        tenant_id: str
        key_id: str

    def __init__(self, tenant_id: str, key_id: str, **_: Any) -> None:
        self.tenant_id = tenant_id
        self.key_id = key_id

"""The Tenant aggregate: a platform customer's name, settings and API keys.

Keys are random 256-bit secrets, so a SHA-256 of the key is what is stored: nothing that could
be used as a key is ever written down (ledger/tenants/api_keys.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

from ledger.errors import ApiKeyNotFoundError, LimitExceededError
from ledger.limits import API_KEYS_PER_TENANT_MAX
from ledger.tenants.api_keys import API_KEY_PREFIX, ApiKey, hash_api_key
from ledger.tenants.settings import TenantSettings
from ledger.topics import stored_as


@stored_as("ledger.tenant")
class Tenant(Aggregate):
    typed_state: ClassVar[dict[str, Any]] = {
        "settings": TenantSettings,
        "api_keys": dict[str, ApiKey],
    }

    class Created(Aggregate.Created):
        tenant_id: str
        name: str
        settings: TenantSettings

    class Updated(Aggregate.Event):
        name: str
        settings: TenantSettings

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
            aggregate.api_keys[self.key_id] = ApiKey(
                key_id=self.key_id,
                name=self.name,
                scopes=self.scopes,
                expires_at=self.expires_at,
                key_hash=self.key_hash,
                key_prefix=self.key_prefix,
                created_at=self.timestamp,
                revoked_at=None,
            )

    class ApiKeyRevoked(Aggregate.Event):
        key_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.api_keys[self.key_id].revoked_at = self.timestamp

    # Disabling and enabling (issue 17): a disabled tenant's keys answer 401; its data stays.
    class Disabled(Aggregate.Event):
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.disabled_at = self.timestamp
            aggregate.disabled_reason = self.reason

    class Enabled(Aggregate.Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.disabled_at = None
            aggregate.disabled_reason = None

    # Tenants stored (or snapshotted) before these events existed were never disabled.
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    def __init__(self, tenant_id: str, name: str, settings: TenantSettings, **_: Any) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.settings = settings
        self.api_keys: dict[str, ApiKey] = {}

    def update(self, *, name: str, settings: TenantSettings) -> None:
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
        if api_key.revoked_at is None:
            self.trigger_event(self.ApiKeyRevoked, key_id=key_id)

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def disable(self, reason: str) -> None:
        """Disabling a disabled tenant changes nothing (its first reason and time stay)."""
        if self.disabled_at is None:
            self.trigger_event(self.Disabled, reason=reason)

    def enable(self) -> None:
        if self.disabled_at is not None:
            self.trigger_event(self.Enabled)

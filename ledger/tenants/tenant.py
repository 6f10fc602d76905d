"""The Tenant aggregate: a platform customer's name, settings and API keys.

Keys are random 256-bit secrets, so a SHA-256 of the key is what is stored: nothing that could
be used as a key is ever written down (ledger/tenants/api_keys.py).

The state stays bounded however many keys a tenant makes, revokes or rotates: at most
API_KEYS_PER_TENANT_MAX active keys (revoked and expired ones do not count, nor a key in its
rotation's grace period, which ends within a day), and of the ended ones only the
API_KEYS_ENDED_KEPT most recently ended; older ones leave the state (the event store keeps
them all). Which keys leave is decided when an event is applied, from its timestamp, so a
replay keeps the same ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

from ledger.errors import ApiKeyNotActiveError, ApiKeyNotFoundError, LimitExceededError
from ledger.limits import API_KEYS_ENDED_KEPT, API_KEYS_PER_TENANT_MAX
from ledger.tenants.api_keys import API_KEY_PREFIX, ApiKey, hash_api_key
from ledger.tenants.settings import TenantSettings
from ledger.topics import stored_as


def forget_ended_keys(api_keys: dict[str, ApiKey], now: datetime) -> None:
    """Drops the keys that ended longest ago (the oldest first among those that ended at the
    same time), past the API_KEYS_ENDED_KEPT most recent."""
    ended = [
        (end, key.created_at, key_id)
        for key_id, key in api_keys.items()
        if (end := key.ended_at(now)) is not None
    ]
    if len(ended) > API_KEYS_ENDED_KEPT:
        for _, _, key_id in sorted(ended)[: len(ended) - API_KEYS_ENDED_KEPT]:
            del api_keys[key_id]


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
            forget_ended_keys(aggregate.api_keys, self.timestamp)

    class ApiKeyRevoked(Aggregate.Event):
        key_id: str

        def apply(self, aggregate: Any) -> None:
            api_key = aggregate.api_keys.get(self.key_id)
            if api_key is not None:
                api_key.revoked_at = self.timestamp
            forget_ended_keys(aggregate.api_keys, self.timestamp)

    class ApiKeyRotated(Aggregate.Event):
        """`key_id` was replaced by `successor_key_id` (made by the ApiKeyCreated just before)
        and keeps working until `expires_at`, the end of its grace period."""

        key_id: str
        successor_key_id: str
        expires_at: datetime

        def apply(self, aggregate: Any) -> None:
            rotated = aggregate.api_keys.get(self.key_id)
            if rotated is not None:
                rotated.expires_at = self.expires_at
                rotated.successor_key_id = self.successor_key_id
            successor = aggregate.api_keys.get(self.successor_key_id)
            if successor is not None:
                successor.predecessor_key_id = self.key_id
            forget_ended_keys(aggregate.api_keys, self.timestamp)

    def __init__(self, tenant_id: str, name: str, settings: TenantSettings, **_: Any) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.settings = settings
        self.api_keys: dict[str, ApiKey] = {}

    def update(self, *, name: str, settings: TenantSettings) -> None:
        self.trigger_event(self.Updated, name=name, settings=settings)

    def active_keys(self, now: datetime) -> int:
        """Keys that work now and count toward the limit: a rotated key in its grace period
        does not (it ends within API_KEY_ROTATION_GRACE_S_MAX)."""
        return sum(
            1
            for key in self.api_keys.values()
            if key.is_active(now) and key.successor_key_id is None
        )

    def add_api_key(
        self,
        *,
        key_id: str,
        key: str,
        name: str,
        scopes: list[str],
        expires_at: datetime | None,
        now: datetime,
        replacing: str | None = None,
    ) -> None:
        """A new key; `replacing` names the key it rotates, which then stops counting."""
        active = self.active_keys(now)
        if replacing is not None and self.api_keys[replacing].is_active(now):
            active -= 1
        if active >= API_KEYS_PER_TENANT_MAX:
            raise LimitExceededError(
                f"a tenant may have at most {API_KEYS_PER_TENANT_MAX} active API keys; "
                "revoke one first"
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

    def rotatable_key(self, key_id: str, now: datetime) -> ApiKey:
        """The key a rotation replaces: known, working, and not rotated already."""
        api_key = self.api_keys.get(key_id)
        if api_key is None:
            raise ApiKeyNotFoundError(f"API key {key_id} not found")
        if not api_key.is_active(now):
            raise ApiKeyNotActiveError(f"API key {key_id} is revoked or expired")
        if api_key.successor_key_id is not None:
            raise ApiKeyNotActiveError(
                f"API key {key_id} was rotated already (to {api_key.successor_key_id}); "
                "rotate that one"
            )
        return api_key

    def rotate_api_key(self, *, key_id: str, successor_key_id: str, expires_at: datetime) -> None:
        assert successor_key_id in self.api_keys, successor_key_id
        self.trigger_event(
            self.ApiKeyRotated,
            key_id=key_id,
            successor_key_id=successor_key_id,
            expires_at=expires_at,
        )

    def revoke_api_key(self, key_id: str) -> None:
        api_key = self.api_keys.get(key_id)
        if api_key is None:
            raise ApiKeyNotFoundError(f"API key {key_id} not found")
        if api_key.revoked_at is None:
            self.trigger_event(self.ApiKeyRevoked, key_id=key_id)

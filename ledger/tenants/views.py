"""What tenant commands answer: the tenant and its API keys, as msgspec structs."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ledger.tenants.api_keys import ApiKey
from ledger.tenants.settings import TenantSettings
from ledger.tenants.tenant import Tenant


class ApiKeyView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    key_id: str
    name: str
    scopes: list[str]
    key_prefix: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    key: str | None = None  # the secret: present only in the answer that created it
    successor_key_id: str | None = None  # set by a rotation: the key that replaced this one
    predecessor_key_id: str | None = None  # the key this one replaced

    def without_secret(self) -> ApiKeyView:
        """As a stored answer keeps it: the secret is never written down."""
        return msgspec.structs.replace(self, key=None)


class TenantView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    tenant_id: str
    name: str
    settings: TenantSettings
    version: int
    created_at: datetime
    updated_at: datetime
    api_key: ApiKeyView | None = None  # the first key, in the answer that created the tenant

    def without_secret(self) -> TenantView:
        if self.api_key is None:
            return self
        return msgspec.structs.replace(self, api_key=self.api_key.without_secret())


def api_key_view(
    api_key: ApiKey, key: str | None = None, last_used_at: datetime | None = None
) -> ApiKeyView:
    return ApiKeyView(
        key_id=api_key.key_id,
        name=api_key.name,
        scopes=list(api_key.scopes),
        key_prefix=api_key.key_prefix,
        created_at=api_key.created_at,
        expires_at=api_key.expires_at,
        revoked_at=api_key.revoked_at,
        last_used_at=last_used_at,
        key=key,
        successor_key_id=api_key.successor_key_id,
        predecessor_key_id=api_key.predecessor_key_id,
    )


def tenant_view(tenant: Tenant, api_key: ApiKeyView | None = None) -> TenantView:
    return TenantView(
        tenant_id=tenant.tenant_id,
        name=tenant.name,
        settings=tenant.settings,
        version=tenant.version,
        created_at=tenant.created_on,
        updated_at=tenant.modified_on,
        api_key=api_key,
    )

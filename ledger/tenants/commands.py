"""The tenant commands: create and change a tenant, issue, rotate and revoke its API keys, read
it.

The operator sends them for any tenant; a tenant's key with `keys:manage` sends the key
commands for its own tenant. The envelope says which tenant; `CreateTenant` names the one it
creates, and its envelope carries the same id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta

from ledger.checks import check_expires_at, check_text
from ledger.commands import Command
from ledger.errors import InvalidCommandError
from ledger.fields import OptionalText, TenantId, Text
from ledger.limits import API_KEY_ROTATION_GRACE_S_DEFAULT, API_KEY_ROTATION_GRACE_S_MAX
from ledger.tenants.api_keys import SCOPES
from ledger.tenants.settings import TenantSettings, TenantSettingsPatch

Scope = Annotated[str, Meta(pattern="^(" + "|".join(SCOPES) + ")$")]


class CreateTenant(Command, tag="create_tenant", frozen=True, kw_only=True):
    """Creates a tenant and its first API key, with every scope (shown once)."""

    tenant_id: TenantId
    name: Text
    settings: TenantSettings | None = None

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"tenant_id", "name", "settings"})

    def check(self, now: datetime) -> None:
        check_text(self.name, "name")
        if self.settings is not None:
            self.settings.check()

    def canonical(self) -> CreateTenant:
        """No settings are the default settings (as the tenant is created with)."""
        if self.settings is None:
            return msgspec.structs.replace(self, settings=TenantSettings())
        return self


class UpdateTenant(Command, tag="update_tenant", frozen=True, kw_only=True):
    """Changes a tenant's name or some of its settings."""

    name: Text | None = None
    settings: TenantSettingsPatch | None = None

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"name", "settings"})

    def check(self, now: datetime) -> None:
        check_text(self.name, "name", required=False)
        if self.settings is not None:
            self.settings.check()


class CreateApiKey(Command, tag="create_api_key", frozen=True, kw_only=True):
    """Issues an API key with the given scopes (the secret is shown once)."""

    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=len(SCOPES))]
    name: OptionalText = ""
    expires_at: datetime | None = None

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"scopes", "name", "expires_at"})

    def check(self, now: datetime) -> None:
        check_text(self.name, "name", required=False)
        unknown = sorted(set(self.scopes) - set(SCOPES))
        if unknown or not self.scopes:
            raise InvalidCommandError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}")
        check_expires_at(self.expires_at, now, may_be_retry=self.idempotency_key is not None)


class RevokeApiKey(Command, tag="revoke_api_key", frozen=True, kw_only=True):
    """Revokes an API key: it answers 401 from then on, on every replica within 1 s."""

    key_id: str

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"key_id"})

    def check(self, now: datetime) -> None:
        check_text(self.key_id, "key_id")


class RotateApiKey(Command, tag="rotate_api_key", frozen=True, kw_only=True):
    """Issues a successor of an API key, with its scopes, name and expiry (the secret shown
    once); the key keeps working for `grace_s` more seconds, then answers 401."""

    key_id: Annotated[str, Meta(description="The path gives it")] = ""
    grace_s: Annotated[
        int,
        Meta(
            ge=0,
            le=API_KEY_ROTATION_GRACE_S_MAX,
            description="How long the rotated key keeps working (0: it stops now)",
        ),
    ] = API_KEY_ROTATION_GRACE_S_DEFAULT

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"key_id", "grace_s"})

    def check(self, now: datetime) -> None:
        check_text(self.key_id, "key_id")
        if type(self.grace_s) is not int or not 0 <= self.grace_s <= API_KEY_ROTATION_GRACE_S_MAX:
            raise InvalidCommandError(
                f"grace_s must be from 0 to {API_KEY_ROTATION_GRACE_S_MAX} seconds"
            )


class GetTenant(Command, tag="get_tenant", frozen=True, kw_only=True):
    """A read through the writer."""

"""Tenant command handlers: get → decide → apply, on the aggregates of one writer batch."""

from __future__ import annotations

from datetime import datetime, timedelta

from ledger.checks import check_still_ahead
from ledger.commands import Envelope
from ledger.errors import TenantExistsError, TenantNotFoundError
from ledger.ids import api_key_aggregate_id, new_id, tenant_aggregate_id
from ledger.outcome import Outcome
from ledger.tenants.api_keys import SCOPES, ApiKeyIndex, hash_api_key, new_api_key
from ledger.tenants.commands import (
    CreateApiKey,
    CreateTenant,
    GetTenant,
    RevokeApiKey,
    RotateApiKey,
    UpdateTenant,
)
from ledger.tenants.settings import TenantSettings
from ledger.tenants.tenant import Tenant
from ledger.tenants.views import ApiKeyView, api_key_view, tenant_view
from ledger.unit_of_work import UnitOfWork


def create_tenant(envelope: Envelope[CreateTenant], session: UnitOfWork) -> Outcome:
    command = envelope.command
    tenant_uuid = tenant_aggregate_id(command.tenant_id)
    if session.get(Tenant, tenant_uuid) is not None:
        raise TenantExistsError(f"tenant {command.tenant_id} exists")
    tenant = Tenant._create(
        Tenant.Created,
        id=tenant_uuid,
        tenant_id=command.tenant_id,
        name=command.name,
        settings=command.settings or TenantSettings(),
    )
    key_view = _add_key(session, tenant, name="first key", scopes=list(SCOPES), expires_at=None)
    session.add(tenant)
    return Outcome(value=tenant_view(tenant, key_view))


def _add_key(
    session: UnitOfWork,
    tenant: Tenant,
    *,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    replacing: str | None = None,
) -> ApiKeyView:
    key = new_api_key()
    key_id = new_id()
    tenant.add_api_key(
        key_id=key_id,
        key=key,
        name=name,
        scopes=scopes,
        expires_at=expires_at,
        now=session.now,
        replacing=replacing,
    )
    session.add(
        ApiKeyIndex._create(
            ApiKeyIndex.Created,
            id=api_key_aggregate_id(hash_api_key(key)),
            tenant_id=tenant.tenant_id,
            key_id=key_id,
        )
    )
    return api_key_view(tenant.api_keys[key_id], key)


def existing_tenant(session: UnitOfWork, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_aggregate_id(tenant_id))
    if tenant is None:
        raise TenantNotFoundError(f"tenant {tenant_id} not found")
    return tenant


def update_tenant(envelope: Envelope[UpdateTenant], session: UnitOfWork) -> Outcome:
    command = envelope.command
    tenant = existing_tenant(session, envelope.tenant_id)
    settings = tenant.settings
    if command.settings is not None:
        settings = command.settings.applied_to(settings)
    tenant.update(name=command.name or tenant.name, settings=settings)
    session.add(tenant)
    return Outcome(value=tenant_view(tenant), created=False)


def create_api_key(envelope: Envelope[CreateApiKey], session: UnitOfWork) -> Outcome:
    command = envelope.command
    check_still_ahead(command.expires_at, session.now)  # not a replay (execute looked)
    tenant = existing_tenant(session, envelope.tenant_id)
    view = _add_key(
        session, tenant, name=command.name, scopes=command.scopes, expires_at=command.expires_at
    )
    session.add(tenant)
    return Outcome(value=view)


def rotate_api_key(envelope: Envelope[RotateApiKey], session: UnitOfWork) -> Outcome:
    """A successor with the key's scopes, name and expiry; the key itself ends after the
    grace period (or at its own expiry, if that comes first)."""
    command = envelope.command
    tenant = existing_tenant(session, envelope.tenant_id)
    rotated = tenant.rotatable_key(command.key_id, session.now)
    grace_end = session.now + timedelta(seconds=command.grace_s)
    ends_at = grace_end if rotated.expires_at is None else min(rotated.expires_at, grace_end)
    view = _add_key(
        session,
        tenant,
        name=rotated.name,
        scopes=list(rotated.scopes),
        expires_at=rotated.expires_at,
        replacing=command.key_id,
    )
    tenant.rotate_api_key(key_id=command.key_id, successor_key_id=view.key_id, expires_at=ends_at)
    session.add(tenant)
    successor = tenant.api_keys[view.key_id]
    return Outcome(value=api_key_view(successor, view.key))


def revoke_api_key(envelope: Envelope[RevokeApiKey], session: UnitOfWork) -> Outcome:
    key_id = envelope.command.key_id
    tenant = existing_tenant(session, envelope.tenant_id)
    tenant.revoke_api_key(key_id)
    session.add(tenant)
    return Outcome(value=api_key_view(tenant.api_keys[key_id]), created=False)


def get_tenant(envelope: Envelope[GetTenant], session: UnitOfWork) -> Outcome:
    tenant = session.tenant(envelope.tenant_id)
    if tenant is None:
        raise TenantNotFoundError(f"tenant {envelope.tenant_id} not found")
    return Outcome(value=tenant_view(tenant), created=False)

"""Tenants and API keys: the operator's routes (admin key) and a tenant's own (/v1/api-keys)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from eventsourcing.application import AggregateNotFoundError
from litestar import Request, Response, delete, get, patch, post
from litestar.params import JSONBody, Parameter

from api.http import wire
from api.http.accounts import SECURITY, answer
from api.http.problems import responses
from api.http.services import Services, services_of
from ledger import commands as c
from ledger.accounts.views import ApiKeyView, TenantView, api_key_view
from ledger.errors import TenantNotFoundError
from ledger.ids import check_tenant_id, tenant_aggregate_id
from ledger.tenants.tenant import Tenant

TenantIdParam = Annotated[
    str, Parameter(min_length=2, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
]
KeyIdParam = Annotated[str, Parameter(min_length=1, max_length=64)]
KEYS = "keys:manage"


def load_tenant(services: Services, tenant_id: str) -> Tenant:
    """Runs in a thread: the tenant as committed, straight from the store."""
    try:
        tenant = services.ledger.repository.get(tenant_aggregate_id(tenant_id))
    except AggregateNotFoundError:
        raise TenantNotFoundError(f"tenant {tenant_id} not found") from None
    assert isinstance(tenant, Tenant)
    return tenant


async def list_keys(services: Services, tenant_id: str) -> wire.ApiKeyList:
    check_tenant_id(tenant_id)
    tenant = await asyncio.to_thread(load_tenant, services, tenant_id)
    last_used = await asyncio.to_thread(services.key_usage.last_used, tenant_id)
    items = [
        api_key_view({**key, "last_used_at": last_used.get(key_id)})
        for key_id, key in tenant.api_keys.items()
    ]
    return wire.ApiKeyList(items=items)


async def create_key(services: Services, tenant_id: str, body: bytes) -> Response[Any]:
    data = wire.decode_strictly(body, wire.ApiKeyCreate)
    command = c.CreateApiKey(
        tenant_id=tenant_id, scopes=list(data.scopes), name=data.name, expires_at=data.expires_at
    )
    return answer(await services.writer.submit(command))


async def revoke_key(services: Services, tenant_id: str, key_id: str) -> None:
    await services.writer.submit(c.RevokeApiKey(tenant_id=tenant_id, key_id=key_id))
    services.auth.forget()  # this replica at once; the others within AUTH_CACHE_TTL_S


# ------------------------------------------------------------------ operator


@post(
    "/v1/tenants",
    summary="Create a tenant and its first API key (shown once)",
    responses=responses("forbidden", "conflict"),
    security=SECURITY,
)
async def create_tenant(
    request: Request[Any, Any, Any], data: JSONBody[wire.TenantCreate]
) -> Response[TenantView]:
    services = services_of(request)
    await services.auth.admin(request)
    data = await wire.strict_body(request, wire.TenantCreate)
    command = c.CreateTenant(
        tenant_id=data.tenant_id, name=data.name, settings=data.settings or c.TenantSettings()
    )
    return answer(await services.writer.submit(command))


@get(
    "/v1/tenants/{tenant_id:str}",
    summary="Read a tenant",
    responses=responses("forbidden", "not_found"),
    security=SECURITY,
)
async def read_tenant(request: Request[Any, Any, Any], tenant_id: TenantIdParam) -> TenantView:
    services = services_of(request)
    await services.auth.admin(request)
    outcome = await services.writer.submit(c.GetTenant(tenant_id=tenant_id))
    assert isinstance(outcome.value, TenantView)
    return outcome.value


@patch(
    "/v1/tenants/{tenant_id:str}",
    summary="Change a tenant's name or settings",
    responses=responses("forbidden", "not_found", "conflict"),
    security=SECURITY,
)
async def update_tenant(
    request: Request[Any, Any, Any], tenant_id: TenantIdParam, data: JSONBody[wire.TenantPatch]
) -> TenantView:
    services = services_of(request)
    await services.auth.admin(request)
    data = await wire.strict_body(request, wire.TenantPatch)
    outcome = await services.writer.submit(
        c.UpdateTenant(tenant_id=tenant_id, name=data.name, settings=data.settings)
    )
    assert isinstance(outcome.value, TenantView)
    return outcome.value


@post(
    "/v1/tenants/{tenant_id:str}/api-keys",
    summary="Create an API key for a tenant (the secret is shown once)",
    responses=responses("forbidden", "not_found", "conflict"),
    security=SECURITY,
)
async def create_tenant_key(
    request: Request[Any, Any, Any], tenant_id: TenantIdParam, data: JSONBody[wire.ApiKeyCreate]
) -> Response[ApiKeyView]:
    services = services_of(request)
    await services.auth.admin(request)
    return await create_key(services, tenant_id, await request.body())


@get(
    "/v1/tenants/{tenant_id:str}/api-keys",
    summary="A tenant's API keys (never the secrets)",
    responses=responses("forbidden", "not_found"),
    security=SECURITY,
)
async def list_tenant_keys(
    request: Request[Any, Any, Any], tenant_id: TenantIdParam
) -> wire.ApiKeyList:
    services = services_of(request)
    await services.auth.admin(request)
    return await list_keys(services, tenant_id)


@delete(
    "/v1/tenants/{tenant_id:str}/api-keys/{key_id:str}",
    summary="Revoke an API key: 401 from then on, on every replica within 1 s",
    responses=responses("forbidden", "not_found"),
    security=SECURITY,
)
async def revoke_tenant_key(
    request: Request[Any, Any, Any], tenant_id: TenantIdParam, key_id: KeyIdParam
) -> None:
    services = services_of(request)
    await services.auth.admin(request)
    await revoke_key(services, tenant_id, key_id)


# ------------------------------------------------------------------ a tenant's own keys


@post(
    "/v1/api-keys",
    summary="Create an API key for the caller's tenant (scope keys:manage)",
    responses=responses("forbidden", "conflict"),
    security=SECURITY,
)
async def create_own_key(
    request: Request[Any, Any, Any], data: JSONBody[wire.ApiKeyCreate]
) -> Response[ApiKeyView]:
    services = services_of(request)
    principal = await services.auth.tenant(request, KEYS)
    return await create_key(services, principal.tenant(), await request.body())


@get(
    "/v1/api-keys",
    summary="The caller's tenant's API keys",
    responses=responses("forbidden"),
    security=SECURITY,
)
async def list_own_keys(request: Request[Any, Any, Any]) -> wire.ApiKeyList:
    services = services_of(request)
    principal = await services.auth.tenant(request, KEYS)
    return await list_keys(services, principal.tenant())


@delete(
    "/v1/api-keys/{key_id:str}",
    summary="Revoke one of the caller's tenant's API keys",
    responses=responses("forbidden", "not_found"),
    security=SECURITY,
)
async def revoke_own_key(request: Request[Any, Any, Any], key_id: KeyIdParam) -> None:
    services = services_of(request)
    principal = await services.auth.tenant(request, KEYS)
    await revoke_key(services, principal.tenant(), key_id)


ROUTES = [
    create_tenant,
    read_tenant,
    update_tenant,
    create_tenant_key,
    list_tenant_keys,
    revoke_tenant_key,
    create_own_key,
    list_own_keys,
    revoke_own_key,
]

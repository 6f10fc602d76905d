"""Tenants and their API keys: the operator's routes (admin key) and a tenant's own keys
(/v1/api-keys, scope keys:manage): create, list, rotate, revoke."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from eventsourcing.application import AggregateNotFoundError
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody

from api.http.body import body_of
from api.http.command_routes import answer, refuse_key_in_body
from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import operator_key, tenant_key
from api.http.parameters import SECURITY, IdempotencyHeader, KeyIdParam, TenantIdParam
from api.http.problems import ApiError, responses
from api.http.services import Services
from ledger.commands import Envelope
from ledger.errors import TenantNotFoundError
from ledger.ids import check_tenant_id, tenant_aggregate_id
from ledger.tenants.api_keys import KEYS_MANAGE
from ledger.tenants.commands import (
    CreateApiKey,
    CreateTenant,
    GetTenant,
    RevokeApiKey,
    RotateApiKey,
    UpdateTenant,
)
from ledger.tenants.tenant import Tenant
from ledger.tenants.views import ApiKeyView, TenantView, api_key_view


class ApiKeyList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ApiKeyView]


def load_tenant(services: Services, tenant_id: str) -> Tenant:
    """Runs in a thread: the tenant as committed, straight from the store."""
    try:
        tenant: Any = services.ledger.repository.get(tenant_aggregate_id(tenant_id))
    except AggregateNotFoundError:
        raise TenantNotFoundError(f"tenant {tenant_id} not found") from None
    assert isinstance(tenant, Tenant)
    return tenant


async def list_keys(services: Services, tenant_id: str) -> ApiKeyList:
    check_tenant_id(tenant_id)
    tenant = await asyncio.to_thread(load_tenant, services, tenant_id)
    last_used = await asyncio.to_thread(services.key_usage.last_used, tenant_id)
    items = [
        api_key_view(key, last_used_at=last_used.get(key_id))
        for key_id, key in tenant.api_keys.items()
    ]
    return ApiKeyList(items=items)


async def create_key(
    services: Services, tenant_id: str, command: CreateApiKey, key_id: str | None
) -> Response[Any]:
    refuse_key_in_body(command)
    envelope = Envelope(tenant_id=tenant_id, command=command, key_id=key_id)
    return answer(await services.writer.submit(envelope))


async def rotate_key(
    services: Services,
    tenant_id: str,
    rotated: str,
    data: RotateApiKey | None,
    idempotency_key: str | None,
    key_id: str | None,
) -> Response[Any]:
    """A successor of `rotated` (its secret in this answer only); the rotated key's new expiry
    reaches this replica at once and the others within AUTH_CACHE_TTL_S."""
    command = data or RotateApiKey()
    if command.key_id:
        raise ApiError("validation_error", "key_id is given by the path; leave it out of the body")
    refuse_key_in_body(command)
    command = msgspec.structs.replace(command, key_id=rotated, idempotency_key=idempotency_key)
    outcome = await services.writer.submit(
        Envelope(tenant_id=tenant_id, command=command, key_id=key_id)
    )
    services.auth.forget()
    return answer(outcome)


ROTATE_BODY = body_of(RotateApiKey, excluded=("key_id", "idempotency_key"), optional=True)
ROTATE_SUMMARY = (
    "Rotate an API key: a successor with its scopes, name and expiry (the secret shown once); "
    "the key keeps working for grace_s seconds"
)


async def revoke_key(services: Services, tenant_id: str, revoked: str, key_id: str | None) -> None:
    command = RevokeApiKey(key_id=revoked)
    await services.writer.submit(Envelope(tenant_id=tenant_id, command=command, key_id=key_id))
    services.auth.forget()  # this replica at once; the others within AUTH_CACHE_TTL_S


class TenantController(Controller):
    """The platform operator's routes."""

    path = "/v1/tenants"
    tags = ["tenants"]
    guards = [operator_key]
    security = SECURITY

    @post(
        "/",
        summary="Create a tenant and its first API key (shown once)",
        responses=responses("forbidden", "conflict"),
        dto=body_of(CreateTenant, excluded=("idempotency_key",)),
        return_dto=None,
    )
    async def create_tenant(
        self, services: ServicesDep, data: JSONBody[CreateTenant]
    ) -> Response[TenantView]:
        refuse_key_in_body(data)
        return answer(
            await services.writer.submit(Envelope(tenant_id=data.tenant_id, command=data))
        )

    @get("/{tenant_id:str}", summary="Read a tenant", responses=responses("forbidden", "not_found"))
    async def read_tenant(self, services: ServicesDep, tenant_id: TenantIdParam) -> TenantView:
        outcome = await services.writer.submit(Envelope(tenant_id=tenant_id, command=GetTenant()))
        assert isinstance(outcome.value, TenantView)
        return outcome.value

    @patch(
        "/{tenant_id:str}",
        summary="Change a tenant's name or settings",
        responses=responses("forbidden", "not_found", "conflict"),
        dto=body_of(UpdateTenant, excluded=("idempotency_key",)),
        return_dto=None,
    )
    async def update_tenant(
        self, services: ServicesDep, tenant_id: TenantIdParam, data: JSONBody[UpdateTenant]
    ) -> TenantView:
        refuse_key_in_body(data)
        outcome = await services.writer.submit(Envelope(tenant_id=tenant_id, command=data))
        assert isinstance(outcome.value, TenantView)
        return outcome.value

    @post(
        "/{tenant_id:str}/api-keys",
        summary="Create an API key for a tenant (the secret is shown once)",
        responses=responses("forbidden", "not_found", "conflict"),
        dto=body_of(CreateApiKey, excluded=("idempotency_key",)),
        return_dto=None,
    )
    async def create_tenant_key(
        self, services: ServicesDep, tenant_id: TenantIdParam, data: JSONBody[CreateApiKey]
    ) -> Response[ApiKeyView]:
        return await create_key(services, tenant_id, data, None)

    @post(
        "/{tenant_id:str}/api-keys/{key_id:str}/rotate",
        summary=ROTATE_SUMMARY,
        responses=responses(
            "forbidden", "not_found", "conflict", "idempotency_key_reused", "idempotency_key_in_use"
        ),
        dto=ROTATE_BODY,
        return_dto=None,
    )
    async def rotate_tenant_key(
        self,
        services: ServicesDep,
        tenant_id: TenantIdParam,
        key_id: KeyIdParam,
        idempotency_key: IdempotencyHeader,
        data: JSONBody[RotateApiKey | None] = None,
    ) -> Response[ApiKeyView]:
        return await rotate_key(services, tenant_id, key_id, data, idempotency_key, None)

    @get(
        "/{tenant_id:str}/api-keys",
        summary="A tenant's API keys (never the secrets)",
        responses=responses("forbidden", "not_found"),
    )
    async def list_tenant_keys(self, services: ServicesDep, tenant_id: TenantIdParam) -> ApiKeyList:
        return await list_keys(services, tenant_id)

    @delete(
        "/{tenant_id:str}/api-keys/{key_id:str}",
        summary="Revoke an API key: 401 from then on, on every replica within 1 s",
        responses=responses("forbidden", "not_found"),
    )
    async def revoke_tenant_key(
        self, services: ServicesDep, tenant_id: TenantIdParam, key_id: KeyIdParam
    ) -> None:
        await revoke_key(services, tenant_id, key_id, None)


class OwnApiKeyController(Controller):
    """A tenant's own keys (scope keys:manage)."""

    path = "/v1/api-keys"
    tags = ["api-keys"]
    guards = [tenant_key(KEYS_MANAGE)]
    security = SECURITY

    @post(
        "/",
        summary="Create an API key for the caller's tenant (scope keys:manage)",
        responses=responses("forbidden", "conflict"),
        dto=body_of(CreateApiKey, excluded=("idempotency_key",)),
        return_dto=None,
    )
    async def create_own_key(
        self, principal: PrincipalDep, services: ServicesDep, data: JSONBody[CreateApiKey]
    ) -> Response[ApiKeyView]:
        return await create_key(services, principal.tenant(), data, principal.key_id)

    @get("/", summary="The caller's tenant's API keys", responses=responses("forbidden"))
    async def list_own_keys(self, principal: PrincipalDep, services: ServicesDep) -> ApiKeyList:
        return await list_keys(services, principal.tenant())

    @post(
        "/{key_id:str}/rotate",
        summary=ROTATE_SUMMARY + " (scope keys:manage)",
        responses=responses(
            "forbidden", "not_found", "conflict", "idempotency_key_reused", "idempotency_key_in_use"
        ),
        dto=ROTATE_BODY,
        return_dto=None,
    )
    async def rotate_own_key(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        key_id: KeyIdParam,
        idempotency_key: IdempotencyHeader,
        data: JSONBody[RotateApiKey | None] = None,
    ) -> Response[ApiKeyView]:
        return await rotate_key(
            services, principal.tenant(), key_id, data, idempotency_key, principal.key_id
        )

    @delete(
        "/{key_id:str}",
        summary="Revoke one of the caller's tenant's API keys",
        responses=responses("forbidden", "not_found"),
    )
    async def revoke_own_key(
        self, principal: PrincipalDep, services: ServicesDep, key_id: KeyIdParam
    ) -> None:
        await revoke_key(services, principal.tenant(), key_id, principal.key_id)

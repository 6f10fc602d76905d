"""Tenants and their API keys: the operator's routes (admin key) and a tenant's own keys
(/v1/api-keys, scope keys:manage): create, list, rotate, revoke."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from eventsourcing.application import AggregateNotFoundError
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody, QueryParameter

from api.http.body import body_of
from api.http.command_routes import answer, refuse_key_in_body
from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import operator_key, tenant_key
from api.http.parameters import (
    SECURITY,
    AccountIdParam,
    IdempotencyHeader,
    KeyIdParam,
    TenantIdParam,
)
from api.http.problems import ApiError, responses
from api.http.read_models import read_models
from api.http.services import Services
from ledger.accounts.commands import GrantCredits
from ledger.accounts.views import Entry
from ledger.commands import Envelope
from ledger.errors import TenantNotFoundError
from ledger.ids import check_tenant_id, tenant_aggregate_id
from ledger.tenants.api_keys import KEYS_MANAGE
from ledger.tenants.commands import (
    CreateApiKey,
    CreateTenant,
    DisableTenant,
    EnableTenant,
    GetTenant,
    RevokeApiKey,
    RotateApiKey,
    UpdateTenant,
)
from ledger.tenants.tenant import Tenant
from ledger.tenants.views import ApiKeyView, TenantView, api_key_view, tenant_view
from projections.tenant_directory import tenant_ids

# A page of the operator's tenant list holds at most this many tenants (each is one aggregate
# load: the list shows their current name and status).
TENANT_PAGE_SIZE_MAX = 100
TENANT_PAGE_SIZE_DEFAULT = 50
TenantPrefix = Annotated[
    str,
    QueryParameter(
        max_length=63,
        pattern=r"^[a-z0-9-]*$",
        description="Only tenants whose id starts with this",
    ),
]
TenantAfter = Annotated[
    str,
    QueryParameter(
        max_length=63,
        pattern=r"^[a-z0-9-]*$",
        description="Tenants after this id (the `next_after` of the page before)",
    ),
]
TenantLimit = Annotated[int, QueryParameter(ge=1, le=TENANT_PAGE_SIZE_MAX)]


# Who an entry says sent a command with the operator's key through the API (the console names
# its session instead).
OPERATOR_ACTOR = "operator"


class ApiKeyList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ApiKeyView]


class TenantPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TenantView]
    next_after: str | None  # the last item's tenant_id when the page is full


class DisableBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1_000)]


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


async def list_tenants(services: Services, prefix: str, after: str, limit: int) -> TenantPage:
    """The tenants by id, with their current name, settings and status."""
    models = read_models(services)
    ids = await tenant_ids(models.pool, services.settings.schema, prefix, after, limit)

    def load_all() -> list[TenantView]:
        return [tenant_view(load_tenant(services, tenant_id)) for tenant_id in ids]

    items = await asyncio.to_thread(load_all)
    return TenantPage(items=items, next_after=ids[-1] if len(ids) == limit else None)


async def set_tenant_disabled(
    services: Services, tenant_id: str, reason: str | None, actor: str | None = None
) -> TenantView:
    """Disables (a reason given) or enables (None) a tenant. Its keys answer 401 at once on
    this replica and within AUTH_CACHE_TTL_S on the others; its data stays."""
    command: DisableTenant | EnableTenant = (
        EnableTenant() if reason is None else DisableTenant(reason=reason)
    )
    envelope = Envelope(tenant_id=tenant_id, command=command, actor=actor)
    outcome = await services.writer.submit(envelope)
    services.auth.forget()
    assert isinstance(outcome.value, TenantView)
    return outcome.value


async def operator_grant(
    services: Services,
    tenant_id: str,
    account_id: str,
    command: GrantCredits,
    idempotency_key: str | None,
    actor: str = OPERATOR_ACTOR,
) -> Response[Any]:
    """A grant the platform operator makes in a tenant's account (a recharge); its entry's
    `actor` says so (`operator`, or the console's session)."""
    check_tenant_id(tenant_id)
    if command.account_id:
        raise ApiError(
            "validation_error", "account_id is given by the path; leave it out of the body"
        )
    refuse_key_in_body(command)
    grant = msgspec.structs.replace(command, account_id=account_id, idempotency_key=idempotency_key)
    envelope = Envelope(tenant_id=tenant_id, command=grant, actor=actor)
    return answer(await services.writer.submit(envelope))


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

    @get(
        "/",
        summary="List tenants by id, with their current name, settings and status",
        responses=responses("forbidden"),
    )
    async def list_all_tenants(
        self,
        services: ServicesDep,
        prefix: TenantPrefix = "",
        after: TenantAfter = "",
        limit: TenantLimit = TENANT_PAGE_SIZE_DEFAULT,
    ) -> TenantPage:
        """Tenants in the order of their ids (byte order), `limit` at a time; pass a page's
        `next_after` as `after` for the next. `prefix` keeps those whose id starts with it."""
        return await list_tenants(services, prefix, after, limit)

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

    @post(
        "/{tenant_id:str}/disable",
        status_code=200,
        summary="Disable a tenant: its keys answer 401 (every replica within 1 s), its data stays",
        responses=responses("forbidden", "not_found"),
    )
    async def disable_tenant(
        self, services: ServicesDep, tenant_id: TenantIdParam, data: JSONBody[DisableBody]
    ) -> TenantView:
        """Disabling a disabled tenant answers it again, unchanged (its first reason stays)."""
        return await set_tenant_disabled(services, tenant_id, data.reason)

    @post(
        "/{tenant_id:str}/enable",
        status_code=200,
        summary="Enable a disabled tenant: its keys that are not revoked or expired work again",
        responses=responses("forbidden", "not_found"),
    )
    async def enable_tenant(self, services: ServicesDep, tenant_id: TenantIdParam) -> TenantView:
        """Enabling a tenant that is not disabled answers it, unchanged."""
        return await set_tenant_disabled(services, tenant_id, None)

    @post(
        "/{tenant_id:str}/accounts/{account_id:str}/grants",
        summary="Recharge a tenant's account: a grant recorded as the operator's",
        responses=responses(
            "forbidden", "not_found", "conflict", "idempotency_key_reused", "idempotency_key_in_use"
        ),
        dto=body_of(GrantCredits, excluded=("account_id", "idempotency_key")),
        return_dto=None,
    )
    async def grant_in_tenant(
        self,
        services: ServicesDep,
        tenant_id: TenantIdParam,
        account_id: AccountIdParam,
        data: JSONBody[GrantCredits],
        idempotency_key: IdempotencyHeader = None,
    ) -> Response[Entry]:
        """The body of a tenant's own grant (`amount`, `reason`, `expires_at`, `priority`,
        `metadata`). The envelope carries no key id: the operator made it."""
        return await operator_grant(services, tenant_id, account_id, data, idempotency_key)


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

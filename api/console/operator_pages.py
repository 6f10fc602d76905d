"""The operator's pages: tenants (list and search, create, settings, disable and enable), their
keys (issue and revoke, the secret shown once) and recharges (a grant recorded as the
operator's). Each page calls what the API's routes call (api/http/tenants.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from api.console.forms import (
    QueryText,
    command,
    id_prefix,
    int_field,
    new_idempotency_key,
    notice_of,
    operator_or_not_found,
    path_of,
    record,
    redirect,
    require_operator,
    text_field,
)
from api.console.rendering import page
from api.console.sessions import Me, check_csrf, signed_in
from api.console.store import store_of
from api.http.dependencies import ServicesDep
from api.http.parameters import KeyIdParam, TenantIdParam
from api.http.services import Services
from api.http.tenants import (
    DisableBody,
    list_keys,
    list_tenants,
    load_tenant,
    revoke_key,
    set_tenant_disabled,
)
from ledger.accounts.commands import GrantCredits
from ledger.accounts.views import Entry
from ledger.commands import Envelope
from ledger.ids import check_tenant_id
from ledger.tenants.api_keys import SCOPES
from ledger.tenants.commands import CreateApiKey, CreateTenant, UpdateTenant
from ledger.tenants.settings import TenantSettings, TenantSettingsPatch
from ledger.tenants.views import ApiKeyView, TenantView, tenant_view

TENANTS_PAGE_SIZE = 25
RECENT_ACTIONS = 20


@get("/tenants", name="console_tenants")
async def tenants(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    prefix: QueryText = None,
    after: QueryText = None,
) -> Response[str]:
    me = await signed_in(services, request)
    require_operator(me)
    search = id_prefix(prefix, "the search")
    listed = await list_tenants(services, search, id_prefix(after, "after"), TENANTS_PAGE_SIZE)
    return page(
        "tenants.html",
        me=me,
        tenants=listed.items,
        prefix=search,
        next_after=listed.next_after,
        paged=bool(after),
        notice=notice_of(request.query_params.get("notice")),
    )


@get("/tenants/new", name="console_tenant_new")
async def new_tenant(request: Request[Any, Any, Any], services: ServicesDep) -> Response[str]:
    me = await signed_in(services, request)
    require_operator(me)
    return page("tenant_new.html", me=me)


def settings_of(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "signup_bonus": int_field(fields, "signup_bonus", required=False) or 0,
        "overdraft_limit": int_field(fields, "overdraft_limit", required=False) or 0,
        "low_balance_threshold": int_field(fields, "low_balance_threshold", required=False),
        "signup_bonus_expires_in_days": int_field(
            fields, "signup_bonus_expires_in_days", required=False
        ),
    }


@post("/tenants", name="console_tenant_create")
async def create_tenant(request: Request[Any, Any, Any], services: ServicesDep) -> Response[str]:
    me = await signed_in(services, request)
    require_operator(me)
    fields = await check_csrf(services, request, me)
    created = command(
        CreateTenant,
        tenant_id=text_field(fields, "tenant_id"),
        name=text_field(fields, "name"),
        settings=command(TenantSettings, **settings_of(fields)),
    )
    outcome = await services.writer.submit(
        Envelope(tenant_id=created.tenant_id, command=created, actor=me.actor)
    )
    view = outcome.value
    assert isinstance(view, TenantView)
    await record(services, me, view.tenant_id, "tenant created", detail=view.name)
    return await tenant_page(services, me, view.tenant_id, secret=view.api_key, status=201)


async def tenant_page(
    services: Services,
    me: Me,
    tenant_id: TenantIdParam,
    *,
    secret: ApiKeyView | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response[str]:
    check_tenant_id(tenant_id)
    tenant = await asyncio.to_thread(load_tenant, services, tenant_id)
    keys = await list_keys(services, tenant_id)
    store = await store_of(services).ready()
    actions = await store.actions(tenant_id, None, RECENT_ACTIONS)
    return page(
        "tenant.html",
        status=status,
        me=me,
        tenant=tenant_view(tenant),
        keys=keys.items,
        secret=secret,
        scopes=SCOPES,
        actions=[action for _, action in actions],
        notice=notice,
    )


@get("/tenants/{tenant_id:str}", name="console_tenant")
async def tenant(
    request: Request[Any, Any, Any], services: ServicesDep, tenant_id: TenantIdParam
) -> Response[str]:
    me = await signed_in(services, request)
    operator_or_not_found(me)
    return await tenant_page(
        services, me, tenant_id, notice=notice_of(request.query_params.get("notice"))
    )


@post("/tenants/{tenant_id:str}/settings", name="console_tenant_settings")
async def change_settings(
    request: Request[Any, Any, Any], services: ServicesDep, tenant_id: TenantIdParam
) -> Redirect:
    me = await signed_in(services, request)
    operator_or_not_found(me)
    fields = await check_csrf(services, request, me)
    changed = command(
        UpdateTenant,
        name=text_field(fields, "name") or None,
        settings=command(TenantSettingsPatch, **settings_of(fields)),
    )
    await services.writer.submit(Envelope(tenant_id=tenant_id, command=changed, actor=me.actor))
    await record(services, me, tenant_id, "settings changed")
    return redirect(path_of("tenants", tenant_id), "settings")


@post("/tenants/{tenant_id:str}/disable", name="console_tenant_disable")
async def disable(
    request: Request[Any, Any, Any], services: ServicesDep, tenant_id: TenantIdParam
) -> Redirect:
    me = await signed_in(services, request)
    operator_or_not_found(me)
    fields = await check_csrf(services, request, me)
    reason = text_field(fields, "reason")
    command(DisableBody, reason=reason)  # checked as the API's body is
    await set_tenant_disabled(services, tenant_id, reason, actor=me.actor)
    await record(services, me, tenant_id, "tenant disabled", detail=reason)
    return redirect(path_of("tenants", tenant_id), "disabled")


@post("/tenants/{tenant_id:str}/enable", name="console_tenant_enable")
async def enable(
    request: Request[Any, Any, Any], services: ServicesDep, tenant_id: TenantIdParam
) -> Redirect:
    me = await signed_in(services, request)
    operator_or_not_found(me)
    await check_csrf(services, request, me)
    await set_tenant_disabled(services, tenant_id, None, actor=me.actor)
    await record(services, me, tenant_id, "tenant enabled")
    return redirect(path_of("tenants", tenant_id), "enabled")


def scopes_of(form: Any) -> list[str]:
    return [str(scope) for scope in form.getall("scopes", []) if str(scope) in SCOPES]


async def issue_key(services: Services, me: Me, tenant_id: TenantIdParam, form: Any) -> ApiKeyView:
    """The new key, its secret in the answer (and nowhere else)."""
    fields = {name: str(value) for name, value in form.items()}
    issued = command(
        CreateApiKey,
        scopes=scopes_of(form),
        name=text_field(fields, "name"),
        expires_at=text_field(fields, "expires_at") or None,
    )
    outcome = await services.writer.submit(
        Envelope(tenant_id=tenant_id, command=issued, key_id=me.principal.key_id, actor=me.actor)
    )
    view = outcome.value
    assert isinstance(view, ApiKeyView)
    await record(
        services, me, tenant_id, "key issued", detail=f"{view.key_id} {' '.join(view.scopes)}"
    )
    return view


@post("/tenants/{tenant_id:str}/keys", name="console_tenant_key_issue")
async def issue_tenant_key(
    request: Request[Any, Any, Any], services: ServicesDep, tenant_id: TenantIdParam
) -> Response[str]:
    me = await signed_in(services, request)
    operator_or_not_found(me)
    await check_csrf(services, request, me)
    view = await issue_key(services, me, tenant_id, await request.form())
    return await tenant_page(services, me, tenant_id, secret=view, status=201)


@post("/tenants/{tenant_id:str}/keys/{key_id:str}/revoke", name="console_tenant_key_revoke")
async def revoke_tenant_key(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    tenant_id: TenantIdParam,
    key_id: KeyIdParam,
) -> Redirect:
    me = await signed_in(services, request)
    operator_or_not_found(me)
    await check_csrf(services, request, me)
    await revoke_key(services, tenant_id, key_id, None)
    await record(services, me, tenant_id, "key revoked", detail=key_id)
    return redirect(path_of("tenants", tenant_id), "revoked")


@post("/tenants/{tenant_id:str}/recharge", name="console_tenant_recharge")
async def recharge(
    request: Request[Any, Any, Any], services: ServicesDep, tenant_id: TenantIdParam
) -> Response[Any]:
    """Review (the form), then confirm (the confirmation page's form): one grant, once."""
    me = await signed_in(services, request)
    operator_or_not_found(me)
    fields = await check_csrf(services, request, me)
    account_id = text_field(fields, "account_id")
    grant = command(
        GrantCredits,
        account_id=account_id,
        amount=int_field(fields, "amount"),
        reason=text_field(fields, "reason"),
    )
    back = path_of("tenants", tenant_id)
    if fields.get("step") != "confirm":
        await asyncio.to_thread(load_tenant, services, tenant_id)  # 404 before asking
        return page(
            "confirm.html",
            me=me,
            title=f"Recharge an account of {tenant_id}",
            action=back + "/recharge",
            back=back,
            summary=[
                ("Tenant", tenant_id),
                ("Account", account_id),
                ("Credits", f"+{grant.amount:,}"),
                ("Reason", grant.reason),
                ("Recorded as", "the platform operator"),
            ],
            hidden={
                "account_id": account_id,
                "amount": str(grant.amount),
                "reason": grant.reason,
                "idempotency_key": new_idempotency_key(),
            },
        )
    keyed = command(
        GrantCredits,
        account_id=account_id,
        amount=grant.amount,
        reason=grant.reason,
        idempotency_key=text_field(fields, "idempotency_key") or None,
    )
    outcome = await services.writer.submit(
        Envelope(tenant_id=tenant_id, command=keyed, actor=me.actor)
    )
    entry = outcome.value
    assert isinstance(entry, Entry)
    if not outcome.replayed:
        await record(
            services,
            me,
            tenant_id,
            "recharge",
            account_id=account_id,
            position=entry.position,
            detail=f"+{entry.amount} {grant.reason}",
        )
    return redirect(back, "recharged")


ROUTES = [
    tenants,
    new_tenant,
    create_tenant,
    tenant,
    change_settings,
    disable,
    enable,
    issue_tenant_key,
    revoke_tenant_key,
    recharge,
]

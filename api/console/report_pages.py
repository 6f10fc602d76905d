"""A tenant's reports in the console: usage charts by day and by operation over a date range,
the audit (who did what through the console, the entries with who made them where that is
known, and the replay check), and the tenant's own API keys."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from api.console.charts import Point, bars, columns, days_between
from api.console.forms import (
    QueryFlag,
    QueryPosition,
    QueryText,
    notice_of,
    record,
    redirect,
    require_scope,
)
from api.console.operator_pages import issue_key
from api.console.reads import newest_entries
from api.console.rendering import page
from api.console.sessions import check_csrf, signed_in
from api.console.store import store_of
from api.http.dependencies import ServicesDep
from api.http.parameters import KeyIdParam
from api.http.problems import ApiError
from api.http.read_models import read_models
from api.http.reports import USAGE_DAYS_DEFAULT
from api.http.tenants import list_keys, revoke_key
from ledger.ids import check_account_id
from ledger.tenants.api_keys import KEYS_MANAGE, REPORTS_READ, SCOPES
from projections.audit import compare_with_read_models
from projections.queries import USAGE_DAYS_MAX

AUDIT_PAGE_SIZE = 50


def day_of(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError("validation_error", f"{name} must be a date (2026-11-01)") from None


@get("/usage", name="console_usage")
async def usage(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    account_id: QueryText = None,
) -> Response[str]:
    """`from` and `to` (dates, `to` inclusive) as /v1/usage takes them."""
    me = await signed_in(services, request)
    require_scope(me, REPORTS_READ)
    query = request.query_params
    last = day_of(query.get("to"), "to") or datetime.now(tz=UTC).date()
    first = day_of(query.get("from"), "from") or last - timedelta(days=USAGE_DAYS_DEFAULT - 1)
    if last < first or (last - first).days >= USAGE_DAYS_MAX:
        raise ApiError(
            "validation_error", f"from..to must be 1 to {USAGE_DAYS_MAX} days, from first"
        )
    account = (account_id or "").strip() or None
    if account is not None:
        check_account_id(account)
    models = read_models(services)
    tenant = me.principal.tenant()
    by_day = await models.usage(tenant, first, last, ["day"], account)
    by_operation = await models.usage(tenant, first, last, ["operation"], account)
    daily = {row.day: row.credits for row in by_day.items if row.day is not None}
    operations = [Point(row.operation or "", row.credits) for row in by_operation.items]
    return page(
        "usage.html",
        me=me,
        first=first,
        last=last,
        account_id=account or "",
        total=by_day.total,
        days_chart=columns(days_between(first, last, daily), "Credits used per day"),
        operations_chart=bars(operations, "Credits used per operation"),
        by_day=by_day.items,
        by_operation=by_operation.items,
    )


@get("/audit", name="console_audit")
async def audit(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    before: QueryPosition = None,
    verify: QueryFlag = False,
) -> Response[str]:
    me = await signed_in(services, request)
    require_scope(me, REPORTS_READ)
    tenant = me.principal.tenant()
    store = await store_of(services).ready()
    actions = await store.actions(tenant, None, AUDIT_PAGE_SIZE)
    entries = await newest_entries(services, tenant, None, before, AUDIT_PAGE_SIZE)
    made_by = await store.actions_at(tenant, [entry.position for entry in entries])
    verification = None
    if verify:
        models = read_models(services)
        await models.wait_for(await services.store_position())
        async with models.pool.acquire() as conn:
            verification = await compare_with_read_models(
                conn, services.settings.schema, services.mapper, tenant
            )
    return page(
        "audit.html",
        me=me,
        actions=[action for _, action in actions],
        entries=entries,
        made_by=made_by,
        older=entries[-1].position if len(entries) == AUDIT_PAGE_SIZE else None,
        verification=verification,
    )


@get("/keys", name="console_keys")
async def keys(request: Request[Any, Any, Any], services: ServicesDep) -> Response[str]:
    me = await signed_in(services, request)
    require_scope(me, KEYS_MANAGE)
    listed = await list_keys(services, me.principal.tenant())
    return page(
        "keys.html",
        me=me,
        keys=listed.items,
        scopes=SCOPES,
        secret=None,
        notice=notice_of(request.query_params.get("notice")),
    )


@post("/keys", name="console_key_issue")
async def issue(request: Request[Any, Any, Any], services: ServicesDep) -> Response[str]:
    me = await signed_in(services, request)
    require_scope(me, KEYS_MANAGE)
    await check_csrf(services, request, me)
    tenant = me.principal.tenant()
    view = await issue_key(services, me, tenant, await request.form())
    listed = await list_keys(services, tenant)
    return page("keys.html", status=201, me=me, keys=listed.items, scopes=SCOPES, secret=view)


@post("/keys/{key_id:str}/revoke", name="console_key_revoke")
async def revoke(
    request: Request[Any, Any, Any], services: ServicesDep, key_id: KeyIdParam
) -> Redirect:
    me = await signed_in(services, request)
    require_scope(me, KEYS_MANAGE)
    await check_csrf(services, request, me)
    tenant = me.principal.tenant()
    await revoke_key(services, tenant, key_id, me.principal.key_id)
    await record(services, me, tenant, "key revoked", detail=key_id)
    return redirect("/console/keys", "revoked")


ROUTES = [usage, audit, keys, issue, revoke]

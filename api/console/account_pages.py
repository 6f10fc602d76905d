"""A tenant's accounts: the list and search, opening one, an account's page (balance, lots,
active holds, entries with the lots each drew from, a live feed) and its grant, adjust and
refund forms, each with a confirmation step."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.params import PathParameter
from litestar.response import Redirect

from api.console.forms import (
    QueryPosition,
    QueryText,
    command,
    int_field,
    new_idempotency_key,
    notice_of,
    path_of,
    record,
    redirect,
    require_scope,
    text_field,
)
from api.console.reads import (
    CONSOLE_PAGE_SIZE,
    accounts_page,
    active_holds,
    entry_rows,
    load_account,
    newest_entries,
)
from api.console.rendering import page
from api.console.sessions import Me, check_csrf, signed_in
from api.http.dependencies import ServicesDep
from api.http.parameters import AccountIdParam
from api.http.problems import ApiError
from api.http.services import Services
from api.http.stream_tokens import STREAM_TOKEN_TTL_S_DEFAULT
from ledger.accounts.commands import (
    AdjustBalance,
    GrantCredits,
    OpenAccount,
    RefundConsumption,
)
from ledger.accounts.views import AccountView, Entry, account_view
from ledger.commands import Command
from ledger.ids import check_account_id
from ledger.tenants.api_keys import ACCOUNTS_READ, ACCOUNTS_WRITE, CREDITS_CONSUME


@get("/accounts", name="console_accounts")
async def accounts(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    prefix: QueryText = None,
    after: QueryText = None,
) -> Response[str]:
    me = await signed_in(services, request)
    require_scope(me, ACCOUNTS_READ)
    search = (prefix or "").strip()[:128]
    rows = await accounts_page(services, me.principal.tenant(), search, after or "")
    next_after = rows[-1].account_id if len(rows) == CONSOLE_PAGE_SIZE else None
    return page(
        "accounts.html",
        me=me,
        accounts=rows,
        prefix=search,
        paged=bool(after),
        next_query=urlencode({"prefix": search, "after": next_after}) if next_after else None,
        can_open=me.can(ACCOUNTS_WRITE),
        notice=notice_of(request.query_params.get("notice")),
    )


@post("/accounts", name="console_account_open")
async def open_account(request: Request[Any, Any, Any], services: ServicesDep) -> Redirect:
    me = await signed_in(services, request)
    require_scope(me, ACCOUNTS_WRITE)
    fields = await check_csrf(services, request, me)
    account_id = text_field(fields, "account_id")
    opened = command(OpenAccount, account_id=account_id)
    check_account_id(opened.account_id)
    outcome = await services.writer.submit(me.envelope(opened))
    if outcome.created:
        view = outcome.value
        assert isinstance(view, AccountView)
        await record(
            services,
            me,
            me.principal.tenant(),
            "account opened",
            account_id=account_id,
            position=view.position or None,
        )
    return redirect(path_of("accounts", account_id), "opened")


def stream_url(services: Services, me: Me, account_id: AccountIdParam, after: int) -> str:
    """A live feed of the account for the page's script: a stream token of the signed-in key."""
    assert me.principal.key_id is not None
    token = services.stream_tokens.issue(
        me.principal.tenant(), me.principal.key_id, account_id, STREAM_TOKEN_TTL_S_DEFAULT
    )
    query = urlencode({"token": token.token, "account_id": account_id, "after": after})
    return f"/v1/stream?{query}"


@get("/accounts/{account_id:str}", name="console_account")
async def account(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    account_id: AccountIdParam,
    before: QueryPosition = None,
) -> Response[str]:
    me = await signed_in(services, request)
    require_scope(me, ACCOUNTS_READ)
    return await account_page(
        services, me, account_id, before, notice=notice_of(request.query_params.get("notice"))
    )


async def account_page(
    services: Services,
    me: Me,
    account_id: AccountIdParam,
    before: int | None = None,
    *,
    notice: str | None = None,
) -> Response[str]:
    check_account_id(account_id)
    tenant_id = me.principal.tenant()
    state = await asyncio.to_thread(load_account, services, tenant_id, account_id)
    entries = await newest_entries(services, tenant_id, account_id, before)
    rows = await entry_rows(services, tenant_id, entries)
    newest = entries[0].position if entries and before is None else 0
    return page(
        "account.html",
        me=me,
        account=account_view(state),
        holds=active_holds(state),
        rows=rows,
        consumptions=[e for e in entries if e.consumption_id and e.type in ("consume", "capture")],
        older=entries[-1].position if len(entries) == CONSOLE_PAGE_SIZE else None,
        paged=before is not None,
        live_url=stream_url(services, me, account_id, newest) if before is None else None,
        token_url=path_of("accounts", account_id, "stream-token"),
        base=path_of("accounts", account_id),
        can_write=me.can(ACCOUNTS_WRITE),
        can_refund=me.can(CREDITS_CONSUME),
        notice=notice,
    )


@get("/accounts/{account_id:str}/stream-token", name="console_account_stream")
async def account_stream(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    account_id: AccountIdParam,
    after: QueryPosition = None,
) -> dict[str, str]:
    """A fresh live-feed URL, for the page's script when its token has expired."""
    me = await signed_in(services, request)
    require_scope(me, ACCOUNTS_READ)
    check_account_id(account_id)
    await asyncio.to_thread(load_account, services, me.principal.tenant(), account_id)
    return {"url": stream_url(services, me, account_id, after or 0)}


# What each form does: (scope, notice, the command from the form, its summary lines).
def grant_of(account_id: str, fields: dict[str, str]) -> tuple[Command, list[tuple[str, str]]]:
    grant = command(
        GrantCredits,
        account_id=account_id,
        amount=int_field(fields, "amount"),
        reason=text_field(fields, "reason"),
        expires_at=text_field(fields, "expires_at") or None,
        idempotency_key=text_field(fields, "idempotency_key") or None,
    )
    summary = [("Credits", f"+{grant.amount:,}"), ("Reason", grant.reason)]
    if grant.expires_at is not None:
        summary.append(("Expires", grant.expires_at.isoformat()))
    return grant, summary


def adjustment_of(account_id: str, fields: dict[str, str]) -> tuple[Command, list[tuple[str, str]]]:
    adjusted = command(
        AdjustBalance,
        account_id=account_id,
        amount=int_field(fields, "amount"),
        reason=text_field(fields, "reason"),
        idempotency_key=text_field(fields, "idempotency_key") or None,
    )
    sign = "+" if adjusted.amount > 0 else ""
    return adjusted, [("Change", f"{sign}{adjusted.amount:,}"), ("Reason", adjusted.reason)]


def refund_of(account_id: str, fields: dict[str, str]) -> tuple[Command, list[tuple[str, str]]]:
    refunded = command(
        RefundConsumption,
        account_id=account_id,
        consumption_id=text_field(fields, "consumption_id"),
        amount=int_field(fields, "amount", required=False),
        reason=text_field(fields, "reason"),
        idempotency_key=text_field(fields, "idempotency_key") or None,
    )
    amount = "all that is still refundable" if refunded.amount is None else f"{refunded.amount:,}"
    return refunded, [
        ("Consumption", refunded.consumption_id),
        ("Credits back", amount),
        ("Reason", refunded.reason),
    ]


FORMS: dict[str, tuple[str, str, str, Any]] = {
    "grants": (ACCOUNTS_WRITE, "granted", "Grant credits", grant_of),
    "adjustments": (ACCOUNTS_WRITE, "adjusted", "Adjust the balance", adjustment_of),
    "refunds": (CREDITS_CONSUME, "refunded", "Refund a consumption", refund_of),
}
FormKind = Annotated[str, PathParameter(max_length=32)]
FORM_FIELDS = ("amount", "reason", "expires_at", "consumption_id")


@post("/accounts/{account_id:str}/{kind:str}", name="console_account_command")
async def account_command(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    account_id: AccountIdParam,
    kind: FormKind,
) -> Response[Any]:
    """Review (the account page's form), then confirm (the confirmation page's form)."""
    me = await signed_in(services, request)
    if kind not in FORMS:
        raise ApiError("validation_error", "unknown form")
    scope, notice, title, build = FORMS[kind]
    require_scope(me, scope)
    check_account_id(account_id)
    fields = await check_csrf(services, request, me)
    built, summary = build(account_id, fields)
    base = path_of("accounts", account_id)
    if fields.get("step") != "confirm":
        await asyncio.to_thread(load_account, services, me.principal.tenant(), account_id)
        hidden = {name: fields[name] for name in FORM_FIELDS if fields.get(name)}
        hidden["idempotency_key"] = new_idempotency_key()
        return page(
            "confirm.html",
            me=me,
            title=f"{title} — {account_id}",
            action=f"{base}/{kind}",
            back=base,
            summary=[("Account", account_id), *summary],
            hidden=hidden,
        )
    outcome = await services.writer.submit(me.envelope(built))
    entry = outcome.value
    assert isinstance(entry, Entry)
    if not outcome.replayed:
        await record(
            services,
            me,
            me.principal.tenant(),
            entry.type,
            account_id=account_id,
            position=entry.position,
            detail=f"{entry.amount:+} {entry.reason or ''}".strip(),
        )
    return redirect(base, notice)


ROUTES = [accounts, open_account, account, account_stream, account_command]

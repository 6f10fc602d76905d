"""Signing in and out, and the console's home (which sends each key to what it may see)."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from api.console.forms import notice_of, redirect
from api.console.rendering import page
from api.console.sessions import (
    COOKIE,
    COOKIE_PATH,
    SESSION_TTL_S,
    SIGN_IN_COOKIE,
    SIGN_IN_TTL_S,
    check_csrf,
    secure,
    sign_in,
    sign_out,
    signed_in,
)
from api.http.dependencies import ServicesDep
from api.http.problems import ApiError
from ledger.tenants.api_keys import ACCOUNTS_READ, KEYS_MANAGE, REPORTS_READ


def set_cookie(
    response: Response[Any], request: Request[Any, Any, Any], key: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        key=key,
        value=value,
        path=COOKIE_PATH,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def sign_in_page(
    request: Request[Any, Any, Any], error: str | None = None, status: int = 200
) -> Response[str]:
    value = secrets.token_urlsafe(24)
    response = page(
        "sign_in.html",
        status=status,
        form_token=value,
        error=error,
        notice=notice_of(request.query_params.get("notice")),
    )
    set_cookie(response, request, SIGN_IN_COOKIE, value, SIGN_IN_TTL_S)
    return response


@get("/sign-in", name="console_sign_in_page")
async def sign_in_form(request: Request[Any, Any, Any]) -> Response[str]:
    return sign_in_page(request)


@post("/sign-in", name="console_sign_in", status_code=303)
async def sign_in_submit(request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
    form = await request.form()
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    given = str(form.get("form_token", ""))
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return sign_in_page(
            request, "The sign-in form expired or was not sent by this console; try again.", 403
        )
    try:
        token = await sign_in(services, request, str(form.get("key", "")).strip())
    except ApiError as error:
        return sign_in_page(request, error.detail, 401 if error.code == "unauthorized" else 429)
    response = Redirect("/console", status_code=303)
    set_cookie(response, request, COOKIE, token, SESSION_TTL_S)
    set_cookie(response, request, SIGN_IN_COOKIE, "", 0)
    return response


@post("/sign-out", name="console_sign_out", status_code=303)
async def sign_out_submit(request: Request[Any, Any, Any], services: ServicesDep) -> Redirect:
    me = await signed_in(services, request)
    await check_csrf(services, request, me)
    await sign_out(services, request)
    response = redirect("/console/sign-in", "signed_out")
    set_cookie(response, request, COOKIE, "", 0)
    return response


@get("/", name="console_home")
async def home(request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
    me = await signed_in(services, request)
    if me.operator:
        return Redirect("/console/tenants", status_code=303)
    for scope, target in (
        (ACCOUNTS_READ, "/console/accounts"),
        (REPORTS_READ, "/console/usage"),
        (KEYS_MANAGE, "/console/keys"),
    ):
        if me.can(scope):
            return Redirect(target, status_code=303)
    return page("nothing.html", me=me)

"""The console's routes, as one Router create_app registers (`api/http/app.py`): its pages,
its static files, and how an error of any of them is shown (a page, not a problem document)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from litestar import Request, Response, Router
from litestar.exceptions import HTTPException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from api.console import account_pages, operator_pages, report_pages, signing
from api.console.forms import NOTICES
from api.console.rendering import STATIC_PATH, page
from api.console.sessions import SignInRequired
from api.http.problems import ApiError, problem, problem_of
from ledger.errors import LedgerError

log = structlog.get_logger("api.console")

STATIC_DIRECTORY = Path(str(files("api.console") / "static"))
assert "ended" in NOTICES


def back_of(request: Request[Any, Any, Any]) -> str:
    """Where the error page's "Back" goes: the console page the form was on."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc in ("", request.url.netloc) and referer.path.startswith("/console"):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return "/console"


def sign_in_again(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    assert isinstance(error, SignInRequired)
    target = "/console/sign-in" + ("?notice=ended" if error.reason else "")
    return Redirect(target, status_code=303)


def error_page(request: Request[Any, Any, Any], error: Exception) -> Response[str]:
    if isinstance(error, LedgerError):
        body = problem_of(error)
    elif isinstance(error, ApiError):
        body = problem(error.code, error.detail)
    elif isinstance(error, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            error.status_code, "validation_error"
        )
        body = problem(code, str(error.detail))
    else:
        log.exception("console_page_crashed", path=request.url.path)
        body = problem("internal_error", "the console failed; nothing is known to be recorded")
    if body.status >= 500:
        log.warning("console_page_failed", path=request.url.path, code=body.code)
    else:
        log.info("console_page_refused", path=request.url.path, code=body.code, detail=body.detail)
    return page("error.html", status=body.status, problem=body, back=back_of(request))


CONSOLE = Router(
    path="/console",
    route_handlers=[
        *[
            signing.sign_in_form,
            signing.sign_in_submit,
            signing.sign_out_submit,
            signing.home,
        ],
        *operator_pages.ROUTES,
        *account_pages.ROUTES,
        *report_pages.ROUTES,
    ],
    include_in_schema=False,
    exception_handlers={
        SignInRequired: sign_in_again,
        LedgerError: error_page,
        ApiError: error_page,
        HTTPException: error_page,
        Exception: error_page,
    },
)
STATIC = create_static_files_router(
    path=STATIC_PATH, directories=[STATIC_DIRECTORY], name="console_static"
)
ROUTES = [CONSOLE, STATIC]

"""RFC 9457 problem details: every error the API answers, with the stable codes of docs/api.md."""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg
import structlog
from eventsourcing.persistence import PersistenceError
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from ledger.errors import (
    AtomicBatchFailedError,
    InsufficientCreditsError,
    LedgerError,
    UnavailableError,
)
from projections.tailer import CONNECTION_ERRORS

log = structlog.get_logger("api.http.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"

TITLES = {
    "validation_error": "The request is not valid",
    "unauthorized": "Missing or invalid API key",
    "forbidden": "The API key lacks the scope",
    "not_found": "Not found",
    "insufficient_credits": "Insufficient credits",
    "conflict": "Conflict",
    "idempotency_key_in_use": "Idempotency key in use",
    "idempotency_key_reused": "Idempotency key reused with a different request",
    "payload_too_large": "Payload too large",
    "rate_limited": "Too many requests",
    "unavailable": "Service unavailable",
    "method_not_allowed": "Method not allowed",
    "internal_error": "Internal error",
    "quote_expired": "The quote has expired",
    "quote_used": "The quote was redeemed by another purchase",
    "quote_mismatch": "The purchase does not match the quote",
    "invalid_signature": "The webhook signature does not verify",
}

STATUS_OF_CODE = {
    "validation_error": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "insufficient_credits": 402,
    "conflict": 409,
    "idempotency_key_in_use": 409,
    "idempotency_key_reused": 422,
    "payload_too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
    "internal_error": 500,
    "quote_expired": 409,
    "quote_used": 409,
    "quote_mismatch": 409,
    "invalid_signature": 400,
}


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    code: str
    available: int | None = None  # insufficient_credits: what the account has
    index: int | None = None  # a failed atomic batch: the command that failed
    cause: str | None = None  # a failed atomic batch: that command's code


class ApiError(Exception):
    """An error of the HTTP layer (auth, limits), answered as a problem."""

    def __init__(self, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def problem(code: str, detail: str, **extra: Any) -> Problem:
    return Problem(
        type=f"urn:credits-ledger:problem:{code}",
        title=TITLES[code],
        status=STATUS_OF_CODE[code],
        detail=detail,
        code=code,
        **extra,
    )


def problem_of(error: LedgerError) -> Problem:
    """The problem answering a ledger error (also used for each failed command of a batch)."""
    if isinstance(error, InsufficientCreditsError):
        return problem(error.code, error.detail, available=error.available)
    if isinstance(error, AtomicBatchFailedError):
        return problem(error.code, error.detail, index=error.index, cause=error.cause.code)
    code = error.code if error.code in STATUS_OF_CODE else "conflict"
    return problem(code, error.detail)


def problem_response(body: Problem, headers: dict[str, str] | None = None) -> Response[Problem]:
    return Response(body, status_code=body.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def handle_ledger_error(_: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    assert isinstance(error, LedgerError)
    if isinstance(error, UnavailableError):
        log.warning("request_unavailable", detail=error.detail)
    return problem_response(problem_of(error))


def handle_api_error(_: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    assert isinstance(error, ApiError)
    return problem_response(problem(error.code, error.detail), headers=error.headers)


def handle_http_exception(_: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    """Litestar's own errors (body decoding, unknown routes, size limit) as problems."""
    assert isinstance(error, HTTPException)
    status = error.status_code
    if status == 400:
        detail = error.detail
        extra = getattr(error, "extra", None)
        if isinstance(extra, list) and extra:
            first = extra[0]
            if isinstance(first, dict) and first.get("message"):
                key = first.get("key")
                detail = f"{first['message']}" + (f" (at {key})" if key else "")
        return problem_response(problem("validation_error", detail))
    code = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        429: "rate_limited",
        503: "unavailable",
    }.get(status)
    if code is None:
        code = "validation_error" if 400 <= status < 500 else "internal_error"
    if code == "internal_error":
        log.error("request_failed", status=status, detail=error.detail)
    body = problem(code, error.detail or TITLES[code])
    return problem_response(msgspec.structs.replace(body, status=status))


def handle_recursion(_: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    """JSON nested past Python's recursion limit (a few KB can do it) is bad input, not a 500."""
    return problem_response(problem("validation_error", "the body is nested too deeply"))


# A store that cannot be reached, as whatever reached for it raises it: the event store's
# library (PersistenceError, ledger.store.availability's StoreUnavailableError among them),
# psycopg under it, asyncpg for the read models (CONNECTION_ERRORS: its connection errors, a
# refused or timed-out connect). The request is answered 503 `unavailable`, never 500.
STORE_FAILURES: tuple[type[Exception], ...] = (
    PersistenceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    *CONNECTION_ERRORS,
)
STORE_FAILURE_DETAIL = (
    "the store is unreachable; retry shortly (a command: with the same Idempotency-Key)"
)


def handle_store_failure(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    log.warning(
        "request_store_unavailable",
        path=request.url.path,
        error=type(error).__name__,
        detail=str(error).strip().splitlines()[0] if str(error).strip() else None,
    )
    return problem_response(problem("unavailable", STORE_FAILURE_DETAIL))


def handle_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    log.exception("request_crashed", path=request.url.path, error=type(error).__name__)
    return problem_response(
        problem("internal_error", "the server failed; nothing is known to be recorded")
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LedgerError: handle_ledger_error,
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    RecursionError: handle_recursion,
    **dict.fromkeys(STORE_FAILURES, handle_store_failure),
    Exception: handle_unexpected,
}


def responses(*codes: str) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problems a route can answer (the common ones always)."""
    wanted = {
        "validation_error",
        "unauthorized",
        "rate_limited",
        "payload_too_large",
        "unavailable",
        *codes,
    }
    specs: dict[int, ResponseSpec] = {}
    for code in sorted(wanted):
        status = STATUS_OF_CODE[code]
        names = [c for c in sorted(wanted) if STATUS_OF_CODE[c] == status]
        specs[status] = ResponseSpec(
            data_container=Problem,
            description="Problem: " + ", ".join(names),
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
    return specs

"""Per-request context: a request id, structlog context variables, a log line, metrics; and
the request's path and query string refused (400) unless their percent-decoded bytes are
UTF-8: the server decodes them with replacement characters, so `x%FFy` and `x%FEy` would both
be the id `x\ufffdy`."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send, WebSocketCloseEvent

from api.http.metrics import Metrics
from api.http.problems import PROBLEM_MEDIA_TYPE, problem

log = structlog.get_logger("api.request")

REQUEST_ID_LENGTH_MAX = 128
# Request ids made here: a random prefix per process and a counter, unique across processes and
# restarts without a uuid4 per request (3.6% of the HTTP loop's samples in scenario 1).
_REQUEST_ID_PREFIX = secrets.token_hex(6)
_request_numbers = itertools.count(1)
# A request not answered within this is answered 503 (streams excepted). A command may still
# commit after it: the answer says so, and the Idempotency-Key makes a retry safe.
REQUEST_TIMEOUT_S = 30.0
STREAM_PATHS = ("/v1/stream", "/v1/ws")
TIMEOUT_BODY = msgspec.json.encode(
    problem(
        "unavailable",
        "the request took too long; a command may still commit: retry it with the same Idempotency-Key",
    )
)


# A WebSocket handshake refused for its URL (before it is accepted: the client sees a 403).
WEBSOCKET_BAD_URL_CLOSE_CODE = 4400


def undecodable_part(scope: Scope) -> str | None:
    """ "path" or "query string" when that part of the request's URL, percent-decoded, is not
    UTF-8; None when both are (the usual case costs two byte scans)."""
    raw_path: bytes | None = scope.get("raw_path")
    if raw_path is not None:
        raw_path = raw_path.partition(b"?")[0]  # some clients' raw_path carries the query
        if b"%" in raw_path or not raw_path.isascii():
            try:
                unquote_to_bytes(raw_path).decode("utf-8")
            except UnicodeDecodeError:
                return "path"
    query: bytes = scope.get("query_string") or b""
    if b"%" in query or not query.isascii():
        try:
            unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return "query string"
    return None


def bad_url_body(part: str) -> bytes:
    return msgspec.json.encode(
        problem("validation_error", f"the request's {part} is not valid UTF-8 once percent-decoded")
    )


async def not_http(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """A WebSocket (or lifespan) scope: only the URL's check."""
    if scope["type"] == ScopeType.WEBSOCKET and undecodable_part(scope):
        close: WebSocketCloseEvent = {
            "type": "websocket.close",
            "code": WEBSOCKET_BAD_URL_CLOSE_CODE,
            "reason": "the URL is not valid UTF-8 once percent-decoded",
        }
        await send(close)
        return
    await app(scope, receive, send)


def request_context(metrics_of: Any) -> Any:
    """Middleware factory; `metrics_of(scope)` finds the app's Metrics."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await not_http(app, scope, receive, send)
                return
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"x-request-id", b"").decode("latin-1")[:REQUEST_ID_LENGTH_MAX]
            request_id = (
                given
                if given.isprintable() and given
                else f"{_REQUEST_ID_PREFIX}{next(_request_numbers):010x}"
            )
            path_params = scope.get("path_params") or {}
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=request_id)
            if "account_id" in path_params:
                structlog.contextvars.bind_contextvars(account_id=path_params["account_id"])
            started = time.perf_counter()
            status = 500

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ]
                await send(message)

            started_response = False

            async def send_tracked(message: Message) -> None:
                nonlocal started_response
                started_response = started_response or message["type"] == "http.response.start"
                await send_with_id(message)

            try:
                bad_part = undecodable_part(scope)
                if bad_part is not None:
                    await send_problem(send_with_id, bad_url_body(bad_part), 400)
                elif scope["path"] in STREAM_PATHS or "x-ndjson" in headers.get(
                    b"accept", b""
                ).decode("latin-1"):
                    await app(scope, receive, send_with_id)
                else:
                    try:
                        async with asyncio.timeout(REQUEST_TIMEOUT_S):
                            await app(scope, receive, send_tracked)
                    except TimeoutError:
                        log.error(
                            "request_timed_out", path=scope["path"], timeout_s=REQUEST_TIMEOUT_S
                        )
                        if not started_response:
                            await send_problem(send_with_id, TIMEOUT_BODY, 503)
            finally:
                seconds = time.perf_counter() - started
                route = scope.get("path_template") or "unmatched"
                metrics: Metrics = metrics_of(scope)
                metrics.observe(scope["method"], route, status, seconds)
                # Every failure is logged; successes only at debug (a line per request cost
                # about 7% of the service's CPU under load: docs/BENCHMARKS.md).
                log_at = log.warning if status >= 500 else log.info if status >= 400 else log.debug
                log_at(
                    "request",
                    method=scope["method"],
                    route=route,
                    status=status,
                    ms=round(seconds * 1000, 2),
                )
                structlog.contextvars.clear_contextvars()

        return handle

    return middleware


async def send_problem(send: Send, body: bytes, status: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})

"""Per-request context: a request id, structlog context variables, a log line, metrics."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import Metrics

log = structlog.get_logger("api.request")

REQUEST_ID_LENGTH_MAX = 128


def request_context(metrics_of: Any) -> Any:
    """Middleware factory; `metrics_of(scope)` finds the app's Metrics."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"x-request-id", b"").decode("latin-1")[:REQUEST_ID_LENGTH_MAX]
            request_id = given if given.isprintable() and given else uuid.uuid4().hex
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

            try:
                await app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                route = scope.get("path_template") or "unmatched"
                metrics: Metrics = metrics_of(scope)
                metrics.observe(scope["method"], route, status, seconds)
                log_at = log.warning if status >= 500 else log.info
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

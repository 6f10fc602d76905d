"""The composition root: create_app(settings) builds the whole service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from litestar import Litestar

from api.console.app import ROUTES as CONSOLE
from api.http import api_docs, batch, bench, health, stream_access, streams
from api.http.accounts import AccountController
from api.http.command_routes import command_routes
from api.http.dependencies import DEPENDENCIES
from api.http.metrics import Metrics
from api.http.middleware import request_context
from api.http.payments import (
    PaymentInboxController,
    StripeWebhookController,
    WebhookSecretController,
)
from api.http.pricing import OperatorPriceBookController, PriceBookController
from api.http.problems import EXCEPTION_HANDLERS
from api.http.reports import ReportController
from api.http.tenants import OwnApiKeyController, TenantController
from api.http.topups import TopUpController
from api.http.webhooks import WebhookEndpointController
from api.roles.runtime import Runtime
from api.settings import Settings
from ledger.areas import REGISTRY

log = structlog.get_logger("api.http.app")

# docs/api.md: bodies over 1 MiB are refused with 413.
REQUEST_BODY_BYTES_MAX = 1024 * 1024


def create_app(settings: Settings) -> Litestar:
    if not settings.database_url or not settings.admin_key:
        raise ValueError("create_app needs settings.database_url and settings.admin_key")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings)
        app.state["services"] = runtime.services
        try:
            yield
        finally:
            await runtime.stop()

    def metrics_of(scope: Any) -> Metrics:
        found: Metrics = scope["app"].state["services"].metrics
        return found

    return Litestar(
        route_handlers=[
            TenantController,
            OwnApiKeyController,
            AccountController,
            PriceBookController,
            OperatorPriceBookController,
            TopUpController,
            *command_routes(REGISTRY),
            batch.run_batch,
            ReportController,
            StripeWebhookController,
            WebhookSecretController,
            PaymentInboxController,
            WebhookEndpointController,
            *streams.ROUTES,
            stream_access.create_stream_token,
            *health.ROUTES,
            *(bench.ROUTES if settings.bench_endpoints else []),
            *CONSOLE,
            api_docs.assets_router(),
        ],
        dependencies=DEPENDENCIES,
        lifespan=[lifespan],
        on_startup=[api_docs.describe],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_context(metrics_of)],
        request_max_body_size=REQUEST_BODY_BYTES_MAX,
        openapi_config=api_docs.openapi_config(),
        logging_config=None,  # api.roles.logs configures logging once, for every logger
        debug=False,
    )

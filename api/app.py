"""The composition root: create_app(settings) builds the whole service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from api import accounts, batch, operations, platform, reports
from api.auth import Authenticator
from api.key_usage import KeyUsage
from api.metrics import Metrics
from api.middleware import request_context
from api.problems import EXCEPTION_HANDLERS
from api.ratelimit import RateLimiter
from api.services import Services
from api.settings import Settings
from ledger.application import Ledger, new_mapper
from ledger.writer import Writer
from projections.follower import Follower
from projections.queries import ReadModels

log = structlog.get_logger("api.app")

# API.md: bodies over 1 MiB are refused with 413.
REQUEST_BODY_BYTES_MAX = 1024 * 1024
# asyncpg connections for read-model queries.
READ_POOL_SIZE_MAX = 10
# Seconds between attempts to reach NATS while it is down.
NATS_RECONNECT_WAIT_S = 1.0


async def connect_nats(services: Services, url: str) -> None:
    """Keeps trying until NATS answers; the API works without it (it is not on the command path)."""
    import nats  # noqa: PLC0415 - only needed when NATS is configured

    while True:
        try:
            services.nats = await nats.connect(
                url,
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=NATS_RECONNECT_WAIT_S,
            )
        except Exception as error:  # noqa: BLE001 - log and keep trying
            log.warning("nats_connect_failed", error=str(error) or type(error).__name__)
            await asyncio.sleep(NATS_RECONNECT_WAIT_S)
        else:
            log.info("nats_connected")
            return


def create_app(settings: Settings) -> Litestar:
    if not settings.database_url or not settings.admin_key:
        raise ValueError("create_app needs settings.database_url and settings.admin_key")
    database_url, admin_key = settings.database_url, settings.admin_key

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        ledger = await asyncio.to_thread(Ledger, database_url, settings.schema)
        writer = Writer(ledger)
        writer.start()
        key_usage = KeyUsage(ledger)
        await asyncio.to_thread(key_usage.create_table)
        key_usage.start()
        auth = Authenticator(
            ledger, admin_key, RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        )
        auth.on_used = key_usage.used
        metrics = Metrics()
        metrics.gauge("ledger_writer_batches_committed", lambda: writer.batches_committed)
        metrics.gauge("ledger_writer_commands_committed", lambda: writer.commands_committed)
        metrics.gauge("ledger_writer_cache_aggregates", lambda: len(writer.cache))
        mapper = new_mapper()
        services = Services(settings, ledger, writer, auth, key_usage, metrics, mapper)
        app.state["services"] = services
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=READ_POOL_SIZE_MAX)
        follower = Follower(
            database_url, settings.schema, mapper, batch_size_max=settings.follower_batch_size
        )
        async with pool.acquire() as conn:
            await follower.create_tables(conn)
        services.read_models = ReadModels(pool, settings.schema)
        stop_follower = asyncio.Event()
        follower_task = (
            asyncio.create_task(follower.run(stop_follower)) if settings.run_follower else None
        )
        nats_task = (
            asyncio.create_task(connect_nats(services, settings.nats_url))
            if settings.nats_url
            else None
        )
        log.info("service_started", schema=settings.schema)
        try:
            yield
        finally:
            await writer.stop()  # answers every accepted command first
            stop_follower.set()
            if follower_task is not None:
                await follower_task
            await pool.close()
            await key_usage.stop()
            if nats_task is not None:
                nats_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await nats_task
            if services.nats is not None:
                await services.nats.close()
            await asyncio.to_thread(ledger.close)
            log.info("service_stopped")

    def metrics_of(scope: Any) -> Metrics:
        found: Metrics = scope["app"].state["services"].metrics
        return found

    return Litestar(
        route_handlers=[
            *platform.ROUTES,
            *accounts.ROUTES,
            batch.run_batch,
            *reports.ROUTES,
            *operations.ROUTES,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_context(metrics_of)],
        request_max_body_size=REQUEST_BODY_BYTES_MAX,
        openapi_config=OpenAPIConfig(
            title="Credits ledger",
            version="1.0.0",
            description="Prepaid credits: grants, purchases, consumption, refunds, holds, expiry.",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http", scheme="bearer", description="An API key"
                    ),
                    "apiKey": SecurityScheme(
                        type="apiKey", name="X-API-Key", security_scheme_in="header"
                    ),
                }
            ),
        ),
        logging_config=None,  # api.logs configures logging once, for every logger
        debug=False,
    )

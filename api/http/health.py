"""Health and metrics for operators and orchestrators."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from api.http.dependencies import ServicesDep
from api.http.services import Services

# How long a readiness probe waits for the store or NATS.
READY_CHECK_TIMEOUT_S = 2.0


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    checks: dict[str, str] = {}


@get("/health/live", summary="The process is up", include_in_schema=True)
async def live() -> Health:
    return Health(status="ok")


def ping_store(services: Services) -> None:
    datastore: Any = services.ledger.recorder.datastore  # type: ignore[attr-defined]
    with datastore.get_connection() as conn:
        conn.execute("SELECT 1")


@get(
    "/health/ready",
    summary="200 when the store (and NATS, if configured) answer, else 503",
    responses={503: ResponseSpec(Health, description="Not ready")},
)
async def ready(services: ServicesDep) -> Response[Health]:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            await asyncio.to_thread(ping_store, services)
        checks["store"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["store"] = f"failed: {type(error).__name__}"
    if services.nats is not None:
        checks["nats"] = "ok" if services.nats.is_connected else "failed: disconnected"
    ok = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return Response(body, status_code=200 if ok else 503)


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(services: ServicesDep) -> str:
    return services.metrics.render()


ROUTES = [live, ready, metrics]

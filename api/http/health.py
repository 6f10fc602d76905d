"""Health and metrics for operators and orchestrators (docs/api.md "Operations",
docs/reliability.md).

- `GET /health/live`: 200 whenever this process answers. No dependency is looked at: a store or
  NATS outage is never a reason to restart a replica (a restart cannot fix it, and would drop
  the requests in flight).
- `GET /health/ready`: 503 whenever a command could not be committed here: the event store
  does not answer, or the writer is not ready (its child process restarting), or the service
  is stopping. Everything else is reported in the body, with 200: the live streams' NATS
  connection, and each background role wherever it runs (its row in ledger_role_status:
  projections/role_status.py) with its state, position, lag and last error. A NATS outage
  alone leaves commands committing (the relay catches up), so it is `degraded`, not 503.
- `GET /metrics`: the process's counters and gauges, the store's gate, and every role's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog
from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from api.http.dependencies import ServicesDep
from api.http.services import Services
from ledger.accounts.stored_entries import ACCOUNT_TOPIC_PREFIX
from projections.role_status import RoleRow, read_role_rows

log = structlog.get_logger("api.http.health")

# How long a readiness probe waits for the store (each check) before it counts as failed.
READY_CHECK_TIMEOUT_S = 2.0
# How long the role rows and lags may take to read (they are only reported).
ROLES_READ_TIMEOUT_S = 1.0
# The relay's lag is counted up to this many account entries (the count is a range scan).
RELAY_LAG_COUNTED_MAX = 100_000
# The roles readiness reports, by the name they report under, and when each is expected.
FOLLOWER, RELAY = "follower", "relay"


class RoleReport(msgspec.Struct, frozen=True, kw_only=True):
    role: str
    instance: str
    state: (
        str  # active | standby | starting | store_unreachable | waiting_for_nats | stopped | gone
    )
    active: bool
    position: int
    lag: int | None = None  # events (follower) or account entries (relay) behind the store
    last_error: str | None = None
    last_error_age_s: float | None = None
    heartbeat_age_s: float
    counters: dict[str, int] = {}  # the relay's: published, own_duplicates, foreign_duplicates


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # ok | degraded (200) | unavailable (503)
    checks: dict[str, str] = {}
    roles: list[RoleReport] = []


@get("/health/live", summary="The process answers (no dependency is looked at)")
async def live() -> Health:
    return Health(status="ok")


def ping_store(services: Services) -> None:
    datastore: Any = services.ledger.recorder.datastore  # type: ignore[attr-defined]
    with datastore.get_connection() as conn:
        conn.execute("SELECT 1")


async def store_check(services: Services) -> str:
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            await asyncio.to_thread(ping_store, services)
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        return f"failed: {type(error).__name__}"
    return "ok"


async def role_reports(services: Services) -> list[RoleReport] | None:
    """Every role instance's report, lags included; None when the store cannot tell."""
    read_models = services.read_models
    if read_models is None:
        return None
    schema = services.settings.schema
    try:
        async with asyncio.timeout(ROLES_READ_TIMEOUT_S), read_models.pool.acquire() as conn:
            rows = await read_role_rows(conn, schema)
            last = await conn.fetchval(f'SELECT max(notification_id) FROM "{schema}".ledger_events')
            reports = []
            for row in rows:
                lag = await _lag(conn, schema, row, int(last or 0))
                reports.append(report_of(row, lag))
    except Exception as error:  # noqa: BLE001 - only reported: the store check tells the rest
        log.debug("role_reports_failed", error=str(error) or type(error).__name__)
        return None
    return reports


async def _lag(conn: Any, schema: str, row: RoleRow, last: int) -> int | None:
    if not row.active or row.gone:
        return None
    if row.role == RELAY:  # only the Account's events are published
        behind: int = await conn.fetchval(
            f'SELECT count(*) FROM (SELECT 1 FROM "{schema}".ledger_events '
            f"WHERE notification_id > $1 AND topic LIKE '{ACCOUNT_TOPIC_PREFIX}%' LIMIT $2) b",
            row.position,
            RELAY_LAG_COUNTED_MAX,
        )
        return behind
    return max(0, last - row.position)


def report_of(row: RoleRow, lag: int | None) -> RoleReport:
    return RoleReport(
        role=row.role,
        instance=row.instance,
        state="gone" if row.gone and row.state != "stopped" else row.state,
        active=row.active and not row.gone,
        position=row.position,
        lag=lag,
        last_error=row.last_error,
        last_error_age_s=None if row.error_age_s is None else round(row.error_age_s, 3),
        heartbeat_age_s=round(row.age_s, 3),
        counters=row.counters,
    )


def expected_roles(services: Services) -> list[str]:
    """The follower always (this replica's or another's), the relay when NATS is configured."""
    return [FOLLOWER, RELAY] if services.settings.nats_url else [FOLLOWER]


def role_check(role: str, reports: list[RoleReport]) -> str:
    mine = [report for report in reports if report.role == role]
    active = [report for report in mine if report.active]
    if not active:
        troubled = next((r for r in mine if r.state not in ("stopped", "gone")), None)
        if troubled is not None and troubled.state != "standby":
            return f"degraded: {troubled.state}" + (
                f" ({troubled.last_error})" if troubled.last_error else ""
            )
        return f"degraded: no active {role}"
    if active[0].state != "active":
        error = f" ({active[0].last_error})" if active[0].last_error else ""
        return f"degraded: {active[0].state}{error}"
    return "ok"


async def readiness(services: Services) -> tuple[int, Health]:
    checks: dict[str, str] = {"store": await store_check(services)}
    writer_ready = services.writer.ready
    checks["writer"] = "ok" if writer_ready else "failed: the writer is starting or restarting"
    if services.settings.nats_url:
        nats = services.nats
        checks["nats"] = (
            "ok" if nats is not None and nats.is_connected else "degraded: disconnected"
        )
    reports = await role_reports(services) if checks["store"] == "ok" else None
    for role in expected_roles(services):
        checks[role] = (
            "unknown: the store cannot tell" if reports is None else role_check(role, reports)
        )
    unavailable = any(value.startswith("failed") for value in checks.values())
    if unavailable:
        status = "unavailable"
    elif all(value == "ok" for value in checks.values()):
        status = "ok"
    else:
        status = "degraded"
    return (503 if unavailable else 200), Health(status=status, checks=checks, roles=reports or [])


@get(
    "/health/ready",
    summary="503 when a command could not be committed here; each role's state in the body",
    responses={503: ResponseSpec(Health, description="Not ready: commands cannot commit")},
)
async def ready(services: ServicesDep) -> Response[Health]:
    status_code, body = await readiness(services)
    return Response(body, status_code=status_code)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def role_metrics(services: Services, reports: list[RoleReport] | None) -> str:
    """Per role instance: up, active, position, lag, seconds since its last error, its state
    and counters; and the store as this process sees it."""
    gate = services.ledger.store_gate
    lines = [
        "# TYPE ledger_store_available gauge",
        f"ledger_store_available {int(gate.available)}",
        "# TYPE ledger_store_outages_total counter",
        f"ledger_store_outages_total {gate.outages}",
        "# TYPE ledger_store_down_seconds gauge",
        f"ledger_store_down_seconds {round(gate.down_for_s(), 3)}",
        "# TYPE ledger_role_reports_available gauge",
        f"ledger_role_reports_available {int(reports is not None)}",
    ]
    families: dict[str, list[str]] = {}
    for report in reports or []:
        labels = f'role="{report.role}",instance="{_label(report.instance)}"'
        values: dict[str, float | None] = {
            "ledger_role_up": 0 if report.state in ("gone", "stopped") else 1,
            "ledger_role_active": int(report.active),
            "ledger_role_position": report.position,
            "ledger_role_lag": report.lag,
            "ledger_role_heartbeat_age_seconds": report.heartbeat_age_s,
            "ledger_role_last_error_age_seconds": report.last_error_age_s,
        }
        for name, value in values.items():
            if value is not None:
                families.setdefault(name, []).append(f"{name}{{{labels}}} {value}")
        state = f'{labels},state="{report.state}",last_error="{_label(report.last_error or "")}"'
        families.setdefault("ledger_role_info", []).append(f"ledger_role_info{{{state}}} 1")
    for name, family in families.items():
        lines += [f"# TYPE {name} gauge", *family]
    for report in reports or []:
        if report.role == RELAY and report.active:
            for counter, value in report.counters.items():
                lines += [
                    f"# TYPE ledger_relay_{counter}_total counter",
                    f"ledger_relay_{counter}_total {value}",
                ]
    return "\n".join(lines) + "\n"


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(services: ServicesDep) -> str:
    reports = await role_reports(services)
    return services.metrics.render() + role_metrics(services, reports)


ROUTES = [live, ready, metrics]

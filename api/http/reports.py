"""Reports of a tenant (scope reports:read): usage, its history in ledger order, and the audit
that replays the event store against the read models."""

from __future__ import annotations

from datetime import UTC, date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter
from litestar.response import Stream

from api.http.accounts import After, Limit
from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import tenant_key
from api.http.parameters import SECURITY, MinPosition
from api.http.problems import responses
from api.http.read_models import EntryPage, expiries_settled, read_models, wait_for
from ledger.ids import check_account_id
from ledger.limits import ACCOUNT_ID_LENGTH_MAX
from ledger.tenants.api_keys import REPORTS_READ
from projections.audit import compare_with_read_models
from projections.queries import PAGE_SIZE_DEFAULT, UsageReport

NDJSON = "application/x-ndjson"
# Days a usage report covers when `from` is not given.
USAGE_DAYS_DEFAULT = 30


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    accounts: int
    entries: int
    mismatches: list[str]


class ReportController(Controller):
    path = "/v1"
    tags = ["reports"]
    guards = [tenant_key(REPORTS_READ)]
    security = SECURITY

    @get(
        "/usage",
        summary="Usage by operation, account and day: count, credits, refunded",
        responses=responses("forbidden"),
    )
    async def usage(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        from_: Annotated[date | None, QueryParameter(name="from", required=False)] = None,
        to: Annotated[date | None, QueryParameter(required=False)] = None,
        group_by: Annotated[
            str, QueryParameter(max_length=64, pattern=r"^[a-z_,]*$")
        ] = "operation",
        account_id: Annotated[
            str | None,
            QueryParameter(min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX, required=False),
        ] = None,
        min_position: MinPosition = None,
    ) -> UsageReport:
        if account_id is not None:
            check_account_id(account_id)  # as every other route: no NUL or control character
        await wait_for(services, min_position)
        read_time = await expiries_settled(services, principal.tenant(), account_id)
        to_day = to or read_time.astimezone(UTC).date()
        # Clamped at date.min: `to=0001-01-01` is a valid date, not an OverflowError (a 500).
        from_day = from_ or date.fromordinal(max(1, to_day.toordinal() - (USAGE_DAYS_DEFAULT - 1)))
        groups = [name for name in group_by.split(",") if name]
        report: UsageReport = await read_models(services).usage(
            principal.tenant(), from_day, to_day, groups, account_id
        )
        return report

    @get(
        "/history",
        summary="The tenant's entries in ledger order; Accept: application/x-ndjson streams them all",
        responses=responses("forbidden"),
    )
    async def history(
        self,
        request: Request[Any, Any, Any],
        principal: PrincipalDep,
        services: ServicesDep,
        after: After = 0,
        limit: Limit = PAGE_SIZE_DEFAULT,
        min_position: MinPosition = None,
    ) -> Response[EntryPage]:
        models = read_models(services)
        await wait_for(services, min_position)
        await expiries_settled(services, principal.tenant())
        if NDJSON in request.headers.get("accept", ""):
            return Stream(models.stream_history(principal.tenant()), media_type=NDJSON)  # type: ignore[return-value]
        body = await models.entries_page(principal.tenant(), None, after, limit)
        return Response(body, media_type="application/json")  # type: ignore[arg-type]

    @get(
        "/audit/verify",
        summary="Replays the tenant's history from the event store and compares it with the read models",
        responses=responses("forbidden"),
    )
    async def audit_verify(
        self, principal: PrincipalDep, services: ServicesDep, min_position: MinPosition = None
    ) -> Verification:
        models = read_models(services)
        await wait_for(services, min_position or await services.store_position())
        async with models.pool.acquire() as conn:
            report = await compare_with_read_models(
                conn, services.settings.schema, services.mapper, principal.tenant()
            )
        return Verification(**report)

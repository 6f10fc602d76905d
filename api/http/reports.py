"""Read-side routes: entries, balances as of a time, usage, history and audit (read models)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.params import QueryParameter
from litestar.response import Stream

from api.http.accounts import READ, SECURITY, AccountIdParam, tenant_of
from api.http.problems import ApiError, responses
from api.http.services import Services, services_of
from ledger import commands as c
from ledger.accounts.views import Entry
from ledger.ids import check_account_id
from projections.audit import compare_with_read_models
from projections.queries import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, Balance, UsageReport

REPORTS = "reports:read"
NDJSON = "application/x-ndjson"
# Days a usage report covers when `from` is not given.
USAGE_DAYS_DEFAULT = 30

After = Annotated[int, QueryParameter(ge=0, le=2**62, description="Entries after this position")]
Limit = Annotated[int, QueryParameter(ge=1, le=PAGE_SIZE_MAX)]
MinPosition = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=2**62,
        required=False,
        description="Wait (at most 5 s) until the read models hold this position (from a command's answer)",
    ),
]
POSITION_ERRORS = ("forbidden", "not_found")


class EntryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Entry]
    next_after: int | None


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    accounts: int
    entries: int
    mismatches: list[str]


def read_models(services: Services) -> Any:
    if services.read_models is None:
        raise ApiError("unavailable", "the read models are not configured on this replica")
    return services.read_models


async def wait_for(services: Services, min_position: int | None) -> None:
    """Returns once the read models hold `min_position`. A position past the event store's last
    one was never in a command's answer: a bad request (400) at once, not a 503 after a wait."""
    if min_position and min_position > await services.store_position():
        raise ApiError(
            "validation_error", f"min_position {min_position} is past the ledger's last position"
        )
    await read_models(services).wait_for(min_position)


async def known_account(services: Services, tenant_id: str, account_id: str) -> None:
    """404 unless the account exists (the read models may lag: the writer has the last word)."""
    check_account_id(account_id)
    if not await read_models(services).account_known(tenant_id, account_id):
        await services.writer.submit(c.GetAccount(tenant_id=tenant_id, account_id=account_id))


@get(
    "/v1/accounts/{account_id:str}/entries",
    summary="An account's entries, oldest first",
    responses=responses(*POSITION_ERRORS),
    security=SECURITY,
)
async def account_entries(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    after: After = 0,
    limit: Limit = PAGE_SIZE_DEFAULT,
    min_position: MinPosition = None,
) -> Response[EntryPage]:
    tenant_id = await tenant_of(request, READ)
    services = services_of(request)
    await wait_for(services, min_position)
    await known_account(services, tenant_id, account_id)
    body = await read_models(services).entries_page(tenant_id, account_id, after, limit)
    return Response(body, media_type="application/json")


@get(
    "/v1/accounts/{account_id:str}/balance",
    summary="An account's balance as of a time (now by default)",
    responses=responses(*POSITION_ERRORS),
    security=SECURITY,
)
async def balance_as_of(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    as_of: Annotated[datetime | None, QueryParameter(required=False)] = None,
    min_position: MinPosition = None,
) -> Balance:
    tenant_id = await tenant_of(request, READ)
    services = services_of(request)
    await wait_for(services, min_position)
    await known_account(services, tenant_id, account_id)
    moment = as_of or datetime.now(tz=UTC)
    if moment.tzinfo is None:
        raise ApiError("validation_error", "as_of must carry a time zone (RFC 3339)")
    balance: Balance = await read_models(services).balance_as_of(tenant_id, account_id, moment)
    return balance


@get(
    "/v1/usage",
    summary="Usage by operation, account and day: count, credits, refunded",
    responses=responses("forbidden"),
    security=SECURITY,
)
async def usage(
    request: Request[Any, Any, Any],
    from_: Annotated[date | None, QueryParameter(name="from", required=False)] = None,
    to: Annotated[date | None, QueryParameter(required=False)] = None,
    group_by: Annotated[str, QueryParameter(max_length=64, pattern=r"^[a-z_,]*$")] = "operation",
    account_id: Annotated[
        str | None, QueryParameter(min_length=1, max_length=128, required=False)
    ] = None,
    min_position: MinPosition = None,
) -> UsageReport:
    principal = await services_of(request).auth.tenant(request, REPORTS)
    if account_id is not None:
        check_account_id(account_id)  # as every other route: no NUL or control character
    services = services_of(request)
    await wait_for(services, min_position)
    to_day = to or datetime.now(tz=UTC).date()
    # Clamped at date.min: `to=0001-01-01` is a valid date, not an OverflowError (a 500).
    from_day = from_ or date.fromordinal(max(1, to_day.toordinal() - (USAGE_DAYS_DEFAULT - 1)))
    groups = [name for name in group_by.split(",") if name]
    report: UsageReport = await read_models(services).usage(
        principal.tenant(), from_day, to_day, groups, account_id
    )
    return report


@get(
    "/v1/history",
    summary="The tenant's entries in ledger order; Accept: application/x-ndjson streams them all",
    responses=responses(*POSITION_ERRORS),
    security=SECURITY,
)
async def history(
    request: Request[Any, Any, Any],
    after: After = 0,
    limit: Limit = PAGE_SIZE_DEFAULT,
    min_position: MinPosition = None,
) -> Response[EntryPage]:
    principal = await services_of(request).auth.tenant(request, REPORTS)
    models = read_models(services_of(request))
    await wait_for(services_of(request), min_position)
    if NDJSON in request.headers.get("accept", ""):
        return Stream(models.stream_history(principal.tenant()), media_type=NDJSON)  # type: ignore[return-value]
    body = await models.entries_page(principal.tenant(), None, after, limit)
    return Response(body, media_type="application/json")


@get(
    "/v1/audit/verify",
    summary="Replays the tenant's history from the event store and compares it with the read models",
    responses=responses("forbidden"),
    security=SECURITY,
)
async def audit_verify(
    request: Request[Any, Any, Any], min_position: MinPosition = None
) -> Verification:
    principal = await services_of(request).auth.tenant(request, REPORTS)
    services = services_of(request)
    models = read_models(services)
    await wait_for(services, min_position or await services.store_position())
    async with models.pool.acquire() as conn:
        report = await compare_with_read_models(
            conn, services.settings.schema, services.mapper, principal.tenant()
        )
    return Verification(**report)


ROUTES = [account_entries, balance_as_of, usage, history, audit_verify]

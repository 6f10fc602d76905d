"""Reading an account: its state through the writer (reflects every command already
answered), its holds, its entries and its balance as of a time (from the read models).
The account commands' routes come from the registry (api/http/command_routes.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, Response, get
from litestar.params import QueryParameter

from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import tenant_key
from api.http.parameters import (
    POSITION_MAX,
    SECURITY,
    AccountIdParam,
    HoldIdParam,
    MinPosition,
)
from api.http.problems import ApiError, responses
from api.http.read_models import (
    EntryPage,
    expiries_settled,
    known_account,
    read_models,
    wait_for,
)
from ledger.accounts.commands import GetAccount, GetHold
from ledger.accounts.views import AccountView, HoldView
from ledger.tenants.api_keys import ACCOUNTS_READ
from projections.queries import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, Balance

After = Annotated[
    int, QueryParameter(ge=0, le=POSITION_MAX, description="Entries after this position")
]
Limit = Annotated[int, QueryParameter(ge=1, le=PAGE_SIZE_MAX)]
READ_ERRORS = ("forbidden", "not_found")
# A balance "now" is the last entry's, whatever the clock of the writer that stamped it.
LATEST = datetime.max.replace(tzinfo=UTC)


class AccountController(Controller):
    path = "/v1/accounts/{account_id:str}"
    tags = ["accounts"]
    guards = [tenant_key(ACCOUNTS_READ)]
    security = SECURITY

    @get(
        "/",
        summary="Read an account: reflects every command already answered",
        responses=responses(*READ_ERRORS),
    )
    async def read_account(
        self, principal: PrincipalDep, services: ServicesDep, account_id: AccountIdParam
    ) -> AccountView:
        outcome = await services.writer.submit(
            principal.envelope(GetAccount(account_id=account_id))
        )
        assert isinstance(outcome.value, AccountView)
        return outcome.value

    @get("/holds/{hold_id:str}", summary="Read a hold", responses=responses(*READ_ERRORS))
    async def read_hold(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        account_id: AccountIdParam,
        hold_id: HoldIdParam,
    ) -> HoldView:
        query = GetHold(account_id=account_id, hold_id=hold_id)
        outcome = await services.writer.submit(principal.envelope(query))
        assert isinstance(outcome.value, HoldView)
        return outcome.value

    @get(
        "/entries",
        summary="An account's entries, oldest first",
        responses=responses(*READ_ERRORS),
    )
    async def account_entries(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        account_id: AccountIdParam,
        after: After = 0,
        limit: Limit = PAGE_SIZE_DEFAULT,
        min_position: MinPosition = None,
    ) -> Response[EntryPage]:
        await wait_for(services, min_position)
        await known_account(services, principal.tenant(), account_id)
        await expiries_settled(services, principal.tenant(), account_id)
        body = await read_models(services).entries_page(
            principal.tenant(), account_id, after, limit
        )
        return Response(body, media_type="application/json")  # type: ignore[arg-type]

    @get(
        "/balance",
        summary="An account's balance as of a time (now by default)",
        responses=responses(*READ_ERRORS),
    )
    async def balance_as_of(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        account_id: AccountIdParam,
        as_of: Annotated[datetime | None, QueryParameter(required=False)] = None,
        min_position: MinPosition = None,
    ) -> Balance:
        await wait_for(services, min_position)
        await known_account(services, principal.tenant(), account_id)
        if as_of is not None and as_of.tzinfo is None:
            raise ApiError("validation_error", "as_of must carry a time zone (RFC 3339)")
        read_time = await expiries_settled(services, principal.tenant(), account_id)
        models = read_models(services)
        if as_of is not None and as_of < read_time:
            return await models.balance_as_of(principal.tenant(), account_id, as_of)
        # Now (or later): the last entry, whatever clock stamped it; as of the read's time.
        balance: Balance = await models.balance_as_of(principal.tenant(), account_id, LATEST)
        return msgspec.structs.replace(balance, as_of=as_of or read_time)

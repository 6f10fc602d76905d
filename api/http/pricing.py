"""The price book's reads (a tenant's key, accounts:read) and the operator's publish route.
Publishing with a tenant's key (PUT /v1/price-book) and quotes (POST /v1/quotes) are standard
command routes (ledger/pricing/area.py)."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get, put
from litestar.params import JSONBody

from api.http.body import body_of
from api.http.command_routes import answer, refuse_key_in_body
from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import operator_key, tenant_key
from api.http.parameters import SECURITY, IdempotencyHeader, TenantIdParam
from api.http.problems import responses
from ledger.commands import Envelope
from ledger.pricing.commands import GetPriceBook, GetPriceBookHistory, PublishPriceBook
from ledger.pricing.views import PriceBookHistory, PriceBookVersionView, PriceBookView
from ledger.tenants.api_keys import ACCOUNTS_READ


class PriceBookController(Controller):
    path = "/v1/price-book"
    tags = ["pricing"]
    guards = [tenant_key(ACCOUNTS_READ)]
    security = SECURITY

    @get(
        "/",
        summary="The price book: the version in effect now and those scheduled",
        responses=responses("forbidden", "not_found"),
    )
    async def read_price_book(
        self, principal: PrincipalDep, services: ServicesDep
    ) -> PriceBookView:
        """The version in effect now (`current`: the one with the latest `effective_from` at or
        before now; null until the first takes effect) and those whose `effective_from` is
        still ahead, soonest first. 404 before the first version is published."""
        outcome = await services.writer.submit(principal.envelope(GetPriceBook()))
        assert isinstance(outcome.value, PriceBookView)
        return outcome.value

    @get(
        "/history",
        summary="Every version of the price book, oldest first",
        responses=responses("forbidden"),
    )
    async def read_price_book_history(
        self, principal: PrincipalDep, services: ServicesDep
    ) -> PriceBookHistory:
        """Every version published, oldest first (none yet: an empty list). A version is never
        changed or removed: this is the record of what every quote and purchase was priced by."""
        outcome = await services.writer.submit(principal.envelope(GetPriceBookHistory()))
        assert isinstance(outcome.value, PriceBookHistory)
        return outcome.value


class OperatorPriceBookController(Controller):
    path = "/v1/tenants/{tenant_id:str}/price-book"
    tags = ["pricing"]
    guards = [operator_key]
    security = SECURITY

    @put(
        "/",
        status_code=201,
        summary="Publish a new price book version for a tenant (operator)",
        responses=responses("forbidden", "not_found", "conflict", "idempotency_key_reused"),
        dto=body_of(PublishPriceBook, excluded=("idempotency_key",)),
        return_dto=None,
    )
    async def publish_tenant_price_book(
        self,
        services: ServicesDep,
        tenant_id: TenantIdParam,
        idempotency_key: IdempotencyHeader,
        data: JSONBody[PublishPriceBook],
    ) -> Response[PriceBookVersionView]:
        """The operator's publish for the tenant of the path, as PUT /v1/price-book: a new
        version (numbered from 1) of 1 to 50 rules, one per currency, in effect from
        `effective_from` (default now; not in the past). At most 1,000 versions (409)."""
        refuse_key_in_body(data)
        command = msgspec.structs.replace(data, idempotency_key=idempotency_key)
        return answer(await services.writer.submit(Envelope(tenant_id=tenant_id, command=command)))

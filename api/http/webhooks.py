"""A tenant's outbound webhook endpoints (scope keys:manage: each receives every message and
holds a signing secret): create, list, read, change or enable again, delete; the delivery log
and manual redelivery. Delivery itself is the deliverer's (events/webhooks/deliverer.py)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import JSONBody, Parameter, QueryParameter

from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import tenant_key
from api.http.parameters import POSITION_MAX, SECURITY
from api.http.problems import ApiError, responses
from api.http.services import Services
from api.http.webhook_endpoints import WebhookEndpoints
from events.webhooks.http_client import URL_LENGTH_MAX
from events.webhooks.store import (
    DELIVERIES_PAGE_DEFAULT,
    DELIVERIES_PAGE_MAX,
    DESCRIPTION_LENGTH_MAX,
    DeliveryPage,
    EndpointView,
)
from ledger.tenants.api_keys import KEYS_MANAGE

EndpointIdParam = Annotated[str, Parameter(min_length=1, max_length=64)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=URL_LENGTH_MAX)]
Description = Annotated[str, msgspec.Meta(max_length=DESCRIPTION_LENGTH_MAX)]


class NewEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Url
    event_types: list[str] = []
    description: Description = ""


class EndpointPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Url | None = None
    event_types: list[str] | None = None
    description: Description | None = None
    enabled: bool | None = None


class EndpointList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[EndpointView]


class Redelivery(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: int
    status: str = "pending"


After = Annotated[
    int, QueryParameter(ge=0, le=POSITION_MAX, description="Deliveries after this id")
]
Limit = Annotated[int, QueryParameter(ge=1, le=DELIVERIES_PAGE_MAX)]
Status = Annotated[Literal["pending", "delivered", "failed"] | None, QueryParameter(required=False)]
DeliveryIdParam = Annotated[int, Parameter(ge=1, le=POSITION_MAX)]


def endpoints(services: Services) -> WebhookEndpoints:
    if services.webhooks is None:
        raise ApiError("unavailable", "webhooks are not configured on this replica")
    return services.webhooks


class WebhookEndpointController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["webhooks"]
    guards = [tenant_key(KEYS_MANAGE)]
    security = SECURITY

    @post(
        "/",
        summary="Add a webhook endpoint (its signing secret is shown once)",
        responses=responses("forbidden", "conflict"),
    )
    async def create_endpoint(
        self, principal: PrincipalDep, services: ServicesDep, data: JSONBody[NewEndpoint]
    ) -> EndpointView:
        return await endpoints(services).create(
            principal.tenant(), data.url, data.event_types, data.description
        )

    @get("/", summary="The tenant's webhook endpoints", responses=responses("forbidden"))
    async def list_endpoints(self, principal: PrincipalDep, services: ServicesDep) -> EndpointList:
        return EndpointList(items=await endpoints(services).all(principal.tenant()))

    @get(
        "/{endpoint_id:str}",
        summary="Read a webhook endpoint",
        responses=responses("forbidden", "not_found"),
    )
    async def read_endpoint(
        self, principal: PrincipalDep, services: ServicesDep, endpoint_id: EndpointIdParam
    ) -> EndpointView:
        return await endpoints(services).get(principal.tenant(), endpoint_id)

    @patch(
        "/{endpoint_id:str}",
        summary="Change a webhook endpoint, or enable it again",
        responses=responses("forbidden", "not_found"),
    )
    async def update_endpoint(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        endpoint_id: EndpointIdParam,
        data: JSONBody[EndpointPatch],
    ) -> EndpointView:
        return await endpoints(services).update(
            principal.tenant(),
            endpoint_id,
            url=data.url,
            event_types=data.event_types,
            description=data.description,
            enabled=data.enabled,
        )

    @delete(
        "/{endpoint_id:str}",
        summary="Delete a webhook endpoint (its pending deliveries end as failed)",
        responses=responses("forbidden", "not_found"),
    )
    async def delete_endpoint(
        self, principal: PrincipalDep, services: ServicesDep, endpoint_id: EndpointIdParam
    ) -> None:
        await endpoints(services).delete(principal.tenant(), endpoint_id)

    @get(
        "/{endpoint_id:str}/deliveries",
        summary="An endpoint's delivery log, oldest first, with every attempt",
        responses=responses("forbidden", "not_found"),
    )
    async def list_deliveries(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        endpoint_id: EndpointIdParam,
        after: After = 0,
        limit: Limit = DELIVERIES_PAGE_DEFAULT,
        status: Status = None,
    ) -> DeliveryPage:
        return await endpoints(services).deliveries(
            principal.tenant(), endpoint_id, after, limit, status
        )

    @post(
        "/{endpoint_id:str}/deliveries/{delivery_id:int}/redeliver",
        status_code=202,
        summary="Send a delivery again (same webhook-id, a fresh retry schedule)",
        responses=responses("forbidden", "not_found"),
    )
    async def redeliver(
        self,
        principal: PrincipalDep,
        services: ServicesDep,
        endpoint_id: EndpointIdParam,
        delivery_id: DeliveryIdParam,
    ) -> Redelivery:
        await endpoints(services).redeliver(principal.tenant(), endpoint_id, delivery_id)
        return Redelivery(delivery_id=delivery_id)

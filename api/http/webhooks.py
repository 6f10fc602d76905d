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
Url = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=URL_LENGTH_MAX,
        description=(
            "Where messages are POSTed: https:// (http:// too when the operator allows it), "
            "at most 2,048 characters, no credentials in it"
        ),
    ),
]
EventTypes = Annotated[
    list[str],
    msgspec.Meta(
        description=(
            "At most 20 types it receives, each exact (entry.consume, low_balance, "
            "topup.requested), a prefix (entry.*) or *; empty: every type"
        )
    ),
]
Description = Annotated[
    str,
    msgspec.Meta(max_length=DESCRIPTION_LENGTH_MAX, description="A note for people (optional)"),
]
Enabled = Annotated[
    bool,
    msgspec.Meta(
        description=(
            "true enables a disabled endpoint again and clears its failures (its pending "
            "deliveries resume); false: nothing is queued or sent to it"
        )
    ),
]


class NewEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Url
    event_types: EventTypes = []
    description: Description = ""


class EndpointPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a PATCH changes; what it leaves out stays as it is."""

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: Enabled | None = None


class EndpointList(msgspec.Struct, frozen=True, kw_only=True):
    items: Annotated[
        list[EndpointView],
        msgspec.Meta(description="The tenant's endpoints, oldest first, never their secrets"),
    ]


class Redelivery(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: Annotated[int, msgspec.Meta(description="The delivery made pending again")]
    status: Annotated[
        str, msgspec.Meta(description="pending: it is sent again, with a fresh retry schedule")
    ] = "pending"


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
        """Adds an endpoint that receives the tenant's messages (entry.<type> for each entry,
        low_balance, topup.requested) as Standard Webhooks, signed with its secret (`whsec_...`):
        this answer shows it, no other. At most 10 endpoints per tenant (409)."""
        return await endpoints(services).create(
            principal.tenant(), data.url, data.event_types, data.description
        )

    @get("/", summary="The tenant's webhook endpoints", responses=responses("forbidden"))
    async def list_endpoints(self, principal: PrincipalDep, services: ServicesDep) -> EndpointList:
        """Every endpoint of the tenant, oldest first, never a secret."""
        return EndpointList(items=await endpoints(services).all(principal.tenant()))

    @get(
        "/{endpoint_id:str}",
        summary="Read a webhook endpoint",
        responses=responses("forbidden", "not_found"),
    )
    async def read_endpoint(
        self, principal: PrincipalDep, services: ServicesDep, endpoint_id: EndpointIdParam
    ) -> EndpointView:
        """The endpoint as it is now: what it receives, whether it is enabled (and why not),
        how many attempts in a row failed; never its secret."""
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
        """Each field given replaces that field; the others stay. `enabled: true` enables a
        disabled endpoint again and clears its failures: its pending deliveries resume."""
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
        """Removes the endpoint: nothing more is queued for it, and its pending deliveries end
        as failed."""
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
        """The endpoint's deliveries, oldest first, each with every attempt (its status or
        error, its duration, the first 1 KiB of the answer). Query `after` (a delivery_id),
        `limit` (1 to 500, default 50), `status` (pending, delivered or failed)."""
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
        """Makes the delivery pending again, with a fresh retry schedule and the same
        webhook-id; it goes once the account's earlier pending deliveries to the endpoint are
        done."""
        await endpoints(services).redeliver(principal.tenant(), endpoint_id, delivery_id)
        return Redelivery(delivery_id=delivery_id)

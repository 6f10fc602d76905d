"""Payment providers' webhooks: Stripe's, verified, kept raw in the inbox, then applied; a
tenant's signing secrets (keys:manage); the inbox, listed for the operator.

`POST /v1/webhooks/stripe/{tenant_id}` carries no API key: the `Stripe-Signature` header is its
authentication (ledger/payments/stripe_signature.py). A bad signature answers 400 and records
nothing. A verified event is kept in the inbox before it is applied; a redelivery of one kept
as applied, ignored or failed is acknowledged and not applied again. An event that cannot be
applied for good (no account in its metadata, an unknown payment) is acknowledged with 200
and kept as `failed`; one the ledger cannot apply right now (503) is answered 503 so Stripe
sends it again.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import JSONBody, Parameter, QueryParameter

from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import operator_key, tenant_key
from api.http.parameters import POSITION_MAX, SECURITY, TenantIdParam
from api.http.payment_store import (
    INBOX_PAGE_DEFAULT,
    INBOX_PAGE_MAX,
    WEBHOOK_SECRET_LENGTH_MAX,
    InboxPage,
    PaymentStore,
    WebhookSecretView,
)
from api.http.problems import ApiError, responses
from api.http.services import Services
from ledger.accounts.views import Entry
from ledger.commands import Envelope
from ledger.errors import LedgerError, RefundExceedsRefundableError, UnavailableError
from ledger.ids import check_tenant_id
from ledger.payments.commands import GetPayment
from ledger.payments.stripe_events import (
    Ignored,
    Purchase,
    StripeEvent,
    StripeEventError,
    action_of,
    decode_event,
    reversal_command,
)
from ledger.payments.stripe_signature import SignatureError, verify
from ledger.tenants.api_keys import KEYS_MANAGE

log = structlog.get_logger("api.http.payments")

STRIPE = "stripe"
SecretIdParam = Annotated[str, Parameter(min_length=1, max_length=64)]


class NewWebhookSecret(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    secret: Annotated[
        str,
        msgspec.Meta(
            min_length=8,
            max_length=WEBHOOK_SECRET_LENGTH_MAX,
            description="The endpoint's signing secret as Stripe shows it (whsec_...)",
        ),
    ]


class WebhookSecretList(msgspec.Struct, frozen=True, kw_only=True):
    items: Annotated[
        list[WebhookSecretView],
        msgspec.Meta(description="The tenant's secrets, oldest first, never the secrets"),
    ]


class WebhookReceipt(msgspec.Struct, frozen=True, kw_only=True):
    event_id: Annotated[str, msgspec.Meta(description="The Stripe event's id (evt_...)")]
    status: Annotated[
        str,
        msgspec.Meta(
            description=(
                "applied (it credited or reversed), ignored (nothing to do) or failed (it "
                "cannot be applied as it is): the inbox row's detail says why"
            )
        ),
    ]
    duplicate: Annotated[
        bool,
        msgspec.Meta(
            description=(
                "True when the event was received before: it is not applied again (one kept "
                "but never applied, the ledger being unavailable, is applied now)"
            )
        ),
    ] = False


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    detail: str | None = None
    payment_ref: str | None = None
    account_id: str | None = None
    position: int | None = None


def payment_store(services: Services) -> PaymentStore:
    if services.payments is None:
        raise ApiError("unavailable", "the payment store is not configured on this replica")
    return services.payments


async def apply_stripe_event(services: Services, tenant_id: str, event: StripeEvent) -> Applied:
    """What the event does to the ledger. UnavailableError passes through (the caller answers
    503: Stripe retries); any other ledger error is this event's failure for good."""
    try:
        action = action_of(event)
    except StripeEventError as error:
        return Applied(status="failed", detail=str(error))
    if isinstance(action, Ignored):
        return Applied(status="ignored", detail=action.reason)
    try:
        if isinstance(action, Purchase):
            outcome = await services.writer.submit(
                Envelope(tenant_id=tenant_id, command=action.command)
            )
        else:
            account_id = action.account_id
            if account_id is None:
                found = await services.writer.submit(
                    Envelope(
                        tenant_id=tenant_id, command=GetPayment(payment_ref=action.payment_ref)
                    )
                )
                assert isinstance(found.value, Entry)
                account_id = found.value.account_id
            command = reversal_command(action, account_id, event.id)
            outcome = await services.writer.submit(Envelope(tenant_id=tenant_id, command=command))
    except UnavailableError:
        raise
    except RefundExceedsRefundableError as error:
        return Applied(status="ignored", detail=error.detail)
    except LedgerError as error:
        return Applied(status="failed", detail=f"{error.code}: {error.detail}")
    entry = outcome.value
    assert isinstance(entry, Entry)
    return Applied(
        status="applied",
        payment_ref=entry.payment_ref,
        account_id=entry.account_id,
        position=entry.position,
    )


async def receive_stripe(
    services: Services, tenant_id: str, request: Request[Any, Any, Any]
) -> WebhookReceipt:
    store = payment_store(services)
    payload = await request.body()
    try:
        check_tenant_id(tenant_id)
        verify(
            payload,
            request.headers.get("stripe-signature"),
            await store.secrets(tenant_id, STRIPE),
            time.time(),
        )
    except (SignatureError, LedgerError) as error:
        log.warning(
            "webhook_signature_refused", provider=STRIPE, tenant_id=tenant_id, error=str(error)
        )
        raise ApiError("invalid_signature", str(error)) from None
    try:
        event = decode_event(payload)
    except msgspec.DecodeError as error:
        log.warning("webhook_malformed", provider=STRIPE, tenant_id=tenant_id, error=str(error))
        raise ApiError("validation_error", f"not a Stripe event: {error}") from None
    kept = await store.receive(tenant_id, STRIPE, event.id, event.type, payload)
    if kept is not None and kept != "received":
        return WebhookReceipt(event_id=event.id, status=kept, duplicate=True)
    try:
        applied = await apply_stripe_event(services, tenant_id, event)
    except UnavailableError as error:
        log.warning(
            "webhook_apply_unavailable", provider=STRIPE, event_id=event.id, error=error.detail
        )
        raise
    if applied.status == "failed":
        log.warning(
            "webhook_apply_failed",
            provider=STRIPE,
            tenant_id=tenant_id,
            event_id=event.id,
            type=event.type,
            detail=applied.detail,
        )
    await store.finish(
        tenant_id,
        STRIPE,
        event.id,
        applied.status,
        detail=applied.detail,
        payment_ref=applied.payment_ref,
        account_id=applied.account_id,
        position=applied.position,
    )
    return WebhookReceipt(event_id=event.id, status=applied.status, duplicate=kept is not None)


class StripeWebhookController(Controller):
    path = "/v1/webhooks/stripe/{tenant_id:str}"
    tags = ["payments"]

    @post(
        "/",
        status_code=200,
        summary="Receive a Stripe event (authenticated by its Stripe-Signature)",
        responses=responses("invalid_signature"),
    )
    async def receive_stripe_event(
        self, services: ServicesDep, tenant_id: TenantIdParam, request: Request[Any, Any, Any]
    ) -> WebhookReceipt:
        """Stripe's webhook for the tenant of the path. No API key: the `Stripe-Signature`
        header must carry a v1 HMAC-SHA256 of `<t>.<the raw body>` keyed by one of the tenant's
        secrets, `t` within 300 s of now; else 400 invalid_signature and nothing is recorded.
        The event is kept raw in the inbox, then applied: a paid checkout session or payment
        intent is a purchase, a refund or dispute a reversal, any other type is ignored. A
        redelivery answers `duplicate: true` and is not applied again (unless it never was);
        503 when the ledger cannot apply it now, so that Stripe sends it again."""
        return await receive_stripe(services, tenant_id, request)


class WebhookSecretController(Controller):
    path = "/v1/payment-webhooks/stripe/secrets"
    tags = ["payments"]
    guards = [tenant_key(KEYS_MANAGE)]
    security = SECURITY

    @post(
        "/",
        summary="Add a Stripe signing secret (sealed with LEDGER_SECRET_KEY, never shown again)",
        responses=responses("forbidden", "conflict"),
    )
    async def add_stripe_secret(
        self, principal: PrincipalDep, services: ServicesDep, data: JSONBody[NewWebhookSecret]
    ) -> WebhookSecretView:
        """Adds a signing secret of the tenant's Stripe endpoint (`whsec_...`, 8 to 256
        characters), sealed with LEDGER_SECRET_KEY: no answer shows it again, only its last 4
        characters. At most 5 per tenant (409): to rotate, add the new one, then delete the
        old one once Stripe no longer signs with it; meanwhile either verifies."""
        secret = data.secret.strip()
        if not secret.isprintable() or len(secret) < 8:
            raise ApiError("validation_error", "secret must be at least 8 printable characters")
        return await payment_store(services).add_secret(principal.tenant(), STRIPE, secret)

    @get(
        "/",
        summary="The tenant's Stripe signing secrets (never the secrets)",
        responses=responses("forbidden"),
    )
    async def list_stripe_secrets(
        self, principal: PrincipalDep, services: ServicesDep
    ) -> WebhookSecretList:
        """The tenant's Stripe signing secrets, oldest first: their ids and hints, never the
        secrets."""
        items = await payment_store(services).list_secrets(principal.tenant(), STRIPE)
        return WebhookSecretList(items=items)

    @delete(
        "/{secret_id:str}",
        summary="Retire a Stripe signing secret",
        responses=responses("forbidden", "not_found"),
    )
    async def delete_stripe_secret(
        self, principal: PrincipalDep, services: ServicesDep, secret_id: SecretIdParam
    ) -> None:
        """Deletes the secret: events signed with it alone answer 400 invalid_signature from
        then on. A secret the tenant does not have answers 404."""
        if not await payment_store(services).delete_secret(principal.tenant(), STRIPE, secret_id):
            raise ApiError("not_found", f"secret {secret_id} not found")


After = Annotated[int, QueryParameter(ge=0, le=POSITION_MAX, description="Rows after this seq")]
Limit = Annotated[int, QueryParameter(ge=1, le=INBOX_PAGE_MAX)]


class PaymentInboxController(Controller):
    path = "/v1/tenants/{tenant_id:str}/payment-events"
    tags = ["payments"]
    guards = [operator_key]
    security = SECURITY

    @get(
        "/",
        summary="A tenant's payment inbox: every provider event received, raw, oldest first",
        responses=responses("forbidden"),
    )
    async def list_payment_events(
        self,
        services: ServicesDep,
        tenant_id: TenantIdParam,
        after: After = 0,
        limit: Limit = INBOX_PAGE_DEFAULT,
    ) -> Response[InboxPage]:
        """The operator's view of the tenant's payment inbox: every verified event, raw as it
        arrived, oldest first, with what became of it (received, applied, ignored, failed).
        Page with `after` (a seq) and `limit` (1 to 1,000, default 100)."""
        page = await payment_store(services).events(tenant_id, after, limit)
        return Response(page)

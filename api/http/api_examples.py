"""The examples /schema shows: instances of the very structs the API decodes and answers,
encoded by msgspec as the API encodes them (tests/e2e/test_api_reference.py decodes each one
back into its struct, strictly, and holds every request body and answer of the document to
having one). A body's example leaves out what the route gives from the path or a header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from api.http.batch import BatchAnswer, BatchBody, BatchResult
from api.http.health import Health
from api.http.payment_store import InboxEvent, InboxPage, WebhookSecretView
from api.http.payments import NewWebhookSecret, WebhookReceipt, WebhookSecretList
from api.http.problems import problem
from api.http.read_models import EntryPage
from api.http.reports import Verification
from api.http.stream_tokens import StreamToken, StreamTokenRequest
from api.http.tenants import ApiKeyList, DisableBody, TenantPage
from api.http.webhooks import EndpointList, EndpointPatch, NewEndpoint, Redelivery
from events.webhooks.store import AttemptView, DeliveryPage, DeliveryView, EndpointView
from ledger.accounts import commands as c
from ledger.accounts.views import AccountView, Entry, HoldView, LotView, Totals
from ledger.pricing.commands import CreateQuote, PublishPriceBook
from ledger.pricing.rules import PriceRule, Tier
from ledger.pricing.views import PriceBookHistory, PriceBookVersionView, PriceBookView, QuoteView
from ledger.tenants.commands import CreateApiKey, CreateTenant, RotateApiKey, UpdateTenant
from ledger.tenants.settings import TenantSettings, TenantSettingsPatch
from ledger.tenants.views import ApiKeyView, TenantView
from ledger.topups.commands import SetAccountTopUp, SetTenantTopUp
from ledger.topups.policy import TopUpSettings
from ledger.topups.record import OpenTopUp
from ledger.topups.views import AccountTopUpView, TopUpPolicyView
from projections.queries import Balance, UsageReport, UsageRow, UsageTotal

AT = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
LATER = datetime(2026, 11, 22, 10, 5, 0, 654321, tzinfo=UTC)
EXPIRES = datetime(2027, 1, 1, tzinfo=UTC)
ACCOUNT = "ada@example.com"
LOT = "0b0e6f8e-2f4a-4d55-9a55-2b8f5b0c1d2e"
HOLD = "6a1c3d9e-8b7f-4e2a-9c1d-5f3e2a1b0c9d"
KEY_ID = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
CONSUMPTION = "9f86d081884c7d659a2feaa0c55ad015.3"

SETTINGS = TenantSettings(signup_bonus=100, overdraft_limit=0, purchase_rates={"USD": "100"})
KEY = ApiKeyView(
    key_id=KEY_ID,
    name="billing worker",
    scopes=["credits:consume"],
    key_prefix="lk_live_Ab3d",
    created_at=AT,
    key="lk_live_Ab3dEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfG",
)
TENANT = TenantView(
    tenant_id="acme",
    name="Acme",
    settings=SETTINGS,
    version=2,
    created_at=AT,
    updated_at=AT,
)
CONSUME = Entry(
    entry_id="1b4e28ba-2fa1-51d2-883f-0016d3cca427",
    account_id=ACCOUNT,
    type="consume",
    amount=-120,
    balance=480,
    available=430,
    held=50,
    version=4,
    position=1234,
    recorded_at=LATER,
    operation="IMAGE_GENERATION",
    consumption_id=CONSUMPTION,
)
HOLD_VIEW = HoldView(
    hold_id=HOLD,
    account_id=ACCOUNT,
    amount=50,
    operation="VIDEO_RENDER",
    status="active",
    expires_at=LATER,
    created_at=AT,
    position=1233,
)
GRANT = c.GrantCredits(amount=500, reason="welcome pack", expires_at=EXPIRES, priority=100)

# Money in and news out (issue 16): the price book and a quote by it, a reversal, auto top-up,
# Stripe's webhook and its inbox, outbound webhook endpoints and their deliveries.
FIRST_RULE = PriceRule(currency="USD", credits_per_unit="100")
USD_RULE = PriceRule(
    currency="USD",
    credits_per_unit="100",
    bonus_percent="10",
    tiers=[Tier(min_amount="50", credits_per_unit="120")],
)
FIRST_VERSION = PriceBookVersionView(
    version=1, effective_from=AT, published_at=AT, rules=[FIRST_RULE]
)
VERSION = PriceBookVersionView(
    version=2, effective_from=LATER, published_at=LATER, rules=[USD_RULE]
)
NEXT_VERSION = PriceBookVersionView(
    version=3,
    effective_from=EXPIRES,
    published_at=LATER,
    rules=[msgspec.structs.replace(USD_RULE, bonus_percent="0")],
)
USD_9_99 = c.Price(amount="9.99", currency="USD")
TOPUP_POLICY = TopUpSettings(below=100, target=1_000, monthly_max=3)
STRIPE_EVENT = "evt_1QexampleCheckoutPaid"
STRIPE_PAYLOAD = msgspec.json.encode(
    {
        "id": STRIPE_EVENT,
        "object": "event",
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "object": "checkout.session",
                "payment_status": "paid",
                "payment_intent": "pi_3Nk2",
                "amount_total": 999,
                "currency": "usd",
                "metadata": {"account_id": ACCOUNT},
            }
        },
    }
)
STRIPE_SECRET = WebhookSecretView(
    secret_id="c2d9e0f1-7a6b-4c5d-8e9f-0a1b2c3d4e5f",  # noqa: S106 - an id, not a secret
    provider="stripe",
    hint="Docs",
    created_at=AT,
)
ENDPOINT = EndpointView(
    endpoint_id="ep_7c9e6679f4a84b1a9e2b3c4d5e6f7a8b",
    url="https://hooks.example.com/ledger",
    event_types=["entry.*", "low_balance"],
    description="billing service",
    enabled=True,
    created_at=AT,
    updated_at=AT,
)
DELIVERED_AT = LATER + timedelta(seconds=15)

MONEY: dict[str, msgspec.Struct] = {
    "PublishPriceBookBody": PublishPriceBook(rules=[USD_RULE]),
    "PriceBookVersionView": VERSION,
    "PriceBookView": PriceBookView(current=VERSION, scheduled=[NEXT_VERSION]),
    "PriceBookHistory": PriceBookHistory(items=[FIRST_VERSION, VERSION, NEXT_VERSION]),
    "CreateQuoteBody": CreateQuote(price=USD_9_99, account_id=ACCOUNT),
    # 9.99 USD at 100 credits/USD and a 10 % bonus: floor(1098.9)
    "QuoteView": QuoteView(
        quote_id="q_4f1d2c3b5a6948e7b8c9d0e1f2a3b4c5",
        credits=1_098,
        price=USD_9_99,
        rule_version=2,
        expires_at=LATER + timedelta(seconds=900),
        created_at=LATER,
        account_id=ACCOUNT,
    ),
    "ReverseCreditsBody": c.ReverseCredits(
        payment_ref="pi_3Nk2", reason="payment refunded in part", share="0.5"
    ),
    "SetAccountTopUpBody": SetAccountTopUp(below=100, target=1_000, monthly_max=3),
    "AccountTopUpView": AccountTopUpView(
        account_id=ACCOUNT,
        policy=TOPUP_POLICY,
        source="account",
        requested_this_month=2,
        open=OpenTopUp(
            topup_id="tu_0e5b1a2c3d4f4e6a8b9c0d1e2f3a4b5c",
            credits=930,
            attempt=1,
            requested_at=LATER,
        ),
        last={
            "topup_id": "tu_9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d",
            "status": "closed",
            "by": "pi_3Nk2",
        },
    ),
    "SetTenantTopUpBody": SetTenantTopUp(below=0, amount=500),
    "TopUpPolicyView": TopUpPolicyView(policy=TopUpSettings(below=0, amount=500), source="tenant"),
    "NewWebhookSecret": NewWebhookSecret(
        secret="whsec_example_not_a_real_secret_Docs"  # noqa: S106 - an example
    ),
    "WebhookSecretView": STRIPE_SECRET,
    "WebhookSecretList": WebhookSecretList(items=[STRIPE_SECRET]),
    "WebhookReceipt": WebhookReceipt(event_id=STRIPE_EVENT, status="applied"),
    "InboxPage": InboxPage(
        items=[
            InboxEvent(
                seq=41,
                provider="stripe",
                event_id=STRIPE_EVENT,
                type="checkout.session.completed",
                status="applied",
                received_at=AT,
                payload=msgspec.Raw(STRIPE_PAYLOAD),
                applied_at=AT,
                payment_ref="pi_3Nk2",
                account_id=ACCOUNT,
                position=1_230,
            )
        ],
        next_after=None,
    ),
    "NewEndpoint": NewEndpoint(
        url=ENDPOINT.url, event_types=ENDPOINT.event_types, description=ENDPOINT.description
    ),
    "EndpointView": msgspec.structs.replace(
        ENDPOINT,
        secret="whsec_exampleNotARealSecretForTheDocs000000000000=",  # noqa: S106 - an example
    ),
    "EndpointList": EndpointList(
        items=[
            ENDPOINT,
            EndpointView(
                endpoint_id="ep_1b2c3d4e5f6a4b7c8d9e0f1a2b3c4d5e",
                url="https://old.example.com/hooks",
                event_types=[],
                description="",
                enabled=False,
                created_at=AT,
                updated_at=LATER,
                disabled_reason="every attempt failed for 1 day, 0:12:00 (31 in a row); "
                "last: answered 503",
                consecutive_failures=31,
                failing_since=AT - timedelta(days=1),
            ),
        ]
    ),
    "EndpointPatch": EndpointPatch(enabled=True),
    "DeliveryPage": DeliveryPage(
        items=[
            DeliveryView(
                delivery_id=812,
                message_id="msg_1234",
                type="entry.consume",
                account_id=ACCOUNT,
                position=1_234,
                status="delivered",
                attempts=2,
                created_at=LATER,
                delivered_at=DELIVERED_AT,
                last_status=200,
                attempt_log=[
                    AttemptView(
                        attempt=1,
                        at=LATER + timedelta(seconds=10),
                        duration_ms=10_000,
                        error="no answer within the response timeout",
                        answer="",
                    ),
                    AttemptView(
                        attempt=2, at=DELIVERED_AT, duration_ms=84, status=200, answer="ok"
                    ),
                ],
            )
        ],
        next_after=None,
    ),
    "Redelivery": Redelivery(delivery_id=812),
}


# By OpenAPI component name. Command bodies are the commands themselves.
EXAMPLES: dict[str, msgspec.Struct] = {
    "CreateTenantBody": CreateTenant(tenant_id="acme", name="Acme", settings=SETTINGS),
    "UpdateTenantBody": UpdateTenant(
        name="Acme Inc.", settings=TenantSettingsPatch(signup_bonus=50)
    ),
    "CreateApiKeyBody": CreateApiKey(scopes=["credits:consume"], name="billing worker"),
    "RotateApiKeyBody": RotateApiKey(grace_s=3_600),
    "DisableBody": DisableBody(reason="unpaid invoice 2026-11"),
    "OpenAccountBody": c.OpenAccount(metadata={"plan": "pro"}),
    "GrantCreditsBody": GRANT,
    "GrantCredits": msgspec.structs.replace(GRANT, account_id=ACCOUNT),
    "PurchaseCreditsBody": c.PurchaseCredits(
        price=c.Price(amount="9.99", currency="USD"), payment_ref="pi_3Nk2"
    ),
    "ConsumeCreditsBody": c.ConsumeCredits(
        amount=120, operation="IMAGE_GENERATION", resource="img-77", user_id="u-42"
    ),
    "RefundConsumptionBody": c.RefundConsumption(
        consumption_id=CONSUMPTION, reason="generation failed"
    ),
    "PlaceHoldBody": c.PlaceHold(amount=50, operation="VIDEO_RENDER", expires_in_s=600),
    "CaptureHoldBody": c.CaptureHold(amount=35),
    "AdjustBalanceBody": c.AdjustBalance(amount=-20, reason="double charge on 11-21"),
    "BatchBody": BatchBody(
        atomic=True,
        commands=[
            c.ConsumeCredits(account_id=ACCOUNT, amount=10, operation="EMBED"),
            c.GrantCredits(account_id="bob@example.com", amount=10, reason="transfer"),
        ],
    ),
    "StreamTokenRequest": StreamTokenRequest(account_id=ACCOUNT, ttl_s=300),
    "TenantView": msgspec.structs.replace(TENANT, api_key=KEY),
    "TenantPage": TenantPage(items=[TENANT], next_after=None),
    "ApiKeyView": KEY,
    "ApiKeyList": ApiKeyList(items=[msgspec.structs.replace(KEY, key=None, last_used_at=LATER)]),
    "AccountView": AccountView(
        account_id=ACCOUNT,
        balance=480,
        available=430,
        held=50,
        version=5,
        created_at=AT,
        updated_at=LATER,
        metadata={},
        position=1234,
        lots=[
            LotView(
                lot_id=LOT, source="grant", remaining=480, expires_at=None, priority=100, held=50
            )
        ],
        totals=Totals(granted=600, purchased=0, consumed=120, refunded=0, expired=0, adjusted=0),
    ),
    "Entry": CONSUME,
    "EntryPage": EntryPage(items=[CONSUME], next_after=None),
    "HoldView": HOLD_VIEW,
    "Balance": Balance(account_id=ACCOUNT, as_of=LATER, balance=480, available=430, held=50),
    "BatchAnswer": BatchAnswer(
        results=[BatchResult(status=201, entry=CONSUME), BatchResult(status=201, entry=CONSUME)]
    ),
    "UsageReport": UsageReport(
        from_=AT.date(),
        to=AT.date(),
        group_by=["operation"],
        items=[UsageRow(operation="IMAGE_GENERATION", count=1, credits=120, refunded=0)],
        total=UsageTotal(count=1, credits=120, refunded=0),
    ),
    "Verification": Verification(ok=True, accounts=1, entries=5, mismatches=[]),
    "StreamToken": StreamToken(
        token="lst1.eyJ0IjoiYWNtZSJ9.c2lnbmF0dXJl",  # noqa: S106 - an example
        tenant_id="acme",
        account_id=ACCOUNT,
        expires_at=LATER,
    ),
    "Health": Health(status="ok", checks={"store": "ok", "nats": "ok"}),
    "Problem": problem(
        "insufficient_credits", "available 90 (overdraft limit 0) is short of 1000", available=90
    ),
    **MONEY,
}


def as_json(value: Any) -> Any:
    """What the API sends for `value`, decoded: through JSON, not `msgspec.to_builtins`, which
    has no form for a `msgspec.Raw` (the payment inbox's payload, JSON already)."""
    return msgspec.json.decode(msgspec.json.encode(value))


def example_of(name: str, properties: dict[str, Any]) -> Any:
    """The example as JSON-ready data, with only the fields the component shows."""
    data = as_json(EXAMPLES[name])
    if isinstance(data, dict) and properties:
        data = {key: value for key, value in data.items() if key in properties}
    return data

"""The examples /schema shows: instances of the very structs the API decodes and answers,
encoded by msgspec as the API encodes them (tests/e2e/test_api_reference.py decodes each one
back into its struct, strictly, and holds every request body and answer of the document to
having one). A body's example leaves out what the route gives from the path or a header."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from api.http.batch import BatchAnswer, BatchBody, BatchResult
from api.http.health import Health
from api.http.problems import problem
from api.http.read_models import EntryPage
from api.http.reports import Verification
from api.http.stream_tokens import StreamToken, StreamTokenRequest
from api.http.tenants import ApiKeyList, DisableBody, TenantPage
from ledger.accounts import commands as c
from ledger.accounts.views import AccountView, Entry, HoldView, LotView, Totals
from ledger.tenants.commands import CreateApiKey, CreateTenant, RotateApiKey, UpdateTenant
from ledger.tenants.settings import TenantSettings, TenantSettingsPatch
from ledger.tenants.views import ApiKeyView, TenantView
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
}


def example_of(name: str, properties: dict[str, Any]) -> Any:
    """The example as JSON-ready data, with only the fields the component shows."""
    data = msgspec.to_builtins(EXAMPLES[name])
    if isinstance(data, dict) and properties:
        data = {key: value for key, value in data.items() if key in properties}
    return data

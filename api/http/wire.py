"""Request bodies and list answers of the HTTP API (msgspec structs; responses reuse
ledger.accounts.views). Constraints here are what the OpenAPI document shows; ledger.commands.check
applies the same rules again to every command, whatever its source."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request
from msgspec import Meta

from api.http.problems import Problem
from ledger.accounts.views import ApiKeyView, Entry, HoldView
from ledger.commands import Price, TenantSettings, TenantSettingsPatch
from ledger.errors import InvalidCommandError
from ledger.limits import (
    ACCOUNT_ID_LENGTH_MAX,
    AMOUNT_MAX,
    HOLD_EXPIRES_IN_S_DEFAULT,
    HOLD_EXPIRES_IN_S_MAX,
    IDEMPOTENCY_KEY_LENGTH_MAX,
    PAYMENT_REF_LENGTH_MAX,
    PRIORITY_MAX,
    TEXT_LENGTH_MAX,
)
from ledger.tenants.tenant import SCOPES

T = TypeVar("T")

# Commands one POST /v1/batch may carry.
BATCH_COMMANDS_MAX = 1_000

Amount = Annotated[int, Meta(ge=1, le=AMOUNT_MAX)]
SignedAmount = Annotated[int, Meta(ge=-AMOUNT_MAX, le=AMOUNT_MAX)]
Text = Annotated[str, Meta(min_length=1, max_length=TEXT_LENGTH_MAX)]
OptionalText = Annotated[str, Meta(max_length=TEXT_LENGTH_MAX)]
AccountId = Annotated[
    str, Meta(min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX, pattern=r"^[^\s]+$")
]
TenantId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
IdempotencyKey = Annotated[str, Meta(min_length=1, max_length=IDEMPOTENCY_KEY_LENGTH_MAX)]
Scope = Annotated[str, Meta(pattern="^(" + "|".join(SCOPES) + ")$")]


class TenantCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tenant_id: TenantId
    name: Text
    settings: TenantSettings | None = None


class TenantPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Text | None = None
    settings: TenantSettingsPatch | None = None


class ApiKeyCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=len(SCOPES))]
    name: OptionalText = ""
    expires_at: datetime | None = None


class ApiKeyList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ApiKeyView]


class AccountPut(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    metadata: dict[str, Any] = {}
    signup_bonus: Annotated[int, Meta(ge=0, le=AMOUNT_MAX)] | None = None


class GrantBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: Amount
    reason: Text
    expires_at: datetime | None = None
    priority: Annotated[int, Meta(ge=0, le=PRIORITY_MAX)] | None = None
    metadata: dict[str, Any] = {}


class PurchaseBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    price: Price
    payment_ref: Annotated[str, Meta(min_length=1, max_length=PAYMENT_REF_LENGTH_MAX)]
    amount: Amount | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] = {}


class ConsumeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: Amount
    operation: Text
    resource: OptionalText | None = None
    user_id: OptionalText | None = None
    metadata: dict[str, Any] = {}


class RefundBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    consumption_id: Text
    reason: Text
    amount: Amount | None = None


class HoldBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: Amount
    operation: Text
    expires_in_s: Annotated[int, Meta(ge=1, le=HOLD_EXPIRES_IN_S_MAX)] = HOLD_EXPIRES_IN_S_DEFAULT
    metadata: dict[str, Any] = {}


class CaptureBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: Amount | None = None


class AdjustBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: SignedAmount
    reason: Text


# ------------------------------------------------------------------ batch


_BATCH = {"tag_field": "op", "frozen": True, "kw_only": True, "forbid_unknown_fields": True}


class BatchGrant(GrantBody, tag="grant", **_BATCH):  # type: ignore[call-arg]
    account_id: AccountId
    idempotency_key: IdempotencyKey | None = None


class BatchPurchase(PurchaseBody, tag="purchase", **_BATCH):  # type: ignore[call-arg]
    account_id: AccountId
    idempotency_key: IdempotencyKey | None = None


class BatchConsume(ConsumeBody, tag="consume", **_BATCH):  # type: ignore[call-arg]
    account_id: AccountId
    idempotency_key: IdempotencyKey | None = None


class BatchRefund(RefundBody, tag="refund", **_BATCH):  # type: ignore[call-arg]
    account_id: AccountId
    idempotency_key: IdempotencyKey | None = None


class BatchHold(HoldBody, tag="hold", **_BATCH):  # type: ignore[call-arg]
    account_id: AccountId
    idempotency_key: IdempotencyKey | None = None


class BatchCapture(CaptureBody, tag="capture", **_BATCH):  # type: ignore[call-arg]
    account_id: AccountId
    hold_id: Text
    idempotency_key: IdempotencyKey | None = None


class BatchRelease(msgspec.Struct, tag="release", **_BATCH):  # type: ignore[call-arg]
    account_id: AccountId
    hold_id: Text
    idempotency_key: IdempotencyKey | None = None


class BatchAdjust(AdjustBody, tag="adjust", **_BATCH):  # type: ignore[call-arg]
    account_id: AccountId
    idempotency_key: IdempotencyKey | None = None


BatchCommand = (
    BatchGrant
    | BatchPurchase
    | BatchConsume
    | BatchRefund
    | BatchHold
    | BatchCapture
    | BatchRelease
    | BatchAdjust
)


class BatchBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    commands: Annotated[list[BatchCommand], Meta(min_length=1, max_length=BATCH_COMMANDS_MAX)]
    atomic: bool = False


class BatchResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    status: int
    entry: Entry | None = None
    hold: HoldView | None = None
    error: Problem | None = None
    replayed: bool = False


class BatchAnswer(msgspec.Struct, frozen=True, kw_only=True):
    results: list[BatchResult]


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    checks: dict[str, str] = {}


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode_strictly(body: bytes, cls: type[T]) -> T:
    """Decodes a body with no type coercion: "10" is not an amount. (Litestar's own decoding
    of `data` is lax; it stays in the signatures for the OpenAPI document.)"""
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders.setdefault(cls, msgspec.json.Decoder(cls))
    try:
        decoded: T = decoder.decode(body)
    except msgspec.ValidationError as error:
        raise InvalidCommandError(str(error)) from None
    except msgspec.DecodeError:
        raise InvalidCommandError("the body is not valid JSON") from None
    except RecursionError:
        raise InvalidCommandError("the body is nested too deeply") from None
    return decoded


async def strict_body(request: Request[Any, Any, Any], cls: type[T]) -> T:
    return decode_strictly(await request.body(), cls)

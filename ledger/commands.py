"""Commands: what a caller asks the ledger to do. Verbs, one frozen struct each.

`check(command)` validates a command against the rules of API.md before it reaches the writer;
a command that fails here is rejected with InvalidCommandError and nothing is recorded (not
even against its idempotency key). `fingerprint(command)` identifies a request for idempotency.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from ledger.errors import InvalidCommandError
from ledger.ids import check_account_id, check_idempotency_key, check_tenant_id
from ledger.limits import (
    AMOUNT_MAX,
    EXPIRY_HORIZON_MAX,
    HOLD_EXPIRES_IN_S_MAX,
    METADATA_BYTES_MAX,
    METADATA_DEPTH_MAX,
    METADATA_KEYS_MAX,
    OVERDRAFT_LIMIT_MAX,
    PAYMENT_REF_LENGTH_MAX,
    PRIORITY_MAX,
    PURCHASE_RATES_MAX,
    TEXT_LENGTH_MAX,
)
from ledger.tenants.tenant import SCOPES


class TenantSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    signup_bonus: int = 0
    signup_bonus_expires_in_days: int | None = None
    overdraft_limit: int = 0
    low_balance_threshold: int | None = None
    purchase_rates: dict[str, str] = {}


class TenantSettingsPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    signup_bonus: int | msgspec.UnsetType = msgspec.UNSET
    signup_bonus_expires_in_days: int | msgspec.UnsetType | None = msgspec.UNSET
    overdraft_limit: int | msgspec.UnsetType = msgspec.UNSET
    low_balance_threshold: int | msgspec.UnsetType | None = msgspec.UNSET
    purchase_rates: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


class Price(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: str  # a decimal string, "9.99"
    currency: str  # ISO 4217


class Command(
    msgspec.Struct, tag_field="op", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    tenant_id: str
    idempotency_key: str | None = None


class AccountCommand(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_id: str


class CreateTenant(
    Command, tag="create_tenant", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    name: str
    settings: TenantSettings = TenantSettings()


class UpdateTenant(
    Command, tag="update_tenant", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    name: str | None = None
    settings: TenantSettingsPatch | None = None


class CreateApiKey(
    Command, tag="create_api_key", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    scopes: list[str]
    name: str = ""
    expires_at: datetime | None = None


class RevokeApiKey(
    Command, tag="revoke_api_key", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    key_id: str


class OpenAccount(
    AccountCommand, tag="open", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    metadata: dict[str, Any] = {}
    signup_bonus: int | None = None


class GrantCredits(
    AccountCommand, tag="grant", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    amount: int
    reason: str
    expires_at: datetime | None = None
    priority: int | None = None
    metadata: dict[str, Any] = {}


class PurchaseCredits(
    AccountCommand, tag="purchase", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    price: Price
    payment_ref: str
    amount: int | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] = {}


class ConsumeCredits(
    AccountCommand, tag="consume", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    amount: int
    operation: str
    resource: str | None = None
    user_id: str | None = None
    metadata: dict[str, Any] = {}


class RefundConsumption(
    AccountCommand, tag="refund", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    consumption_id: str
    reason: str
    amount: int | None = None


class PlaceHold(AccountCommand, tag="hold", frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: int
    operation: str
    expires_in_s: int = 300
    metadata: dict[str, Any] = {}


class CaptureHold(
    AccountCommand, tag="capture", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    hold_id: str
    amount: int | None = None


class ReleaseHold(
    AccountCommand, tag="release", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    hold_id: str


class AdjustBalance(
    AccountCommand, tag="adjust", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    amount: int
    reason: str


class ExpireCredits(
    AccountCommand, tag="expire", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Ends the account's holds and lots that are past their expiry (a sweeper sends it)."""


class GetAccount(
    AccountCommand, tag="get_account", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """A read through the writer: reflects every command already answered."""


class GetHold(
    AccountCommand, tag="get_hold", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    hold_id: str


class GetTenant(Command, tag="get_tenant", frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


QUERIES = (GetAccount, GetHold, GetTenant)

ACCOUNT_COMMANDS = (
    OpenAccount,
    GrantCredits,
    PurchaseCredits,
    ConsumeCredits,
    RefundConsumption,
    PlaceHold,
    CaptureHold,
    ReleaseHold,
    AdjustBalance,
    ExpireCredits,
)
TENANT_COMMANDS = (CreateTenant, UpdateTenant, CreateApiKey, RevokeApiKey)

_fingerprint_encoder = msgspec.json.Encoder(order="sorted")


def fingerprint(command: Command) -> str:
    """SHA-256 of the request without its idempotency key: same request, same fingerprint."""
    body = msgspec.structs.replace(command, idempotency_key=None)
    return hashlib.sha256(_fingerprint_encoder.encode(body)).hexdigest()


# ------------------------------------------------------------------ validation


def _invalid(message: str) -> InvalidCommandError:
    return InvalidCommandError(message)


def check_amount(amount: int, name: str = "amount") -> None:
    if type(amount) is not int or not 1 <= amount <= AMOUNT_MAX:
        raise _invalid(f"{name} must be an integer from 1 to {AMOUNT_MAX}")


def check_text(value: str | None, name: str, *, required: bool = True) -> None:
    if value is None:
        if required:
            raise _invalid(f"{name} is required")
        return
    if required and not value.strip():
        raise _invalid(f"{name} may not be empty")
    if len(value) > TEXT_LENGTH_MAX or not value.isprintable():
        raise _invalid(f"{name} must be at most {TEXT_LENGTH_MAX} printable characters")


def check_metadata(metadata: dict[str, Any]) -> None:
    if not metadata:
        return  # the usual case, and free
    if len(metadata) > METADATA_KEYS_MAX:
        raise _invalid(f"metadata may have at most {METADATA_KEYS_MAX} keys")
    try:
        size = len(msgspec.json.encode(metadata))
    except (TypeError, msgspec.EncodeError) as error:
        raise _invalid("metadata must be a JSON object") from error
    if size > METADATA_BYTES_MAX:
        raise _invalid(f"metadata may be at most {METADATA_BYTES_MAX} bytes of JSON")
    if _has_float(metadata):
        raise _invalid("metadata may not contain floating point numbers; use strings or integers")


def _has_float(value: Any, depth: int = 0) -> bool:
    if depth > METADATA_DEPTH_MAX:
        raise _invalid(f"metadata may be nested at most {METADATA_DEPTH_MAX} deep")
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v, depth + 1) for v in value)
    return False


def check_expires_at(
    expires_at: datetime | None, now: datetime, *, may_be_retry: bool = False
) -> None:
    """A time zone, within the horizon, and in the future. A command that may be a retry
    (it has an idempotency key or a payment_ref) is let through with a past expiry: its
    first attempt may have been answered before that time, and only the writer can tell
    (the handler then refuses a new one with `check_still_ahead`)."""
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise _invalid("expires_at must carry a time zone (RFC 3339, e.g. 2026-11-22T10:00:00Z)")
    if not may_be_retry:
        check_still_ahead(expires_at, now)
    if expires_at - now > EXPIRY_HORIZON_MAX:
        raise _invalid("expires_at is too far in the future")


def check_still_ahead(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and expires_at <= now:
        raise _invalid("expires_at must be in the future")


def parse_decimal(value: str, name: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation as error:
        raise _invalid(f'{name} must be a decimal string such as "9.99"') from error
    if not number.is_finite() or number < 0 or len(value) > 40:
        raise _invalid(f"{name} must be a non-negative decimal string")
    return number


def check_currency(currency: str) -> None:
    if len(currency) != 3 or not currency.isascii() or not currency.isupper():
        raise _invalid("currency must be an ISO 4217 code such as USD")


def check_settings(settings: TenantSettings | TenantSettingsPatch) -> None:
    fields = msgspec.structs.asdict(settings)
    for name in ("signup_bonus", "overdraft_limit"):
        value = fields[name]
        if isinstance(value, int) and not 0 <= value <= OVERDRAFT_LIMIT_MAX:
            raise _invalid(f"{name} must be from 0 to {OVERDRAFT_LIMIT_MAX}")
    days = fields["signup_bonus_expires_in_days"]
    if isinstance(days, int) and not 1 <= days <= EXPIRY_HORIZON_MAX.days:
        raise _invalid(f"signup_bonus_expires_in_days must be from 1 to {EXPIRY_HORIZON_MAX.days}")
    threshold = fields["low_balance_threshold"]
    if isinstance(threshold, int) and not -OVERDRAFT_LIMIT_MAX <= threshold <= AMOUNT_MAX:
        raise _invalid("low_balance_threshold is out of range")
    rates = fields["purchase_rates"]
    if isinstance(rates, dict):
        if len(rates) > PURCHASE_RATES_MAX:
            raise _invalid(f"purchase_rates may name at most {PURCHASE_RATES_MAX} currencies")
        for currency, rate in rates.items():
            check_currency(currency)
            if parse_decimal(rate, f"purchase_rates.{currency}") <= 0:
                raise _invalid("purchase rates must be positive")


def check(command: Command, now: datetime) -> None:  # noqa: C901, PLR0915 - a branch per command
    """Raises InvalidCommandError unless the command is well-formed."""
    check_tenant_id(command.tenant_id)
    if command.idempotency_key is not None:
        check_idempotency_key(command.idempotency_key)
    if isinstance(command, AccountCommand):
        check_account_id(command.account_id)
    match command:  # the classes are disjoint: the most frequent first, a match costs a check each
        case ConsumeCredits():
            check_amount(command.amount)
            check_text(command.operation, "operation")
            check_text(command.resource, "resource", required=False)
            check_text(command.user_id, "user_id", required=False)
            check_metadata(command.metadata)
        case CreateTenant():
            check_text(command.name, "name")
            check_settings(command.settings)
        case UpdateTenant():
            check_text(command.name, "name", required=False)
            if command.settings is not None:
                check_settings(command.settings)
        case CreateApiKey():
            check_text(command.name, "name", required=False)
            unknown = sorted(set(command.scopes) - set(SCOPES))
            if unknown or not command.scopes:
                raise _invalid(f"scopes must be a non-empty subset of {', '.join(SCOPES)}")
            check_expires_at(
                command.expires_at, now, may_be_retry=command.idempotency_key is not None
            )
        case RevokeApiKey():
            check_text(command.key_id, "key_id")
        case OpenAccount():
            check_metadata(command.metadata)
            if command.signup_bonus is not None and not 0 <= command.signup_bonus <= AMOUNT_MAX:
                raise _invalid(f"signup_bonus must be from 0 to {AMOUNT_MAX}")
        case GrantCredits():
            check_amount(command.amount)
            check_text(command.reason, "reason")
            check_expires_at(
                command.expires_at, now, may_be_retry=command.idempotency_key is not None
            )
            check_metadata(command.metadata)
            if command.priority is not None and not 0 <= command.priority <= PRIORITY_MAX:
                raise _invalid(f"priority must be from 0 to {PRIORITY_MAX}")
        case PurchaseCredits():
            if command.amount is not None:
                check_amount(command.amount)
            parse_decimal(command.price.amount, "price.amount")
            check_currency(command.price.currency)
            ref = command.payment_ref
            if not 1 <= len(ref) <= PAYMENT_REF_LENGTH_MAX or not ref.isprintable():
                raise _invalid(
                    f"payment_ref must be 1-{PAYMENT_REF_LENGTH_MAX} printable characters"
                )
            check_expires_at(command.expires_at, now, may_be_retry=True)  # by its payment_ref
            check_metadata(command.metadata)
        case RefundConsumption():
            check_text(command.consumption_id, "consumption_id")
            check_text(command.reason, "reason")
            if command.amount is not None:
                check_amount(command.amount)
        case PlaceHold():
            check_amount(command.amount)
            check_text(command.operation, "operation")
            check_metadata(command.metadata)
            if not 1 <= command.expires_in_s <= HOLD_EXPIRES_IN_S_MAX:
                raise _invalid(f"expires_in_s must be from 1 to {HOLD_EXPIRES_IN_S_MAX}")
        case CaptureHold():
            check_text(command.hold_id, "hold_id")
            if command.amount is not None:
                check_amount(command.amount)
        case ReleaseHold():
            check_text(command.hold_id, "hold_id")
        case AdjustBalance():
            if command.amount == 0 or type(command.amount) is not int:
                raise _invalid("amount must be a non-zero integer")
            check_amount(abs(command.amount))
            check_text(command.reason, "reason")
        case ExpireCredits() | GetAccount() | GetTenant():
            pass
        case GetHold():
            check_text(command.hold_id, "hold_id")
        case _:
            raise _invalid(f"unknown command {type(command).__name__}")


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


def hold_expiry(command: PlaceHold, now: datetime) -> datetime:
    return now + timedelta(seconds=command.expires_in_s)

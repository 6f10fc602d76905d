"""The rules every command's `check()` draws on: amounts, text, metadata, expiries, money.

Each raises InvalidCommandError (400 `validation_error`, nothing recorded) with a message that
names the field.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from ledger.errors import InvalidCommandError
from ledger.limits import (
    AMOUNT_MAX,
    EXPIRY_HORIZON_MAX,
    METADATA_BYTES_MAX,
    METADATA_DEPTH_MAX,
    METADATA_KEYS_MAX,
    PAYMENT_REF_LENGTH_MAX,
    PRIORITY_MAX,
    TEXT_LENGTH_MAX,
)

# Characters of a decimal string, at most.
DECIMAL_LENGTH_MAX = 40
# The one form a decimal string may take (docs/api.md, "Decimal strings"): ASCII digits, no
# sign, no exponent, no separators or spaces, no leading zero but the units' own, and a
# fraction only after a point with at least one digit: "0", "9.99", "1000", "0.5".
DECIMAL_PATTERN = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", re.ASCII)


def check_amount(amount: int, name: str = "amount") -> None:
    if type(amount) is not int or not 1 <= amount <= AMOUNT_MAX:
        raise InvalidCommandError(f"{name} must be an integer from 1 to {AMOUNT_MAX}")


def check_optional_amount(amount: int | None, name: str = "amount") -> None:
    if amount is not None:
        check_amount(amount, name)


def check_text(value: str | None, name: str, *, required: bool = True) -> None:
    if value is None:
        if required:
            raise InvalidCommandError(f"{name} is required")
        return
    if required and not value.strip():
        raise InvalidCommandError(f"{name} may not be empty")
    if len(value) > TEXT_LENGTH_MAX or not value.isprintable():
        raise InvalidCommandError(f"{name} must be at most {TEXT_LENGTH_MAX} printable characters")


def check_priority(priority: int | None) -> None:
    if priority is not None and not 0 <= priority <= PRIORITY_MAX:
        raise InvalidCommandError(f"priority must be from 0 to {PRIORITY_MAX}")


def check_payment_ref(ref: str) -> None:
    if not 1 <= len(ref) <= PAYMENT_REF_LENGTH_MAX or not ref.isprintable():
        raise InvalidCommandError(
            f"payment_ref must be 1-{PAYMENT_REF_LENGTH_MAX} printable characters"
        )


def check_metadata(metadata: dict[str, Any]) -> None:
    if not metadata:
        return  # the usual case, and free
    if len(metadata) > METADATA_KEYS_MAX:
        raise InvalidCommandError(f"metadata may have at most {METADATA_KEYS_MAX} keys")
    try:
        size = len(msgspec.json.encode(metadata))
    except (TypeError, msgspec.EncodeError) as error:
        raise InvalidCommandError("metadata must be a JSON object") from error
    if size > METADATA_BYTES_MAX:
        raise InvalidCommandError(f"metadata may be at most {METADATA_BYTES_MAX} bytes of JSON")
    if _has_float(metadata):
        raise InvalidCommandError(
            "metadata may not contain floating point numbers; use strings or integers"
        )


def _has_float(value: Any, depth: int = 0) -> bool:
    if depth > METADATA_DEPTH_MAX:
        raise InvalidCommandError(f"metadata may be nested at most {METADATA_DEPTH_MAX} deep")
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
        raise InvalidCommandError(
            "expires_at must carry a time zone (RFC 3339, e.g. 2026-11-22T10:00:00Z)"
        )
    if not may_be_retry:
        check_still_ahead(expires_at, now)
    if expires_at - now > EXPIRY_HORIZON_MAX:
        raise InvalidCommandError("expires_at is too far in the future")


def check_still_ahead(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and expires_at <= now:
        raise InvalidCommandError("expires_at must be in the future")


def parse_decimal(value: str, name: str, *, positive: bool = False) -> Decimal:
    """The decimal a string in the canonical form (DECIMAL_PATTERN) stands for; anything else
    ("1_000", "1E+2", "+1", " 1.00", other scripts' digits) is refused, and so is zero when
    `positive`."""
    if (
        not isinstance(value, str)
        or len(value) > DECIMAL_LENGTH_MAX
        or DECIMAL_PATTERN.fullmatch(value) is None
    ):
        raise InvalidCommandError(
            f"{name} must be a decimal string of ASCII digits with an optional fraction, such as "
            f'"9.99" (no sign, exponent, spaces or separators; at most {DECIMAL_LENGTH_MAX} '
            "characters)"
        )
    number = Decimal(value)
    if positive and number == 0:
        raise InvalidCommandError(f"{name} must be greater than zero")
    return number


def check_currency(currency: str) -> None:
    if len(currency) != 3 or not currency.isascii() or not currency.isupper():
        raise InvalidCommandError("currency must be an ISO 4217 code such as USD")

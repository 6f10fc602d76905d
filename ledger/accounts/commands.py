"""The account commands: open, grant, purchase, consume, refund, holds, adjust, expire, and the
reads that go through the writer. Each is the body its route decodes and the item a batch
carries (with `op`); `check()` holds the rules decoding cannot."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta

from ledger.checks import (
    check_amount,
    check_currency,
    check_expires_at,
    check_metadata,
    check_optional_amount,
    check_payment_ref,
    check_priority,
    check_text,
    parse_decimal,
)
from ledger.commands import AccountCommand
from ledger.errors import InvalidCommandError
from ledger.fields import Amount, Metadata, OptionalText, PaymentRef, Priority, SignedAmount, Text
from ledger.limits import AMOUNT_MAX, HOLD_EXPIRES_IN_S_DEFAULT, HOLD_EXPIRES_IN_S_MAX

# A quote id is "q_" and 32 hex digits; the bound leaves room and no more.
QUOTE_ID_LENGTH_MAX = 64


class Price(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: Annotated[str, Meta(description='A decimal string, "9.99"')]
    currency: Annotated[str, Meta(description="ISO 4217, e.g. USD")]


class OpenAccount(AccountCommand, tag="open", frozen=True, kw_only=True):
    """Opens the account; the signup bonus is granted exactly once."""

    metadata: Metadata = {}
    signup_bonus: Annotated[int, Meta(ge=0, le=AMOUNT_MAX)] | None = None

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"account_id", "metadata", "signup_bonus"}
    )

    def check(self, now: datetime) -> None:
        check_metadata(self.metadata)
        if self.signup_bonus is not None and not 0 <= self.signup_bonus <= AMOUNT_MAX:
            raise InvalidCommandError(f"signup_bonus must be from 0 to {AMOUNT_MAX}")


class GrantCredits(AccountCommand, tag="grant", frozen=True, kw_only=True):
    """Grants credits: a new lot."""

    amount: Amount
    reason: Text
    expires_at: datetime | None = None
    priority: Priority | None = None
    metadata: Metadata = {}

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"account_id", "amount", "reason", "expires_at", "priority", "metadata"}
    )

    def check(self, now: datetime) -> None:
        check_amount(self.amount)
        check_text(self.reason, "reason")
        check_expires_at(self.expires_at, now, may_be_retry=self.idempotency_key is not None)
        check_metadata(self.metadata)
        check_priority(self.priority)


class PurchaseCredits(AccountCommand, tag="purchase", frozen=True, kw_only=True):
    """Credits a purchase; a repeated payment_ref is never credited twice."""

    price: Price
    payment_ref: PaymentRef
    amount: Amount | None = None
    expires_at: datetime | None = None
    metadata: Metadata = {}
    quote_id: Annotated[
        str, Meta(max_length=QUOTE_ID_LENGTH_MAX, description="A quote from POST /v1/quotes")
    ] = ""

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"account_id", "price", "payment_ref", "amount", "expires_at", "metadata"}
    )

    def check(self, now: datetime) -> None:
        check_optional_amount(self.amount)
        if len(self.quote_id) > QUOTE_ID_LENGTH_MAX or not self.quote_id.isprintable():
            raise InvalidCommandError(f"quote_id must be at most {QUOTE_ID_LENGTH_MAX} characters")
        parse_decimal(self.price.amount, "price.amount")
        check_currency(self.price.currency)
        check_payment_ref(self.payment_ref)
        check_expires_at(self.expires_at, now, may_be_retry=True)  # by its payment_ref
        check_metadata(self.metadata)


class ReverseCredits(AccountCommand, tag="reverse", frozen=True, kw_only=True):
    """Takes back a purchase whose payment was refunded or disputed: what is left of its lot,
    and for what was spent the tenant's `reversal_policy`."""

    payment_ref: PaymentRef
    reason: Text
    amount: Amount | None = None
    share: Annotated[
        str | None,
        Meta(
            description=(
                "Instead of amount: the share of the payment refunded in all, a decimal string "
                "in (0, 1]; the credits taken back are brought to that share of the purchase"
            )
        ),
    ] = None

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"account_id", "payment_ref", "reason", "amount", "share"}
    )

    def check(self, now: datetime) -> None:
        check_payment_ref(self.payment_ref)
        check_text(self.reason, "reason")
        check_optional_amount(self.amount)
        if self.share is not None:
            if self.amount is not None:
                raise InvalidCommandError("give amount or share, not both")
            share = parse_decimal(self.share, "share")
            if not 0 < share <= 1:
                raise InvalidCommandError("share must be above 0 and at most 1")


class ConsumeCredits(AccountCommand, tag="consume", frozen=True, kw_only=True):
    """Consumes credits in burn-down order."""

    amount: Amount
    operation: Text
    resource: OptionalText | None = None
    user_id: OptionalText | None = None
    metadata: Metadata = {}

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"account_id", "amount", "operation", "resource", "user_id", "metadata"}
    )

    def check(self, now: datetime) -> None:
        check_amount(self.amount)
        check_text(self.operation, "operation")
        check_text(self.resource, "resource", required=False)
        check_text(self.user_id, "user_id", required=False)
        check_metadata(self.metadata)


class RefundConsumption(AccountCommand, tag="refund", frozen=True, kw_only=True):
    """Refunds a consumption, never more than is still refundable."""

    consumption_id: Text
    reason: Text
    amount: Amount | None = None

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"account_id", "consumption_id", "reason", "amount"}
    )

    def check(self, now: datetime) -> None:
        check_text(self.consumption_id, "consumption_id")
        check_text(self.reason, "reason")
        check_optional_amount(self.amount)


class PlaceHold(AccountCommand, tag="hold", frozen=True, kw_only=True):
    """Reserves credits for a later capture; the capture's entry carries the hold's operation,
    resource, user_id and metadata."""

    amount: Amount
    operation: Text
    expires_in_s: Annotated[int, Meta(ge=1, le=HOLD_EXPIRES_IN_S_MAX)] = HOLD_EXPIRES_IN_S_DEFAULT
    metadata: Metadata = {}
    resource: OptionalText | None = None
    user_id: OptionalText | None = None

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"account_id", "amount", "operation", "expires_in_s", "metadata"}
    )

    def check(self, now: datetime) -> None:
        check_amount(self.amount)
        check_text(self.operation, "operation")
        check_text(self.resource, "resource", required=False)
        check_text(self.user_id, "user_id", required=False)
        check_metadata(self.metadata)
        if not 1 <= self.expires_in_s <= HOLD_EXPIRES_IN_S_MAX:
            raise InvalidCommandError(f"expires_in_s must be from 1 to {HOLD_EXPIRES_IN_S_MAX}")

    def expires_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.expires_in_s)


class CaptureHold(AccountCommand, tag="capture", frozen=True, kw_only=True):
    """Captures at most what is held; the rest is released. The entry carries the hold's
    operation, resource, user_id and metadata: each of operation, resource and user_id the
    capture gives replaces the hold's, and its metadata's keys are added to the hold's
    (replacing those of the same name)."""

    hold_id: Annotated[
        str, Meta(description="In a batch item; on other routes the path gives it")
    ] = ""
    amount: Amount | None = None
    operation: Text | None = None
    resource: OptionalText | None = None
    user_id: OptionalText | None = None
    metadata: Metadata = {}

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"account_id", "hold_id", "amount"})

    def check(self, now: datetime) -> None:
        check_text(self.hold_id, "hold_id")
        check_optional_amount(self.amount)
        if self.operation is not None:
            check_text(self.operation, "operation")
        check_text(self.resource, "resource", required=False)
        check_text(self.user_id, "user_id", required=False)
        check_metadata(self.metadata)


class ReleaseHold(AccountCommand, tag="release", frozen=True, kw_only=True):
    """Releases a hold."""

    hold_id: Annotated[
        str, Meta(description="In a batch item; on other routes the path gives it")
    ] = ""

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"account_id", "hold_id"})

    def check(self, now: datetime) -> None:
        check_text(self.hold_id, "hold_id")


class AdjustBalance(AccountCommand, tag="adjust", frozen=True, kw_only=True):
    """Corrects a balance (signed; may not take it below -overdraft)."""

    amount: SignedAmount
    reason: Text

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"account_id", "amount", "reason"})

    def check(self, now: datetime) -> None:
        if self.amount == 0 or type(self.amount) is not int:
            raise InvalidCommandError("amount must be a non-zero integer")
        check_amount(abs(self.amount))
        check_text(self.reason, "reason")


class ExpireCredits(AccountCommand, tag="expire", frozen=True, kw_only=True):
    """Ends the account's holds and lots that are past their expiry."""

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"account_id"})


class ExpireDue(AccountCommand, tag="expire_due", frozen=True, kw_only=True):
    """The scheduler's: ends the account's holds and lots due by `due_at` (or by the writer's
    clock, if later), under the due item's key (ledger/accounts/schedules.py). `hold_id`: the
    hold whose expiry it is, if it is one (its record is loaded with the batch)."""

    due_at: datetime
    hold_id: str | None = None

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"account_id", "due_at", "hold_id"})

    def check(self, now: datetime) -> None:
        if self.due_at.tzinfo is None:
            raise InvalidCommandError("due_at must carry a time zone")


class GetAccount(AccountCommand, tag="get_account", frozen=True, kw_only=True):
    """A read through the writer: reflects every command already answered."""


class GetHold(AccountCommand, tag="get_hold", frozen=True, kw_only=True):
    hold_id: str

    def check(self, now: datetime) -> None:
        check_text(self.hold_id, "hold_id")

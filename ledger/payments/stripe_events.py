"""What a Stripe event asks of the ledger: credit a purchase, reverse one, or nothing.

- `checkout.session.completed` (when `payment_status` is `paid`),
  `checkout.session.async_payment_succeeded` and `payment_intent.succeeded` credit a purchase:
  the account (and the quote, if any) from the object's `metadata` (`account_id`, `quote_id`),
  the price from its amount and currency, `payment_ref` = the payment intent's id. A second
  event for the same payment, or a redelivery, names the same payment_ref: credited once.
- `charge.refunded` reverses the share refunded in all (`amount_refunded / amount`), and
  `charge.dispute.created` reverses what is left, each of the purchase whose payment_ref is
  the charge's payment intent.
- Any other type is acknowledged and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

import msgspec

from ledger.accounts.commands import Price, PurchaseCredits, ReverseCredits

# Currencies whose Stripe amounts are not in hundredths (Stripe's list of zero- and
# three-decimal currencies); every other currency has two decimals.
ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
# Digits a refunded share keeps (rounded up: the ledger's favour).
SHARE_DIGITS = 12

PURCHASE_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "payment_intent.succeeded",
    }
)
REFUND_TYPE = "charge.refunded"
DISPUTE_TYPE = "charge.dispute.created"


class StripeEventError(Exception):
    """The event cannot be applied as it is (acknowledged, kept in the inbox as failed)."""


class _Data(msgspec.Struct):
    object: dict[str, Any]


class StripeEvent(msgspec.Struct):
    """The envelope of every Stripe event (other keys are kept raw in the inbox, unread)."""

    id: str
    type: str
    data: _Data


_decoder = msgspec.json.Decoder(StripeEvent)


def decode_event(payload: bytes) -> StripeEvent:
    """Raises msgspec.DecodeError for a body that is not a Stripe event."""
    return _decoder.decode(payload)


@dataclass(frozen=True)
class Purchase:
    command: PurchaseCredits


@dataclass(frozen=True)
class Reversal:
    payment_ref: str
    account_id: str | None  # from metadata; else the purchase's own account is looked up
    reason: str
    share: str | None  # None: all that is left


@dataclass(frozen=True)
class Ignored:
    reason: str


Action = Purchase | Reversal | Ignored


def decimals_of(currency: str) -> int:
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def price_of(minor_amount: Any, currency: Any) -> Price:
    if type(minor_amount) is not int or minor_amount < 0:
        raise StripeEventError("the object's amount is not a non-negative integer")
    if not isinstance(currency, str) or len(currency) != 3:
        raise StripeEventError("the object's currency is not an ISO 4217 code")
    code = currency.upper()
    amount = Decimal(minor_amount).scaleb(-decimals_of(code))
    return Price(amount=str(amount), currency=code)


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _payment_intent(obj: dict[str, Any]) -> str | None:
    value = obj.get("payment_intent")
    if isinstance(value, dict):  # expanded
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _purchase(event: StripeEvent, obj: dict[str, Any]) -> Action:
    if event.type == "payment_intent.succeeded":
        payment_ref = obj.get("id")
        minor = obj.get("amount_received", obj.get("amount"))
    else:
        if event.type == "checkout.session.completed" and obj.get("payment_status") != "paid":
            return Ignored("the checkout session is not paid yet")
        payment_ref = _payment_intent(obj)
        minor = obj.get("amount_total")
    if not isinstance(payment_ref, str) or not payment_ref:
        return Ignored("no payment intent (not a one-time payment)")
    metadata = _metadata(obj)
    account_id = metadata.get("account_id")
    if not isinstance(account_id, str) or not account_id:
        raise StripeEventError("metadata.account_id is missing: no account to credit")
    quote_id = metadata.get("quote_id")
    command = PurchaseCredits(
        account_id=account_id,
        price=price_of(minor, obj.get("currency")),
        payment_ref=payment_ref,
        quote_id=quote_id if isinstance(quote_id, str) else "",
        metadata={"provider": "stripe", "event_id": event.id},
    )
    return Purchase(command)


def _reversal(event: StripeEvent, obj: dict[str, Any]) -> Action:
    payment_ref = _payment_intent(obj)
    if payment_ref is None:
        return Ignored("no payment intent on the charge")
    account_id = _metadata(obj).get("account_id")
    account = account_id if isinstance(account_id, str) and account_id else None
    if event.type == DISPUTE_TYPE:
        return Reversal(payment_ref, account, "payment disputed", None)
    amount, refunded = obj.get("amount"), obj.get("amount_refunded")
    if type(amount) is not int or type(refunded) is not int or amount <= 0 or refunded <= 0:
        return Ignored("nothing refunded")
    if refunded >= amount:
        return Reversal(payment_ref, account, "payment refunded", None)
    share = (Decimal(refunded) / Decimal(amount)).quantize(
        Decimal(1).scaleb(-SHARE_DIGITS), rounding=ROUND_CEILING
    )
    return Reversal(payment_ref, account, "payment refunded in part", str(share))


def action_of(event: StripeEvent) -> Action:
    obj = event.data.object
    if event.type in PURCHASE_TYPES:
        return _purchase(event, obj)
    if event.type in (REFUND_TYPE, DISPUTE_TYPE):
        return _reversal(event, obj)
    return Ignored(f"event type {event.type} is not one the ledger acts on")


def reversal_command(reversal: Reversal, account_id: str, event_id: str) -> ReverseCredits:
    return ReverseCredits(
        account_id=account_id,
        payment_ref=reversal.payment_ref,
        reason=reversal.reason,
        share=reversal.share,
        idempotency_key=f"stripe:{event_id}",
    )

"""The pricing commands: publish a price book version, read the book, make a quote."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from msgspec import Meta

from ledger.accounts.commands import Price
from ledger.checks import check_amount, check_currency, parse_decimal
from ledger.commands import Command
from ledger.errors import InvalidCommandError
from ledger.fields import AccountId, Amount
from ledger.ids import check_account_id
from ledger.pricing.quotes import QUOTE_EXPIRES_IN_S_DEFAULT, QUOTE_EXPIRES_IN_S_MAX
from ledger.pricing.rules import PriceRule, check_rules


class PublishPriceBook(Command, tag="publish_price_book", frozen=True, kw_only=True):
    """Publishes a new version of the tenant's price book, in effect from `effective_from`
    (default: now). Versions are never changed: a correction is a new version."""

    rules: Annotated[
        list[PriceRule], Meta(description="1 to 50 rules, one per currency, each named once")
    ]
    effective_from: Annotated[
        datetime | None,
        Meta(description="When it takes effect: with a time zone, not in the past; default now"),
    ] = None

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset({"rules", "effective_from"})

    def check(self, now: datetime) -> None:
        check_rules(self.rules)
        if self.effective_from is not None and self.effective_from.tzinfo is None:
            raise InvalidCommandError("effective_from must carry a time zone")


class GetPriceBook(Command, tag="get_price_book", frozen=True, kw_only=True):
    """A read through the writer: the book as committed."""


class CreateQuote(Command, tag="create_quote", frozen=True, kw_only=True):
    """Prices a purchase: `price` gives the credits it buys, or `credits` and `currency` the
    price that buys them. A purchase naming the quote before `expires_at` is credited exactly
    its credits, once."""

    price: Annotated[
        Price | None, Meta(description="What this price buys (else give credits and currency)")
    ] = None
    credits: Amount | None = None
    currency: Annotated[str, Meta(description="With credits: the currency to price them in")] = ""
    account_id: Annotated[
        AccountId, Meta(description="When given, only a purchase on this account may redeem it")
    ] = ""
    expires_in_s: Annotated[
        int,
        Meta(
            ge=1,
            le=QUOTE_EXPIRES_IN_S_MAX,
            description="Seconds the quote holds (1 to 86,400, default 900)",
        ),
    ] = QUOTE_EXPIRES_IN_S_DEFAULT

    fingerprint_fields: ClassVar[frozenset[str]] = frozenset(
        {"price", "credits", "currency", "account_id", "expires_in_s"}
    )

    def check(self, now: datetime) -> None:
        if (self.price is None) == (self.credits is None):
            raise InvalidCommandError("give either price or credits (with currency)")
        if self.price is not None:
            if self.currency:
                raise InvalidCommandError("currency goes in price.currency")
            parse_decimal(self.price.amount, "price.amount")
            check_currency(self.price.currency)
        else:
            assert self.credits is not None
            check_amount(self.credits, "credits")
            check_currency(self.currency)
        if self.account_id:
            check_account_id(self.account_id)
        if not 1 <= self.expires_in_s <= QUOTE_EXPIRES_IN_S_MAX:
            raise InvalidCommandError(f"expires_in_s must be from 1 to {QUOTE_EXPIRES_IN_S_MAX}")

    @property
    def quoted_currency(self) -> str:
        return self.price.currency if self.price is not None else self.currency


class GetPriceBookHistory(Command, tag="get_price_book_history", frozen=True, kw_only=True):
    """A read through the writer: every version, oldest first."""

"""What pricing commands answer: a price book version, the book, a quote."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ledger.accounts.commands import Price
from ledger.pricing.price_book import PriceBook, PriceBookVersion
from ledger.pricing.quotes import Quote
from ledger.pricing.rules import PriceRule


class PriceBookVersionView(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    effective_from: datetime
    published_at: datetime
    rules: list[PriceRule]


class PriceBookView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The version in effect now (null before the first takes effect) and those to come."""

    current: PriceBookVersionView | None
    scheduled: list[PriceBookVersionView] = []


class PriceBookHistory(msgspec.Struct, frozen=True, kw_only=True):
    items: list[PriceBookVersionView]  # oldest first


class QuoteView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    quote_id: str
    credits: int
    price: Price
    rule_version: int
    expires_at: datetime
    created_at: datetime
    account_id: str | None = None
    redeemed_by: str | None = None  # the payment_ref of the purchase that redeemed it


def version_view(version: PriceBookVersion) -> PriceBookVersionView:
    return PriceBookVersionView(
        version=version.version,
        effective_from=version.effective_from,
        published_at=version.published_at,
        rules=version.rules,
    )


def price_book_view(book: PriceBook, now: datetime) -> PriceBookView:
    current = book.in_effect(now)
    return PriceBookView(
        current=None if current is None else version_view(current),
        scheduled=[version_view(v) for v in book.scheduled(now)],
    )


def history_view(book: PriceBook | None) -> PriceBookHistory:
    return PriceBookHistory(items=[] if book is None else [version_view(v) for v in book.versions])


def quote_view(quote: Quote) -> QuoteView:
    return QuoteView(
        quote_id=quote.quote_id,
        credits=quote.credits,
        price=Price(amount=quote.price["amount"], currency=quote.price["currency"]),
        rule_version=quote.rule_version,
        expires_at=quote.expires_at,
        created_at=quote.created_on,
        account_id=quote.account_id,
        redeemed_by=quote.redeemed_by,
    )

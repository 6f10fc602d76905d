"""The pricing area: the price book (versions of conversion rules) and quotes."""

from __future__ import annotations

from ledger.pricing import commands as c
from ledger.pricing import handlers as h
from ledger.pricing.views import PriceBookHistory, PriceBookVersionView, PriceBookView, QuoteView
from ledger.registry import Area, CommandSpec, Route
from ledger.tenants.api_keys import ACCOUNTS_READ, ACCOUNTS_WRITE

AREA = Area(
    name="pricing",
    views={
        "price_book_version": PriceBookVersionView,
        "price_book": PriceBookView,
        "price_book_history": PriceBookHistory,
        "quote": QuoteView,
    },
    commands=[
        CommandSpec(
            c.PublishPriceBook,
            h.publish_price_book,
            PriceBookVersionView,
            scope=ACCOUNTS_WRITE,
            route=Route(
                "PUT",
                "/v1/price-book",
                "Publish a new price book version (never changes an earlier one)",
                errors=("not_found", "conflict", "idempotency_key_reused"),
            ),
        ),
        CommandSpec(
            c.GetPriceBook, h.get_price_book, PriceBookView, scope=ACCOUNTS_READ, query=True
        ),
        CommandSpec(
            c.GetPriceBookHistory,
            h.get_price_book_history,
            PriceBookHistory,
            scope=ACCOUNTS_READ,
            query=True,
        ),
        CommandSpec(
            c.CreateQuote,
            h.create_quote,
            QuoteView,
            scope=ACCOUNTS_WRITE,
            route=Route(
                "POST",
                "/v1/quotes",
                "Quote a purchase: the credits a price buys, or the price of credits",
                errors=("not_found", "idempotency_key_reused"),
            ),
        ),
    ],
)

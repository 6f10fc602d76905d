"""Pricing command handlers: publish a version, read the book, make a quote; and the credits a
purchase is given (by its quote, the price book, or the tenant's older purchase_rates)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import UUID

from ledger.accounts.commands import PurchaseCredits
from ledger.commands import Envelope
from ledger.errors import (
    InvalidCommandError,
    NotFoundError,
    QuoteExpiredError,
    QuoteMismatchError,
    QuoteNotFoundError,
    QuoteUsedError,
    TenantNotFoundError,
)
from ledger.ids import aggregate_id, new_id
from ledger.outcome import Outcome
from ledger.pricing.commands import (
    CreateQuote,
    GetPriceBook,
    GetPriceBookHistory,
    PublishPriceBook,
)
from ledger.pricing.price_book import PriceBook, PriceBookVersion
from ledger.pricing.quotes import Quote
from ledger.pricing.rules import (
    PriceRule,
    check_credits_in_range,
    check_price_precision,
    credits_for,
    price_for,
)
from ledger.pricing.views import history_view, price_book_view, quote_view, version_view
from ledger.unit_of_work import UnitOfWork


def price_book_id(tenant_id: str) -> UUID:
    return aggregate_id(tenant_id, "price-book", "")


def quote_aggregate_id(tenant_id: str, quote_id: str) -> UUID:
    return aggregate_id(tenant_id, "quote", quote_id)


def _require_tenant(session: UnitOfWork, tenant_id: str) -> None:
    if session.tenant(tenant_id) is None:
        raise TenantNotFoundError(f"tenant {tenant_id} not found")


def publish_price_book(envelope: Envelope[PublishPriceBook], session: UnitOfWork) -> Outcome:
    command = envelope.command
    _require_tenant(session, envelope.tenant_id)
    effective_from = command.effective_from or session.now
    if effective_from < session.now:
        raise InvalidCommandError(
            "effective_from may not be in the past: leave it out to take effect now"
        )
    book_id = price_book_id(envelope.tenant_id)
    book = session.get(PriceBook, book_id)
    if book is None:
        book = PriceBook._create(PriceBook.Created, id=book_id, tenant_id=envelope.tenant_id)
    version = book.publish(effective_from=effective_from, rules=command.rules)
    session.add(book)
    return Outcome(value=version_view(version))


def get_price_book(envelope: Envelope[GetPriceBook], session: UnitOfWork) -> Outcome:
    book = session.get(PriceBook, price_book_id(envelope.tenant_id), fresh=True)
    if book is None:
        raise NotFoundError("this tenant has no price book yet: PUT /v1/price-book")
    return Outcome(value=price_book_view(book, session.now), created=False)


def get_price_book_history(envelope: Envelope[GetPriceBookHistory], session: UnitOfWork) -> Outcome:
    book = session.get(PriceBook, price_book_id(envelope.tenant_id), fresh=True)
    return Outcome(value=history_view(book), created=False)


def rule_in_effect(
    session: UnitOfWork, tenant_id: str, currency: str
) -> tuple[PriceBookVersion, PriceRule] | None:
    book = session.get(PriceBook, price_book_id(tenant_id))
    version = None if book is None else book.in_effect(session.now)
    rule = None if version is None else version.rule(currency)
    return None if version is None or rule is None else (version, rule)


def create_quote(envelope: Envelope[CreateQuote], session: UnitOfWork) -> Outcome:
    command = envelope.command
    _require_tenant(session, envelope.tenant_id)
    currency = command.quoted_currency
    found = rule_in_effect(session, envelope.tenant_id, currency)
    if found is None:
        raise InvalidCommandError(f"the price book has no rule for {currency} in effect")
    version, rule = found
    if command.price is not None:
        amount = Decimal(command.price.amount)
        check_price_precision(rule, amount)
        credits = credits_for(rule, amount)
        check_credits_in_range(credits)
    else:
        assert command.credits is not None
        credits = command.credits
        amount = price_for(rule, credits)
    quote_id = "q_" + new_id().replace("-", "")
    quote = Quote._create(
        Quote.Created,
        id=quote_aggregate_id(envelope.tenant_id, quote_id),
        tenant_id=envelope.tenant_id,
        quote_id=quote_id,
        credits=credits,
        price={"amount": str(amount), "currency": currency},
        rule_version=version.version,
        expires_at=session.now + timedelta(seconds=command.expires_in_s),
        account_id=command.account_id or None,
    )
    session.add(quote)
    return Outcome(value=quote_view(quote))


def quoted_credits(envelope: Envelope[PurchaseCredits], session: UnitOfWork) -> tuple[int, Quote]:
    """The credits of the purchase's quote, once every rule of redeeming it holds; the caller
    redeems it once the purchase is decided."""
    command = envelope.command
    assert command.quote_id
    quote = session.get(Quote, quote_aggregate_id(envelope.tenant_id, command.quote_id))
    if quote is None:
        raise QuoteNotFoundError(f"quote {command.quote_id} not found")
    if quote.redeemed_by is not None:
        raise QuoteUsedError(
            f"quote {command.quote_id} was redeemed by payment_ref {quote.redeemed_by!r}"
        )
    if session.now >= quote.expires_at:
        raise QuoteExpiredError(
            f"quote {command.quote_id} expired at {quote.expires_at.isoformat()}: ask a new one"
        )
    if quote.account_id is not None and quote.account_id != command.account_id:
        raise QuoteMismatchError(f"quote {command.quote_id} is for another account")
    if command.price.currency != quote.price["currency"] or Decimal(
        command.price.amount
    ) != Decimal(quote.price["amount"]):
        raise QuoteMismatchError(
            f"quote {command.quote_id} is for {quote.price['amount']} {quote.price['currency']}"
        )
    if command.amount is not None and command.amount != quote.credits:
        raise QuoteMismatchError(f"quote {command.quote_id} is for {quote.credits} credits")
    return quote.credits, quote


def priced_credits(envelope: Envelope[PurchaseCredits], session: UnitOfWork) -> int | None:
    """The credits the price book's rule in effect gives the purchase's price (None: the book
    has no rule for its currency, and the tenant's purchase_rates apply)."""
    command = envelope.command
    found = rule_in_effect(session, envelope.tenant_id, command.price.currency)
    if found is None:
        return None
    credits = credits_for(found[1], Decimal(command.price.amount))
    check_credits_in_range(credits)
    return credits

"""The price book, quotes and reversals: the rounding rule, tiers and bonus, versions in effect,
a quote credited exactly once before it expires, a purchase taken back by its payment_ref."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import (
    InvalidCommandError,
    NotFoundError,
    QuoteExpiredError,
    QuoteMismatchError,
    QuoteUsedError,
    RefundExceedsRefundableError,
)
from ledger.pricing.rules import PriceRule, Tier, credits_for, price_for
from tests import envelopes as c
from tests.unit.fakes import START, InMemoryLedger

T, A = "acme", "ada"
USD = c.Price(amount="9.99", currency="USD")


def ledger_with(rules: list[PriceRule], **settings: Any) -> InMemoryLedger:
    ledger = InMemoryLedger()
    ledger.run(c.CreateTenant(tenant_id=T, name="Acme", settings=c.TenantSettings(**settings)))
    ledger.run(c.OpenAccount(tenant_id=T, account_id=A))
    if rules:
        ledger.run(c.PublishPriceBook(tenant_id=T, rules=rules))
    return ledger


def balance(ledger: InMemoryLedger) -> int:
    value: Any = ledger.run(c.GetAccount(tenant_id=T, account_id=A)).value
    return int(value.balance)


def test_credits_are_rounded_down_in_the_ledgers_favour() -> None:
    rule = PriceRule(currency="USD", credits_per_unit="30")
    assert credits_for(rule, Decimal("3.33")) == 99  # 99.9 credits: never 100


def test_a_price_for_credits_is_rounded_up_to_the_minor_unit() -> None:
    rule = PriceRule(currency="USD", credits_per_unit="30")
    assert price_for(rule, 100) == Decimal("3.34")  # 3.33 buys only 99
    assert price_for(PriceRule(currency="JPY", credits_per_unit="0.7", decimals=0), 10) == 15


def test_the_highest_tier_reached_prices_the_whole_purchase_and_the_bonus_adds_to_it() -> None:
    rule = PriceRule(
        currency="USD",
        credits_per_unit="100",
        bonus_percent="10",
        tiers=[Tier(min_amount="50", credits_per_unit="120")],
    )
    assert credits_for(rule, Decimal("49.99")) == 5498  # 4999 * 1.1 = 5498.9
    assert credits_for(rule, Decimal("50")) == 6600
    assert price_for(rule, 6000) == Decimal("50.00")  # cheaper than 6000 credits below the tier


@given(
    rate=st.decimals(min_value="0.01", max_value="10000", places=2),
    bonus=st.sampled_from(["0", "5", "12.5"]),
    credits=st.integers(min_value=1, max_value=10**9),
)
def test_the_quoted_price_is_the_cheapest_that_buys_the_credits(
    rate: Decimal, bonus: str, credits: int
) -> None:
    rule = PriceRule(currency="USD", credits_per_unit=str(rate), bonus_percent=bonus)
    price = price_for(rule, credits)
    assert credits_for(rule, price) >= credits
    assert price == 0 or credits_for(rule, price - Decimal("0.01")) < credits


def test_tiers_must_rise_and_rules_name_each_currency_once() -> None:
    falling = PriceRule(
        currency="USD", credits_per_unit="100", tiers=[Tier(min_amount="5", credits_per_unit="90")]
    )
    with pytest.raises(InvalidCommandError):
        c.check(c.PublishPriceBook(tenant_id=T, rules=[falling]), START)
    twice = [PriceRule(currency="USD", credits_per_unit="1")] * 2
    with pytest.raises(InvalidCommandError):
        c.check(c.PublishPriceBook(tenant_id=T, rules=twice), START)


def test_a_purchase_without_amount_is_priced_by_the_book_before_purchase_rates() -> None:
    ledger = ledger_with(
        [PriceRule(currency="USD", credits_per_unit="100")], purchase_rates={"USD": "1"}
    )
    ledger.run(c.PurchaseCredits(tenant_id=T, account_id=A, price=USD, payment_ref="p1"))
    assert balance(ledger) == 999


def test_purchase_rates_still_price_a_currency_the_book_does_not_name() -> None:
    ledger = ledger_with(
        [PriceRule(currency="USD", credits_per_unit="100")], purchase_rates={"EUR": "30"}
    )
    eur = c.Price(amount="3.33", currency="EUR")
    ledger.run(c.PurchaseCredits(tenant_id=T, account_id=A, price=eur, payment_ref="p1"))
    assert balance(ledger) == 99


def test_a_version_takes_effect_at_its_effective_from_and_history_keeps_every_one() -> None:
    ledger = ledger_with([PriceRule(currency="USD", credits_per_unit="100")])
    later = START + timedelta(days=1)
    ledger.run(
        c.PublishPriceBook(
            tenant_id=T,
            rules=[PriceRule(currency="USD", credits_per_unit="200")],
            effective_from=later,
        )
    )
    book: Any = ledger.run(c.GetPriceBook(tenant_id=T)).value
    assert book.current.version == 1
    assert [v.version for v in book.scheduled] == [2]
    ledger.now = later
    book = ledger.run(c.GetPriceBook(tenant_id=T)).value
    assert book.current.version == 2
    history: Any = ledger.run(c.GetPriceBookHistory(tenant_id=T)).value
    assert [v.rules[0].credits_per_unit for v in history.items] == ["100", "200"]


def test_a_version_may_not_take_effect_in_the_past() -> None:
    ledger = ledger_with([])
    with pytest.raises(InvalidCommandError):
        ledger.run(
            c.PublishPriceBook(
                tenant_id=T,
                rules=[PriceRule(currency="USD", credits_per_unit="1")],
                effective_from=START - timedelta(seconds=1),
            )
        )


def test_a_tenant_without_a_price_book_reads_not_found() -> None:
    with pytest.raises(NotFoundError):
        ledger_with([]).run(c.GetPriceBook(tenant_id=T))


def quote(ledger: InMemoryLedger, **fields: Any) -> Any:
    return ledger.run(c.CreateQuote(tenant_id=T, **fields)).value


def test_a_quote_is_credited_exactly_its_credits_even_after_the_rate_changes() -> None:
    ledger = ledger_with([PriceRule(currency="USD", credits_per_unit="100")])
    q = quote(ledger, price=USD)
    assert (q.credits, q.price, q.rule_version) == (999, USD, 1)
    ledger.run(
        c.PublishPriceBook(tenant_id=T, rules=[PriceRule(currency="USD", credits_per_unit="1")])
    )
    ledger.run(
        c.PurchaseCredits(
            tenant_id=T, account_id=A, price=USD, payment_ref="p1", quote_id=q.quote_id
        )
    )
    assert balance(ledger) == 999


def test_a_quote_for_credits_prices_them_and_credits_exactly_them() -> None:
    ledger = ledger_with([PriceRule(currency="USD", credits_per_unit="30")])
    q = quote(ledger, credits=100, currency="USD")
    assert q.price == c.Price(amount="3.34", currency="USD")
    ledger.run(
        c.PurchaseCredits(
            tenant_id=T, account_id=A, price=q.price, payment_ref="p1", quote_id=q.quote_id
        )
    )
    assert balance(ledger) == 100


def test_a_quote_is_redeemed_once_and_its_payment_replays() -> None:
    ledger = ledger_with([PriceRule(currency="USD", credits_per_unit="100")])
    q = quote(ledger, price=USD)
    purchase = c.PurchaseCredits(
        tenant_id=T, account_id=A, price=USD, payment_ref="p1", quote_id=q.quote_id
    )
    first = ledger.run(purchase)
    assert ledger.run(purchase).replayed and ledger.run(purchase).value == first.value
    with pytest.raises(QuoteUsedError):
        ledger.run(c.changed(purchase, payment_ref="p2"))
    assert balance(ledger) == 999


def test_an_expired_quote_is_refused_and_credits_nothing() -> None:
    ledger = ledger_with([PriceRule(currency="USD", credits_per_unit="100")])
    q = quote(ledger, price=USD, expires_in_s=60)
    ledger.now = START + timedelta(seconds=60)
    with pytest.raises(QuoteExpiredError):
        ledger.run(
            c.PurchaseCredits(
                tenant_id=T, account_id=A, price=USD, payment_ref="p1", quote_id=q.quote_id
            )
        )
    assert balance(ledger) == 0


def test_a_purchase_must_match_its_quotes_price_and_account() -> None:
    ledger = ledger_with([PriceRule(currency="USD", credits_per_unit="100")])
    ledger.run(c.OpenAccount(tenant_id=T, account_id="bob"))
    q = quote(ledger, price=USD, account_id=A)
    cheaper = c.Price(amount="1.00", currency="USD")
    for account_id, price in ((A, cheaper), ("bob", USD)):
        with pytest.raises(QuoteMismatchError):
            ledger.run(
                c.PurchaseCredits(
                    tenant_id=T,
                    account_id=account_id,
                    price=price,
                    payment_ref="p1",
                    quote_id=q.quote_id,
                )
            )


def test_a_quote_refuses_a_price_finer_than_the_currencys_minor_unit() -> None:
    ledger = ledger_with([PriceRule(currency="USD", credits_per_unit="100")])
    with pytest.raises(InvalidCommandError):
        quote(ledger, price=c.Price(amount="9.999", currency="USD"))


def purchased(ledger: InMemoryLedger, amount: int, ref: str = "p1") -> None:
    ledger.run(
        c.PurchaseCredits(tenant_id=T, account_id=A, price=USD, payment_ref=ref, amount=amount)
    )


def test_a_reversal_takes_back_what_is_left_and_the_spent_rest_as_debt_by_default() -> None:
    ledger = ledger_with([])
    purchased(ledger, 100)
    ledger.run(c.ConsumeCredits(tenant_id=T, account_id=A, amount=70, operation="op"))
    entry: Any = ledger.run(
        c.ReverseCredits(tenant_id=T, account_id=A, payment_ref="p1", reason="refunded")
    ).value
    assert (entry.type, entry.amount, entry.balance) == ("reverse", -100, -70)


def test_the_remaining_policy_takes_back_only_what_the_lot_has_left() -> None:
    ledger = ledger_with([], reversal_policy="remaining")
    purchased(ledger, 100)
    ledger.run(c.ConsumeCredits(tenant_id=T, account_id=A, amount=70, operation="op"))
    entry: Any = ledger.run(
        c.ReverseCredits(tenant_id=T, account_id=A, payment_ref="p1", reason="disputed")
    ).value
    assert (entry.amount, entry.balance) == (-30, 0)


def test_a_payment_is_never_reversed_past_what_it_bought() -> None:
    ledger = ledger_with([])
    purchased(ledger, 100)
    half: Any = ledger.run(
        c.ReverseCredits(tenant_id=T, account_id=A, payment_ref="p1", reason="r", share="0.5")
    ).value
    assert half.amount == -50
    with pytest.raises(RefundExceedsRefundableError):
        ledger.run(
            c.ReverseCredits(tenant_id=T, account_id=A, payment_ref="p1", reason="r", share="0.5")
        )
    rest: Any = ledger.run(
        c.ReverseCredits(tenant_id=T, account_id=A, payment_ref="p1", reason="r")
    ).value
    assert rest.amount == -50
    with pytest.raises(RefundExceedsRefundableError):
        ledger.run(c.ReverseCredits(tenant_id=T, account_id=A, payment_ref="p1", reason="r"))
    assert balance(ledger) == 0


def test_a_reversal_of_an_unknown_payment_is_not_found() -> None:
    ledger = ledger_with([])
    with pytest.raises(NotFoundError):
        ledger.run(c.ReverseCredits(tenant_id=T, account_id=A, payment_ref="nope", reason="r"))

"""Price rules: how many credits a price buys, and what price buys a number of credits.

A rule is per currency: `credits_per_unit` (a decimal string: credits for one unit of the
currency), optional volume `tiers` (all-units: the tier with the highest `min_amount` at or
below the price sets the rate of the whole purchase) and an optional `bonus_percent`.

The rounding rule (docs/adr/0008), with integers only at the end and exact decimals before:
- a price buys `floor(price * rate * (100 + bonus_percent) / 100)` credits: rounded down, in
  the ledger's favour (3.33 USD at 30 credits/USD buys 99 credits, not 99.9);
- a number of credits costs the smallest price in the currency's minor unit (`decimals`
  digits) that buys at least that many: rounded up, in the ledger's favour.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Annotated

import msgspec
from msgspec import Meta

from ledger.checks import check_currency, parse_decimal
from ledger.errors import InvalidCommandError
from ledger.limits import AMOUNT_MAX

# Currencies one price book version prices credits in (as many as purchase_rates allows).
RULES_PER_VERSION_MAX = 50
# Volume tiers of one rule: a price list, not a formula.
TIERS_PER_RULE_MAX = 20
# Digits of a currency's minor unit: 0 (JPY) to 4 (CLF); Stripe's three-decimal ones fit.
DECIMALS_MAX = 4
# A bonus of at most 1,000 % (ten times the credits) is a promotion; more is a typo.
BONUS_PERCENT_MAX = Decimal(1000)
# Exact decimal arithmetic: 40-character operands multiplied need this many digits.
_PRECISION = 120


class Tier(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    min_amount: Annotated[str, Meta(description="Prices at or above this (decimal string)")]
    credits_per_unit: Annotated[str, Meta(description="Credits per unit from this price up")]


class PriceRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    currency: Annotated[str, Meta(description="ISO 4217, e.g. USD")]
    credits_per_unit: Annotated[str, Meta(description='Credits per unit, a decimal string "100"')]
    bonus_percent: Annotated[str, Meta(description="Extra credits, in % of the credits")] = "0"
    tiers: Annotated[
        list[Tier],
        Meta(
            description=(
                "At most 20 volume tiers, min_amount rising; all-units: the tier with the "
                "highest min_amount at or below the price sets the rate of the whole purchase"
            )
        ),
    ] = []
    decimals: Annotated[int, Meta(ge=0, le=DECIMALS_MAX, description="Minor unit digits")] = 2


def _positive(value: str, name: str) -> Decimal:
    number = parse_decimal(value, name)
    if number <= 0:
        raise InvalidCommandError(f"{name} must be positive")
    return number


def check_rule(rule: PriceRule, index: int) -> None:
    name = f"rules[{index}]"
    check_currency(rule.currency)
    base = _positive(rule.credits_per_unit, f"{name}.credits_per_unit")
    bonus = parse_decimal(rule.bonus_percent, f"{name}.bonus_percent")
    if bonus > BONUS_PERCENT_MAX:
        raise InvalidCommandError(f"{name}.bonus_percent may be at most {BONUS_PERCENT_MAX}")
    if not 0 <= rule.decimals <= DECIMALS_MAX:
        raise InvalidCommandError(f"{name}.decimals must be from 0 to {DECIMALS_MAX}")
    if len(rule.tiers) > TIERS_PER_RULE_MAX:
        raise InvalidCommandError(f"{name}.tiers may list at most {TIERS_PER_RULE_MAX} tiers")
    floor_amount, floor_rate = Decimal(0), base
    for tier_index, tier in enumerate(rule.tiers):
        tier_name = f"{name}.tiers[{tier_index}]"
        minimum = _positive(tier.min_amount, f"{tier_name}.min_amount")
        rate = _positive(tier.credits_per_unit, f"{tier_name}.credits_per_unit")
        if minimum <= floor_amount:
            raise InvalidCommandError(f"{tier_name}.min_amount must rise from tier to tier")
        if rate < floor_rate:
            raise InvalidCommandError(
                f"{tier_name}.credits_per_unit may not be below the tier before it"
            )
        floor_amount, floor_rate = minimum, rate


def check_rules(rules: list[PriceRule]) -> None:
    if not 1 <= len(rules) <= RULES_PER_VERSION_MAX:
        raise InvalidCommandError(f"rules must list 1 to {RULES_PER_VERSION_MAX} currencies")
    currencies = [rule.currency for rule in rules]
    if len(set(currencies)) != len(currencies):
        raise InvalidCommandError("rules may name each currency once")
    for index, rule in enumerate(rules):
        check_rule(rule, index)


def _bands(rule: PriceRule) -> list[tuple[Decimal, Decimal]]:
    """(the lowest price of the band, its credits per unit), from the lowest band up."""
    bands = [(Decimal(0), Decimal(rule.credits_per_unit))]
    bands.extend((Decimal(t.min_amount), Decimal(t.credits_per_unit)) for t in rule.tiers)
    return bands


def _multiplier(rule: PriceRule, rate: Decimal) -> Decimal:
    return rate * (Decimal(100) + Decimal(rule.bonus_percent)) / Decimal(100)


def credits_for(rule: PriceRule, amount: Decimal) -> int:
    """The whole credits `amount` of the rule's currency buys: rounded down."""
    with localcontext() as context:
        context.prec = _PRECISION
        rate = next(rate for low, rate in reversed(_bands(rule)) if amount >= low)
        return int((amount * _multiplier(rule, rate)).to_integral_value(ROUND_FLOOR))


def minor_unit(rule: PriceRule) -> Decimal:
    return Decimal(1).scaleb(-rule.decimals)


def check_price_precision(rule: PriceRule, amount: Decimal) -> None:
    if amount != amount.quantize(minor_unit(rule)):
        raise InvalidCommandError(
            f"price.amount has more than the {rule.decimals} decimals of {rule.currency}"
        )


def price_for(rule: PriceRule, credits: int) -> Decimal:
    """The smallest price, in whole minor units, that buys at least `credits`: rounded up.

    Tiers only raise the rate as the price rises, so credits rise with the price and the
    cheapest band that can reach `credits` gives the answer."""
    unit = minor_unit(rule)
    bands = _bands(rule)
    best: Decimal | None = None
    with localcontext() as context:
        context.prec = _PRECISION
        for index, (low, rate) in enumerate(bands):
            high = bands[index + 1][0] if index + 1 < len(bands) else None
            price = (Decimal(credits) / _multiplier(rule, rate) / unit).to_integral_value(
                ROUND_CEILING
            ) * unit
            price = max(price, low.quantize(unit, rounding=ROUND_CEILING))
            if high is not None and price >= high:
                continue
            if best is None or price < best:
                best = price
    assert best is not None  # the last band has no upper end
    while credits_for(rule, best) < credits:  # a rounding at the edge of a band
        best += unit
    return best.quantize(unit)


def check_credits_in_range(credits: int) -> None:
    if not 1 <= credits <= AMOUNT_MAX:
        raise InvalidCommandError(f"the price buys {credits} credits, outside 1..{AMOUNT_MAX}")

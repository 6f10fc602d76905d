"""Decimal strings (prices, purchase rates) have one canonical form: what is stored is what the
client meant, and no other notation can stand for a number (docs/api.md, "Decimal strings")."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.checks import DECIMAL_LENGTH_MAX, parse_decimal
from ledger.errors import InvalidCommandError


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", "0"), ("9.99", "9.99"), ("1000", "1000"), ("0.5", "0.5"), ("1.00", "1.00")],
)
def test_canonical_decimal_strings_are_accepted(text: str, value: str) -> None:
    assert parse_decimal(text, "price.amount") == Decimal(value)


@pytest.mark.parametrize(
    "text",
    [
        "1_000",  # Python's digit separators: Decimal() reads it as 1000
        "\u0661\u0660\u0660",  # Arabic-Indic digits: Decimal() reads them as 100
        "1E+2",
        "1e400",
        "+1",
        "-1",
        "-0",
        " 1.00",
        "1.00 ",
        "01",
        ".5",
        "5.",
        "NaN",
        "Infinity",
        "",
        "1" * (DECIMAL_LENGTH_MAX + 1),
    ],
)
def test_any_other_notation_is_refused(text: str) -> None:
    with pytest.raises(InvalidCommandError, match=r"price\.amount"):
        parse_decimal(text, "price.amount")


@pytest.mark.parametrize("text", ["0", "0.00"])
def test_zero_is_refused_where_a_positive_decimal_is_needed(text: str) -> None:
    with pytest.raises(InvalidCommandError, match="greater than zero"):
        parse_decimal(text, "purchase_rates.USD", positive=True)

"""Bad input is refused before it reaches the writer: a clear error, nothing recorded."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from ledger.errors import InvalidCommandError
from ledger.ids import entry_id
from ledger.limits import AMOUNT_MAX, HOLD_EXPIRES_IN_S_MAX, METADATA_BYTES_MAX
from tests import envelopes as c
from tests.unit.fakes import START

BASE = {"tenant_id": "acme", "account_id": "ada@example.com"}


def refused(command: c.Command) -> str:
    with pytest.raises(InvalidCommandError) as error:
        c.check(command, START)
    return error.value.detail


@pytest.mark.parametrize("amount", [0, -1, AMOUNT_MAX + 1])
def test_amounts_are_integers_from_one_to_ten_to_the_fifteenth(amount: int) -> None:
    assert "amount" in refused(c.ConsumeCredits(**BASE, amount=amount, operation="op"))


def test_the_largest_amount_is_accepted() -> None:
    c.check(c.GrantCredits(**BASE, amount=AMOUNT_MAX, reason="r"), START)


@pytest.mark.parametrize("tenant_id", ["A", "-acme", "a", "acme_corp", "x" * 64, "acme\n"])
def test_tenant_ids_follow_the_pattern(tenant_id: str) -> None:
    refused(c.OpenAccount(tenant_id=tenant_id, account_id="a"))


@pytest.mark.parametrize("account_id", ["", "has space", "tab\there", "x" * 129, "nul\x00"])
def test_account_ids_are_printable_without_whitespace(account_id: str) -> None:
    refused(c.OpenAccount(tenant_id="acme", account_id=account_id))


def test_emails_are_fine_account_ids() -> None:
    c.check(c.OpenAccount(tenant_id="acme", account_id="ada+test@example.com"), START)


def test_an_expiry_must_be_in_the_future_and_carry_a_zone() -> None:
    refused(c.GrantCredits(**BASE, amount=1, reason="r", expires_at=START - timedelta(seconds=1)))
    refused(
        c.GrantCredits(
            **BASE, amount=1, reason="r", expires_at=START.replace(tzinfo=None) + timedelta(days=1)
        )
    )


def test_hold_lifetimes_are_bounded() -> None:
    refused(c.PlaceHold(**BASE, amount=1, operation="op", expires_in_s=HOLD_EXPIRES_IN_S_MAX + 1))
    refused(c.PlaceHold(**BASE, amount=1, operation="op", expires_in_s=0))


def test_metadata_is_bounded_and_has_no_floats() -> None:
    refused(
        c.ConsumeCredits(**BASE, amount=1, operation="op", metadata={"x": "y" * METADATA_BYTES_MAX})
    )
    refused(c.ConsumeCredits(**BASE, amount=1, operation="op", metadata={"price": 0.1}))


def test_prices_are_decimal_strings_in_iso_currencies() -> None:
    refused(c.PurchaseCredits(**BASE, price=c.Price(amount="abc", currency="USD"), payment_ref="p"))
    refused(c.PurchaseCredits(**BASE, price=c.Price(amount="NaN", currency="USD"), payment_ref="p"))
    refused(
        c.PurchaseCredits(**BASE, price=c.Price(amount="1.00", currency="usd"), payment_ref="p")
    )


def test_an_adjustment_is_signed_and_never_zero() -> None:
    refused(c.AdjustBalance(**BASE, amount=0, reason="r"))
    c.check(c.AdjustBalance(**BASE, amount=-5, reason="r"), START)


def test_idempotency_keys_are_one_to_255_printable_characters() -> None:
    refused(c.ConsumeCredits(**BASE, amount=1, operation="op", idempotency_key=""))
    refused(c.ConsumeCredits(**BASE, amount=1, operation="op", idempotency_key="k" * 256))


def test_api_key_scopes_are_the_known_ones() -> None:
    refused(c.CreateApiKey(tenant_id="acme", scopes=["accounts:read", "root"]))
    refused(c.CreateApiKey(tenant_id="acme", scopes=[]))


def test_tenant_settings_are_checked() -> None:
    refused(
        c.CreateTenant(tenant_id="acme", name="A", settings=c.TenantSettings(overdraft_limit=-1))
    )
    refused(
        c.CreateTenant(
            tenant_id="acme", name="A", settings=c.TenantSettings(purchase_rates={"USD": "0"})
        )
    )


def test_an_entry_id_is_the_uuid5_of_its_account_and_version() -> None:
    for version in (1, 9, 10, 255, 4096, 10**12):
        account = uuid.uuid4()
        assert entry_id(account, version) == str(uuid.uuid5(account, str(version)))
    # enough hashes for every hex digit where the variant goes in (16 of them), many times over
    for version in range(1, 2_000):
        account = uuid.uuid4()
        assert entry_id(account, version) == str(uuid.uuid5(account, str(version)))

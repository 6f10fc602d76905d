"""The public NATS contract: subjects, payloads, low-balance crossings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from events.contract import encode, entry_message, low_balance_message
from events.low_balance import crossed_below
from events.subjects import account_token, entry_subject, tenant_subjects
from ledger.accounts.account import Account
from ledger.accounts.views import entry_from_event


def test_account_tokens_percent_encode_dots_wildcards_percent_and_whitespace() -> None:
    assert account_token("ada@example.com") == "ada@example%2Ecom"
    assert account_token("a*b>c%d") == "a%2Ab%3Ec%25d"
    assert account_token("tab\there space") == "tab%09here%20space"
    assert account_token("plain-id_1") == "plain-id_1"


def test_subjects_follow_the_scheme() -> None:
    assert entry_subject("acme", "a.b", "consume") == "ledger.acme.a%2Eb.consume"
    assert tenant_subjects("acme") == "ledger.acme.>"
    assert tenant_subjects("acme", "a.b") == "ledger.acme.a%2Eb.>"


def account_event(cls: type, amount: int, balance: int, held: int, **fields: object) -> object:
    return cls(
        originator_id=uuid.uuid4(),
        originator_version=5,
        timestamp=datetime(2026, 11, 22, tzinfo=UTC),
        tenant_id="acme",
        account_id="ada",
        amount=amount,
        balance=balance,
        held=held,
        **fields,
    )


def consumed(amount: int, balance_after: int) -> object:
    return account_event(
        Account.CreditsConsumed,
        -amount,
        balance_after,
        0,
        consumption_id="c",
        operation="op",
        resource=None,
        user_id=None,
        metadata={},
        draws=[],
        drawn_lots={},
    )


def test_a_low_balance_is_signalled_once_when_available_crosses_below_the_threshold() -> None:
    assert crossed_below(consumed(10, 95), 100)  # 105 -> 95
    assert not crossed_below(consumed(10, 85), 100)  # 95 -> 85: already below
    assert not crossed_below(consumed(10, 100), 100)  # 110 -> 100: not below
    hold = account_event(
        Account.HoldPlaced,
        0,
        150,
        60,
        hold_id="h",
        operation="op",
        hold_amount=60,
        expires_at=datetime.now(UTC),
        metadata={},
        reservations=[],
        resource=None,
        user_id=None,
    )
    assert crossed_below(hold, 100)  # available 150 -> 90


def test_payloads_carry_the_schema_the_tenant_and_the_whole_entry() -> None:
    entry = entry_from_event(consumed(10, 95), position=42)  # type: ignore[arg-type]
    payload = msgspec.json.decode(encode(entry_message("acme", entry)))
    assert payload["schema"] == "ledger.entry.v1" and payload["tenant_id"] == "acme"
    assert (payload["position"], payload["amount"], payload["balance"]) == (42, -10, 95)
    low = msgspec.json.decode(encode(low_balance_message("acme", entry, 100)))
    assert low["schema"] == "ledger.low_balance.v1" and low["low_balance_threshold"] == 100

"""Idempotency keys (docs/api.md): same request replays, a different one is refused, a rejected one
does not use the key up."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.errors import IdempotencyKeyReusedError, InsufficientCreditsError, InvalidCommandError
from tests import envelopes as c
from tests.unit.fakes import START, InMemoryLedger

T = "acme"
A = "ada"


def ready() -> InMemoryLedger:
    ledger = InMemoryLedger()
    ledger.run(c.CreateTenant(tenant_id=T, name="Acme"))
    ledger.run(c.OpenAccount(tenant_id=T, account_id=A))
    ledger.run(c.GrantCredits(tenant_id=T, account_id=A, amount=100, reason="x"))
    return ledger


def consume(amount: int, key: str | None = "k-1") -> c.ConsumeCredits:
    return c.ConsumeCredits(
        tenant_id=T, account_id=A, amount=amount, operation="op", idempotency_key=key
    )


def test_the_same_key_and_request_replays_the_stored_answer_without_applying_again() -> None:
    ledger = ready()
    first = ledger.run(consume(10))
    second = ledger.run(consume(10))
    assert second.replayed and not first.replayed
    assert second.value == first.value
    assert second.entry_ref == first.entry_ref
    assert sum(1 for e in ledger.events if type(e).__name__ == "CreditsConsumed") == 1


def test_the_same_key_with_a_different_request_is_refused() -> None:
    ledger = ready()
    ledger.run(consume(10))
    with pytest.raises(IdempotencyKeyReusedError):
        ledger.run(consume(11))


def test_keys_are_scoped_to_the_tenant() -> None:
    ledger = ready()
    ledger.run(c.CreateTenant(tenant_id="other", name="Other"))
    ledger.run(c.OpenAccount(tenant_id="other", account_id=A))
    ledger.run(c.GrantCredits(tenant_id="other", account_id=A, amount=100, reason="x"))
    ledger.run(consume(10))
    other = ledger.run(
        c.ConsumeCredits(
            tenant_id="other", account_id=A, amount=99, operation="op", idempotency_key="k-1"
        )
    )
    assert not other.replayed


def test_a_command_rejected_by_validation_does_not_use_up_its_key() -> None:
    ledger = ready()
    with pytest.raises(InvalidCommandError):
        ledger.run(consume(0))
    assert not ledger.results
    assert not ledger.run(consume(5)).replayed


def test_a_command_refused_by_the_rules_does_not_use_up_its_key() -> None:
    ledger = ready()
    with pytest.raises(InsufficientCreditsError):
        ledger.run(consume(500))
    ledger.run(c.GrantCredits(tenant_id=T, account_id=A, amount=500, reason="top up"))
    assert ledger.run(consume(500)).value.balance == 100


def test_a_stored_answer_never_holds_an_api_keys_secret() -> None:
    ledger = InMemoryLedger()
    created = ledger.run(c.CreateTenant(tenant_id=T, name="Acme", idempotency_key="t-1"))
    assert created.value.api_key.key.startswith("lk_live_")
    replay = ledger.run(c.CreateTenant(tenant_id=T, name="Acme", idempotency_key="t-1"))
    assert replay.replayed and replay.value.api_key.key is None


def test_the_fingerprint_ignores_the_key_and_sees_every_field() -> None:
    assert c.fingerprint(consume(10, "a")) == c.fingerprint(consume(10, "b"))
    assert c.fingerprint(consume(10)) != c.fingerprint(consume(11))


def test_a_retry_after_its_grant_expired_replays_the_grant() -> None:
    ledger = ready()
    grant = c.GrantCredits(
        tenant_id=T,
        account_id=A,
        amount=5,
        reason="promo",
        expires_at=START + timedelta(hours=1),
        idempotency_key="g-1",
    )
    first = ledger.run(grant)
    ledger.now = START + timedelta(hours=2)  # the answer was lost; the retry comes late
    again = ledger.run(grant)
    assert again.replayed and again.value == first.value
    assert sum(1 for e in ledger.events if type(e).__name__ == "CreditsGranted") == 2  # ready()'s


def test_a_purchase_retried_after_its_expiry_is_credited_once() -> None:
    ledger = ready()
    purchase = c.PurchaseCredits(
        tenant_id=T,
        account_id=A,
        amount=50,
        price=c.Price(amount="5.00", currency="USD"),
        payment_ref="pay-1",
        expires_at=START + timedelta(days=1),
    )
    first = ledger.run(purchase)
    ledger.now = START + timedelta(days=2)
    again = ledger.run(purchase)
    assert again.value == first.value
    assert sum(1 for e in ledger.events if type(e).__name__ == "CreditsPurchased") == 1


def test_a_new_grant_with_a_key_and_a_past_expiry_is_refused_and_keeps_its_key() -> None:
    ledger = ready()
    late = c.GrantCredits(
        tenant_id=T,
        account_id=A,
        amount=5,
        reason="promo",
        expires_at=START - timedelta(seconds=1),
        idempotency_key="g-2",
    )
    with pytest.raises(InvalidCommandError, match="in the future"):
        ledger.run(late)
    fixed = c.changed(late, expires_at=START + timedelta(days=1))
    assert not ledger.run(fixed).replayed

"""Auto top-up rules: one request per crossing, closed by the purchase that follows, capped
per calendar month, retried with the same topup_id and abandoned after the last try; an
account's policy before the tenant's default."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ledger.topups.record import TOPUP_ATTEMPTS_MAX
from tests import envelopes as c
from tests.unit.fakes import START, InMemoryLedger

T, A = "acme", "ada"


def funded(balance: int = 100, **policy: Any) -> InMemoryLedger:
    ledger = InMemoryLedger()
    ledger.run(c.CreateTenant(tenant_id=T, name="Acme"))
    ledger.run(c.OpenAccount(tenant_id=T, account_id=A))
    ledger.run(c.GrantCredits(tenant_id=T, account_id=A, amount=balance, reason="fund"))
    if policy:
        ledger.run(c.SetTenantTopUp(tenant_id=T, **policy))
    return ledger


def spend(ledger: InMemoryLedger, amount: int) -> None:
    ledger.run(c.ConsumeCredits(tenant_id=T, account_id=A, amount=amount, operation="op"))


def request(ledger: InMemoryLedger, position: int = 1) -> Any:
    return ledger.run(c.RequestTopUp(tenant_id=T, account_id=A, position=position)).value


def buy(ledger: InMemoryLedger, ref: str) -> None:
    ledger.run(
        c.PurchaseCredits(
            tenant_id=T,
            account_id=A,
            price=c.Price(amount="1", currency="USD"),
            payment_ref=ref,
            amount=100,
        )
    )


def topup_entries(ledger: InMemoryLedger) -> list[Any]:
    return [e for e in ledger.events if getattr(e, "entry_type", "") == "topup_requested"]


def test_a_crossing_requests_once_for_target_minus_available_until_a_purchase_closes_it() -> None:
    ledger = funded(below=50, target=200, monthly_max=5)
    spend(ledger, 60)
    first = request(ledger, 10)
    assert (first.status, first.credits) == ("requested", 160)
    assert request(ledger, 11).status == "open"  # one per crossing
    assert len(topup_entries(ledger)) == 1
    assert topup_entries(ledger)[0].metadata["topup_id"] == first.topup_id
    buy(ledger, "pay-1")
    view: Any = ledger.run(c.GetAccountTopUp(tenant_id=T, account_id=A)).value
    assert view.open is None and view.last["status"] == "closed"
    spend(ledger, 100)
    assert request(ledger, 12).status == "requested"


def test_an_account_above_below_again_asks_nothing() -> None:
    ledger = funded(below=50, amount=10)
    assert request(ledger).status == "not_below"


def test_the_monthly_cap_stops_requests_until_the_next_calendar_month() -> None:
    ledger = funded(below=50, amount=10, monthly_max=1)
    spend(ledger, 60)
    request(ledger)
    buy(ledger, "pay-1")
    spend(ledger, 100)
    assert request(ledger).status == "capped"
    ledger.now = START + timedelta(days=31)  # 2026-12
    assert request(ledger).status == "requested"


def test_retries_repeat_the_same_topup_id_then_it_is_abandoned() -> None:
    ledger = funded(below=50, amount=10)
    spend(ledger, 60)
    first = request(ledger)
    for attempt in range(2, TOPUP_ATTEMPTS_MAX + 1):
        again = ledger.run(
            c.RetryTopUp(tenant_id=T, account_id=A, topup_id=first.topup_id, attempt=attempt)
        ).value
        assert (again.status, again.topup_id, again.attempt) == (
            "requested",
            first.topup_id,
            attempt,
        )  # type: ignore[attr-defined]
    last = ledger.run(
        c.RetryTopUp(
            tenant_id=T, account_id=A, topup_id=first.topup_id, attempt=TOPUP_ATTEMPTS_MAX + 1
        )
    ).value
    assert last.status == "abandoned"  # type: ignore[attr-defined]
    assert [e.metadata["attempt"] for e in topup_entries(ledger)] == list(
        range(1, TOPUP_ATTEMPTS_MAX + 1)
    )
    assert {e.metadata["topup_id"] for e in topup_entries(ledger)} == {first.topup_id}


def test_a_retry_of_a_closed_topup_asks_nothing() -> None:
    ledger = funded(below=50, amount=10)
    spend(ledger, 60)
    first = request(ledger)
    buy(ledger, "pay-1")
    late = ledger.run(
        c.RetryTopUp(tenant_id=T, account_id=A, topup_id=first.topup_id, attempt=2)
    ).value
    assert late.status == "closed"  # type: ignore[attr-defined]
    assert len(topup_entries(ledger)) == 1


def test_an_accounts_own_policy_comes_before_the_tenants_default() -> None:
    ledger = funded(below=50, amount=10)
    ledger.run(c.SetAccountTopUp(tenant_id=T, account_id=A, below=95, amount=500))
    spend(ledger, 10)
    asked = request(ledger)
    assert (asked.status, asked.credits) == ("requested", 500)
    view: Any = ledger.run(c.GetAccountTopUp(tenant_id=T, account_id=A)).value
    assert view.source == "account" and view.requested_this_month == 1


def test_a_disabled_policy_asks_nothing() -> None:
    ledger = funded(below=50, amount=10, enabled=False)
    spend(ledger, 60)
    assert request(ledger).status == "no_policy"

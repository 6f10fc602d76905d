"""Auto top-up rules: one request per crossing, closed by the purchase that follows, capped
per calendar month, retried with the same topup_id and abandoned after the last try; an
account's policy before the tenant's default. The retries are the scheduler's: a request makes
its retry due (ledger/topups/schedules.py), the purchase clears it, and the command sent for it
under its due key applies once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ledger.areas import REGISTRY
from ledger.registry import DueChange, DueItem, due_key
from ledger.topups.record import TOPUP_ATTEMPTS_MAX
from ledger.topups.schedules import TOPUP_RETRY
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


# ------------------------------------------------------------------ retries, on the scheduler


def retry_changes(ledger: InMemoryLedger) -> list[DueChange]:
    """What the registry's schedules say the ledger's events do to the top-up retry (the
    scheduler's due model's input)."""
    return [
        change
        for event in ledger.events
        for schedule in REGISTRY.schedules_by_topic.get(type(event).TOPIC, [])
        for change in schedule.changes(event)
        if change.kind == TOPUP_RETRY
    ]


def due_item(change: DueChange) -> DueItem:
    assert change.due_at is not None
    return DueItem(T, A, change.kind, change.key, change.due_at, change.detail)


def send(ledger: InMemoryLedger, item: DueItem) -> Any:
    """What the scheduler sends for the item, under its due key."""
    command = REGISTRY.scheduled_command(item)
    assert command.idempotency_key == due_key(item)
    return ledger.run(c.Envelope(tenant_id=T, command=command)).value


def test_a_request_makes_its_retry_due_in_5_minutes_and_the_purchase_clears_it() -> None:
    ledger = funded(below=50, amount=10)
    spend(ledger, 60)
    first = request(ledger)
    [entry] = topup_entries(ledger)
    assert retry_changes(ledger) == [
        DueChange(
            TOPUP_RETRY, A, T, A, entry.timestamp + timedelta(minutes=5), f"2:{first.topup_id}"
        )
    ]
    buy(ledger, "pay-1")
    assert retry_changes(ledger)[-1] == DueChange(TOPUP_RETRY, A, T, A, None)


def test_the_scheduler_asks_again_after_5_15_and_60_minutes_once_each_then_gives_up() -> None:
    ledger = funded(below=50, amount=10)
    spend(ledger, 60)
    first = request(ledger)
    delays = []
    for attempt in range(2, TOPUP_ATTEMPTS_MAX + 2):
        change = retry_changes(ledger)[-1]
        assert change.detail == f"{attempt}:{first.topup_id}"
        delays.append(change.due_at - topup_entries(ledger)[-1].timestamp)  # type: ignore[operator]
        answered = [send(ledger, due_item(change)) for _ in range(2)]  # a failover sends twice
        assert answered[0] == answered[1]
    assert delays == [timedelta(minutes=m) for m in (5, 15, 60, 60)]
    assert answered[0].status == "abandoned"
    assert [e.metadata["attempt"] for e in topup_entries(ledger)] == list(
        range(1, TOPUP_ATTEMPTS_MAX + 1)
    )
    assert len(retry_changes(ledger)) == TOPUP_ATTEMPTS_MAX  # the give-up makes nothing due
    view: Any = ledger.run(c.GetAccountTopUp(tenant_id=T, account_id=A)).value
    assert view.open is None and view.last == {"topup_id": first.topup_id, "status": "abandoned"}


def test_a_retry_sent_after_the_purchase_asks_nothing_and_is_done() -> None:
    ledger = funded(below=50, amount=10)
    spend(ledger, 60)
    request(ledger)
    item = due_item(retry_changes(ledger)[-1])
    buy(ledger, "pay-1")
    assert send(ledger, item).status == "closed"
    assert len(topup_entries(ledger)) == 1

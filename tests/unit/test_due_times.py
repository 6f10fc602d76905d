"""What falls due (docs/adr/0007): the accounts area's schedules, the keys the scheduler sends
under, and the effective view a read shows before the scheduler has acted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.accounts.account import Account
from ledger.accounts.schedules import HOLD_EXPIRY, LOT_EXPIRY
from ledger.areas import REGISTRY
from ledger.errors import HoldNotActiveError
from ledger.ids import account_aggregate_id
from ledger.registry import DueChange, DueItem, due_key
from tests import envelopes as c
from tests.unit.fakes import START, InMemoryLedger

T = "acme"
A = "ada@example.com"


def make_ledger(**settings: Any) -> InMemoryLedger:
    ledger = InMemoryLedger()
    ledger.run(c.CreateTenant(tenant_id=T, name="Acme", settings=c.TenantSettings(**settings)))
    ledger.run(c.OpenAccount(tenant_id=T, account_id=A))
    return ledger


def due_changes(events: list[Any]) -> list[DueChange]:
    """What the registry's schedules say the events do, in order (the due model's input)."""
    found = []
    for event in events:
        for schedule in REGISTRY.schedules_by_topic.get(type(event).TOPIC, []):
            found.extend(schedule.changes(event))
    return found


def account(ledger: InMemoryLedger) -> Account:
    found: Account = ledger.get(account_aggregate_id(T, A))
    return found


def scheduled(ledger: InMemoryLedger, item: DueItem) -> Any:
    """What the scheduler sends for the item, run now."""
    command = REGISTRY.scheduled_command(item)
    return ledger.run(c.Envelope(tenant_id=item.tenant_id, command=command))


# ------------------------------------------------------------------ which events make due items


def test_a_hold_placed_is_due_at_its_expiry_and_ending_it_clears_it() -> None:
    ledger = make_ledger()
    ledger.run(c.GrantCredits(tenant_id=T, account_id=A, amount=100, reason="r"))
    kept = ledger.run(c.PlaceHold(tenant_id=T, account_id=A, amount=30, operation="OP")).value
    ended = ledger.run(c.PlaceHold(tenant_id=T, account_id=A, amount=10, operation="OP")).value
    ledger.run(c.CaptureHold(tenant_id=T, account_id=A, hold_id=ended.hold_id))
    changes = [ch for ch in due_changes(ledger.events) if ch.kind == HOLD_EXPIRY]
    assert changes == [
        DueChange(HOLD_EXPIRY, kept.hold_id, T, A, START + timedelta(seconds=300)),
        DueChange(HOLD_EXPIRY, ended.hold_id, T, A, START + timedelta(seconds=300)),
        DueChange(HOLD_EXPIRY, ended.hold_id, T, A, None),
    ]


def test_a_lot_with_an_expiry_is_due_then_and_its_expiry_clears_it() -> None:
    ledger = make_ledger()
    expires_at = START + timedelta(days=1)
    lot = ledger.run(
        c.GrantCredits(tenant_id=T, account_id=A, amount=50, reason="r", expires_at=expires_at)
    ).value
    ledger.run(c.GrantCredits(tenant_id=T, account_id=A, amount=5, reason="never expires"))
    ledger.now = expires_at
    ledger.run(c.ExpireCredits(tenant_id=T, account_id=A))
    assert [ch for ch in due_changes(ledger.events) if ch.kind == LOT_EXPIRY] == [
        DueChange(LOT_EXPIRY, lot.lot_id, T, A, expires_at),
        DueChange(LOT_EXPIRY, lot.lot_id, T, A, None),
    ]


def test_a_grant_that_only_repays_debt_makes_no_lot_and_nothing_due() -> None:
    ledger = make_ledger(overdraft_limit=100)
    ledger.run(c.ConsumeCredits(tenant_id=T, account_id=A, amount=40, operation="OP"))
    ledger.run(
        c.GrantCredits(
            tenant_id=T, account_id=A, amount=40, reason="r", expires_at=START + timedelta(days=1)
        )
    )
    assert due_changes(ledger.events) == []


def test_a_refund_that_makes_an_expiring_lot_again_makes_it_due_again() -> None:
    ledger = make_ledger()
    expires_at = START + timedelta(days=1)
    lot = ledger.run(
        c.GrantCredits(tenant_id=T, account_id=A, amount=20, reason="r", expires_at=expires_at)
    ).value
    used = ledger.run(c.ConsumeCredits(tenant_id=T, account_id=A, amount=20, operation="OP")).value
    assert lot.lot_id not in account(ledger).lots  # used up: dropped
    ledger.run(
        c.RefundConsumption(
            tenant_id=T, account_id=A, consumption_id=used.consumption_id, reason="r"
        )
    )
    assert due_changes(ledger.events)[-1] == DueChange(LOT_EXPIRY, lot.lot_id, T, A, expires_at)


# ------------------------------------------------------------------ keys


def test_the_same_item_due_at_the_same_time_always_makes_the_same_key() -> None:
    item = DueItem(T, A, HOLD_EXPIRY, "h1", START)
    assert due_key(item) == due_key(DueItem(T, A, HOLD_EXPIRY, "h1", START))
    assert due_key(item) != due_key(DueItem(T, A, HOLD_EXPIRY, "h1", START + timedelta(hours=1)))
    assert due_key(item) != due_key(DueItem(T, A, LOT_EXPIRY, "h1", START))
    assert REGISTRY.scheduled_command(item).idempotency_key == due_key(item)


def test_a_due_item_sent_twice_is_applied_once() -> None:
    ledger = make_ledger()
    ledger.run(c.GrantCredits(tenant_id=T, account_id=A, amount=100, reason="r"))
    hold = ledger.run(
        c.PlaceHold(tenant_id=T, account_id=A, amount=30, operation="OP", expires_in_s=1)
    ).value
    item = DueItem(T, A, HOLD_EXPIRY, hold.hold_id, hold.expires_at)
    ledger.now = hold.expires_at
    first = scheduled(ledger, item)
    again = scheduled(ledger, item)
    assert (first.replayed, again.replayed) == (False, True)
    assert sum(isinstance(e, Account.HoldExpired) for e in ledger.events) == 1


def test_a_clients_idempotency_key_never_collides_with_a_due_key() -> None:
    ledger = make_ledger()
    item = DueItem(T, A, LOT_EXPIRY, "lot-1", START)
    ledger.run(
        c.GrantCredits(
            tenant_id=T, account_id=A, amount=5, reason="r", idempotency_key=due_key(item)
        )
    )
    outcome = scheduled(ledger, item)  # not idempotency_key_reused: the keys live apart
    assert not outcome.replayed


def test_the_scheduled_sweep_expires_what_is_due_by_its_time_though_the_writer_clock_is_behind() -> (
    None
):
    ledger = make_ledger()
    expires_at = START + timedelta(minutes=10)
    lot = ledger.run(
        c.GrantCredits(tenant_id=T, account_id=A, amount=50, reason="r", expires_at=expires_at)
    ).value
    ledger.now = expires_at - timedelta(seconds=2)  # this writer's clock: 2 s behind
    scheduled(ledger, DueItem(T, A, LOT_EXPIRY, lot.lot_id, expires_at))
    assert account(ledger).balance == 0


def test_a_lot_used_up_before_its_expiry_leaves_its_command_nothing_to_record() -> None:
    ledger = make_ledger()
    expires_at = START + timedelta(hours=1)
    lot = ledger.run(
        c.GrantCredits(tenant_id=T, account_id=A, amount=10, reason="r", expires_at=expires_at)
    ).value
    ledger.run(c.ConsumeCredits(tenant_id=T, account_id=A, amount=10, operation="OP"))
    recorded = len(ledger.events)
    ledger.now = expires_at
    outcome = scheduled(ledger, DueItem(T, A, LOT_EXPIRY, lot.lot_id, expires_at))
    assert len(ledger.events) == recorded and outcome.entry_ref is None


# ------------------------------------------------------------------ reads before the sweep


def test_an_account_read_after_an_expiry_shows_expired_credits_gone_and_records_nothing() -> None:
    ledger = make_ledger()
    ledger.run(
        c.GrantCredits(
            tenant_id=T,
            account_id=A,
            amount=100,
            reason="trial",
            expires_at=START + timedelta(seconds=10),
        )
    )
    ledger.run(c.GrantCredits(tenant_id=T, account_id=A, amount=7, reason="paid"))
    ledger.run(c.PlaceHold(tenant_id=T, account_id=A, amount=30, operation="OP", expires_in_s=1))
    recorded = len(ledger.events)
    before = ledger.run(c.GetAccount(tenant_id=T, account_id=A)).value
    assert (before.balance, before.held, before.available) == (107, 30, 77)
    ledger.now = START + timedelta(seconds=11)
    view = ledger.run(c.GetAccount(tenant_id=T, account_id=A)).value
    assert (view.balance, view.held, view.available) == (7, 0, 7)
    assert [lot.remaining for lot in view.lots] == [7]
    assert view.totals.expired == 100
    assert view.version == before.version  # nothing recorded by the read
    assert len(ledger.events) == recorded


def test_a_hold_read_after_its_expiry_is_shown_expired_before_the_sweep() -> None:
    ledger = make_ledger()
    ledger.run(c.GrantCredits(tenant_id=T, account_id=A, amount=100, reason="r"))
    hold = ledger.run(
        c.PlaceHold(tenant_id=T, account_id=A, amount=30, operation="OP", expires_in_s=1)
    ).value
    read = c.GetHold(tenant_id=T, account_id=A, hold_id=hold.hold_id)
    assert ledger.run(read).value.status == "active"
    ledger.now = START + timedelta(seconds=1)
    assert ledger.run(read).value.status == "expired"
    with pytest.raises(HoldNotActiveError):  # as the next command would find it
        ledger.run(c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold.hold_id))


def test_credits_a_hold_keeps_from_an_expired_lot_stay_until_the_hold_ends() -> None:
    ledger = make_ledger()
    ledger.run(
        c.GrantCredits(
            tenant_id=T, account_id=A, amount=50, reason="r", expires_at=START + timedelta(hours=1)
        )
    )
    ledger.run(
        c.PlaceHold(tenant_id=T, account_id=A, amount=20, operation="OP", expires_in_s=86_400)
    )
    ledger.now = START + timedelta(hours=2)
    view = ledger.run(c.GetAccount(tenant_id=T, account_id=A)).value
    assert (view.balance, view.held, view.available) == (20, 20, 0)
    swept = ledger.run(c.ExpireCredits(tenant_id=T, account_id=A)).value
    assert (swept.balance, swept.held, swept.available) == (20, 20, 0)


def test_two_schedules_of_one_kind_are_refused() -> None:
    from ledger.registry import Area, Registry

    twice = Area(name="twice", commands=[], views={}, schedules=list(REGISTRY.schedules.values()))
    with pytest.raises(ValueError, match="registered twice"):
        Registry([*REGISTRY.areas, twice])

"""The rules of accounts, lots, holds, refunds and expiry (docs/api.md), through the real handlers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.accounts.account import Account
from ledger.accounts.lots import OVERDRAFT_LOT_ID
from ledger.errors import (
    AccountNotFoundError,
    ConsumptionNotFoundError,
    HoldNotActiveError,
    HoldNotFoundError,
    InsufficientCreditsError,
    InvalidCommandError,
    PaymentAlreadyCreditedError,
    RefundExceedsRefundableError,
    TenantExistsError,
    TenantNotFoundError,
)
from ledger.ids import account_aggregate_id
from tests import envelopes as c
from tests.unit.fakes import START, InMemoryLedger

T = "acme"
A = "ada@example.com"


def make_ledger(**settings: object) -> InMemoryLedger:
    ledger = InMemoryLedger()
    ledger.run(c.CreateTenant(tenant_id=T, name="Acme", settings=c.TenantSettings(**settings)))  # type: ignore[arg-type]
    ledger.run(c.OpenAccount(tenant_id=T, account_id=A))
    return ledger


def account(ledger: InMemoryLedger, account_id: str = A) -> Account:
    return ledger.get(account_aggregate_id(T, account_id))


def grant(ledger: InMemoryLedger, amount: int, **fields: object) -> c.Command:
    return ledger.run(
        c.GrantCredits(tenant_id=T, account_id=A, amount=amount, reason="test", **fields)
    ).value  # type: ignore[arg-type,return-value]


def consume(ledger: InMemoryLedger, amount: int, **fields: object):  # type: ignore[no-untyped-def]
    return ledger.run(
        c.ConsumeCredits(
            tenant_id=T, account_id=A, amount=amount, operation="IMAGE_GENERATION", **fields
        )  # type: ignore[arg-type]
    ).value


# ------------------------------------------------------------------ opening


def test_opening_grants_the_signup_bonus_exactly_once() -> None:
    ledger = make_ledger(signup_bonus=50)
    again = ledger.run(c.OpenAccount(tenant_id=T, account_id=A))
    assert again.created is False
    assert account(ledger).balance == 50
    assert account(ledger).totals["granted"] == 50


def test_a_signup_bonus_can_expire_after_the_tenants_days() -> None:
    ledger = make_ledger(signup_bonus=50, signup_bonus_expires_in_days=7)
    (lot,) = account(ledger).lots.values()
    assert lot.expires_at == START + timedelta(days=7)


def test_commands_on_an_account_never_opened_are_not_found() -> None:
    ledger = make_ledger()
    with pytest.raises(AccountNotFoundError):
        ledger.run(c.GrantCredits(tenant_id=T, account_id="nobody", amount=1, reason="x"))


def test_commands_of_an_unknown_tenant_are_not_found() -> None:
    ledger = InMemoryLedger()
    with pytest.raises(TenantNotFoundError):
        ledger.run(c.OpenAccount(tenant_id="ghost", account_id=A))


def test_a_tenant_id_is_taken_once() -> None:
    ledger = make_ledger()
    with pytest.raises(TenantExistsError):
        ledger.run(c.CreateTenant(tenant_id=T, name="Again"))


# ------------------------------------------------------------------ burn-down


def test_consumption_burns_lower_priority_first_then_earliest_expiry_then_oldest() -> None:
    ledger = make_ledger()
    late = grant(ledger, 10, expires_at=START + timedelta(days=30))
    never = grant(ledger, 10)
    soon = grant(ledger, 10, expires_at=START + timedelta(days=1))
    first = grant(ledger, 10, priority=1)
    entry = consume(ledger, 35)
    events = [e for e in ledger.events if isinstance(e, Account.CreditsConsumed)]
    assert [d.lot_id for d in events[-1].draws] == [
        first.lot_id,
        soon.lot_id,
        late.lot_id,
        never.lot_id,
    ]
    assert [d.amount for d in events[-1].draws] == [10, 10, 10, 5]
    assert entry.balance == 5


def test_two_lots_of_one_priority_without_expiry_burn_oldest_first() -> None:
    ledger = make_ledger()
    old = grant(ledger, 10)
    ledger.run(
        c.PurchaseCredits(
            tenant_id=T,
            account_id=A,
            amount=10,
            price=c.Price(amount="1", currency="USD"),
            payment_ref="pi_1",
        )
    )
    consume(ledger, 4)
    assert account(ledger).lots[old.lot_id].remaining == 6


def test_consumption_beyond_available_is_refused_and_changes_nothing() -> None:
    ledger = make_ledger()
    grant(ledger, 10)
    version = account(ledger).version
    with pytest.raises(InsufficientCreditsError) as refused:
        consume(ledger, 11)
    assert refused.value.available == 10
    assert account(ledger).version == version
    assert account(ledger).balance == 10


def test_the_overdraft_limit_lets_balance_go_that_far_below_zero_and_no_further() -> None:
    ledger = make_ledger(overdraft_limit=20)
    grant(ledger, 10)
    assert consume(ledger, 30).balance == -20
    with pytest.raises(InsufficientCreditsError):
        consume(ledger, 1)
    assert account(ledger).lots[OVERDRAFT_LOT_ID].remaining == -20


def test_new_credits_repay_the_overdraft_first() -> None:
    ledger = make_ledger(overdraft_limit=20)
    consume(ledger, 15)
    entry = grant(ledger, 40)
    assert entry.balance == 25
    assert OVERDRAFT_LOT_ID not in account(ledger).lots
    assert account(ledger).lots[entry.lot_id].remaining == 25


# ------------------------------------------------------------------ purchases


def test_a_purchase_without_amount_is_priced_by_the_tenants_rate() -> None:
    ledger = make_ledger(purchase_rates={"USD": "100"})
    entry = ledger.run(
        c.PurchaseCredits(
            tenant_id=T,
            account_id=A,
            price=c.Price(amount="9.99", currency="USD"),
            payment_ref="pi_1",
        )
    ).value
    assert entry.amount == 999
    assert entry.type == "purchase"


def test_a_purchase_in_a_currency_without_rate_is_invalid() -> None:
    ledger = make_ledger(purchase_rates={"USD": "100"})
    with pytest.raises(InvalidCommandError):
        ledger.run(
            c.PurchaseCredits(
                tenant_id=T,
                account_id=A,
                price=c.Price(amount="5", currency="EUR"),
                payment_ref="pi_1",
            )
        )


def test_a_payment_ref_is_never_credited_twice() -> None:
    ledger = make_ledger()
    buy = c.PurchaseCredits(
        tenant_id=T,
        account_id=A,
        amount=100,
        price=c.Price(amount="1", currency="USD"),
        payment_ref="pi_1",
    )
    first = ledger.run(buy)
    second = ledger.run(c.changed(buy, amount=500))
    assert second.replayed and second.value == first.value
    assert account(ledger).balance == 100
    ledger.run(c.OpenAccount(tenant_id=T, account_id="other"))
    with pytest.raises(PaymentAlreadyCreditedError):
        ledger.run(c.changed(buy, account_id="other"))


# ------------------------------------------------------------------ refunds


def test_a_refund_gives_back_at_most_what_is_still_refundable() -> None:
    ledger = make_ledger()
    grant(ledger, 100)
    used = consume(ledger, 30)
    refund = c.RefundConsumption(
        tenant_id=T, account_id=A, consumption_id=used.consumption_id, reason="failed", amount=20
    )
    assert ledger.run(refund).value.balance == 90
    with pytest.raises(RefundExceedsRefundableError):
        ledger.run(refund)
    rest = ledger.run(
        c.RefundConsumption(
            tenant_id=T, account_id=A, consumption_id=used.consumption_id, reason="failed"
        )
    )
    assert rest.value.amount == 10
    with pytest.raises(RefundExceedsRefundableError):
        ledger.run(
            c.RefundConsumption(
                tenant_id=T, account_id=A, consumption_id=used.consumption_id, reason="again"
            )
        )
    assert account(ledger).balance == 100
    assert account(ledger).totals["refunded"] == 30


def test_a_refund_returns_credits_to_the_lots_they_came_from() -> None:
    ledger = make_ledger()
    lot = grant(ledger, 10, expires_at=START + timedelta(days=3), priority=5)
    used = consume(ledger, 10)
    assert lot.lot_id not in account(ledger).lots
    ledger.run(
        c.RefundConsumption(
            tenant_id=T, account_id=A, consumption_id=used.consumption_id, reason="failed"
        )
    )
    restored = account(ledger).lots[lot.lot_id]
    assert (restored.remaining, restored.priority, restored.expires_at) == (
        10,
        5,
        lot.expires_at,
    )


def test_a_refund_of_credits_whose_lot_expired_goes_into_a_refund_lot() -> None:
    ledger = make_ledger()
    grant(ledger, 10, expires_at=START + timedelta(hours=1))
    used = consume(ledger, 10)
    ledger.now = START + timedelta(hours=2)
    ledger.run(
        c.RefundConsumption(
            tenant_id=T, account_id=A, consumption_id=used.consumption_id, reason="failed"
        )
    )
    (lot,) = account(ledger).lots.values()
    assert (lot.source, lot.remaining, lot.expires_at) == ("refund", 10, None)


def test_another_accounts_consumption_cannot_be_refunded_here() -> None:
    ledger = make_ledger()
    grant(ledger, 10)
    used = consume(ledger, 5)
    ledger.run(c.OpenAccount(tenant_id=T, account_id="mallory"))
    with pytest.raises(ConsumptionNotFoundError):
        ledger.run(
            c.RefundConsumption(
                tenant_id=T, account_id="mallory", consumption_id=used.consumption_id, reason="x"
            )
        )


# ------------------------------------------------------------------ holds


def place(ledger: InMemoryLedger, amount: int, **fields: object):  # type: ignore[no-untyped-def]
    return ledger.run(
        c.PlaceHold(
            tenant_id=T, account_id=A, amount=amount, operation="VIDEO_GENERATION", **fields
        )
    ).value  # type: ignore[arg-type]


def test_a_hold_reserves_credits_from_specific_lots_and_lowers_available() -> None:
    ledger = make_ledger()
    first = grant(ledger, 10, priority=1)
    grant(ledger, 10)
    hold = place(ledger, 15)
    state = account(ledger)
    assert (state.balance, state.held, state.available) == (20, 15, 5)
    assert state.lots[first.lot_id].held == 10
    with pytest.raises(InsufficientCreditsError):
        consume(ledger, 6)
    assert hold.status == "active"


def test_capture_takes_at_most_what_is_held_and_releases_the_rest() -> None:
    ledger = make_ledger()
    grant(ledger, 100)
    hold = place(ledger, 40)
    with pytest.raises(HoldNotActiveError):
        ledger.run(c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold.hold_id, amount=41))
    entry = ledger.run(
        c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold.hold_id, amount=25)
    ).value
    assert (entry.type, entry.amount, entry.balance, entry.held) == ("capture", -25, 75, 0)
    with pytest.raises(HoldNotActiveError):
        ledger.run(c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold.hold_id))


def test_a_captured_hold_can_be_refunded_like_a_consumption() -> None:
    ledger = make_ledger()
    grant(ledger, 100)
    hold = place(ledger, 40)
    entry = ledger.run(c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold.hold_id)).value
    ledger.run(
        c.RefundConsumption(
            tenant_id=T, account_id=A, consumption_id=entry.consumption_id, reason="failed"
        )
    )
    assert account(ledger).balance == 100


def test_release_returns_the_reserved_credits() -> None:
    ledger = make_ledger()
    grant(ledger, 100)
    hold = place(ledger, 40)
    entry = ledger.run(c.ReleaseHold(tenant_id=T, account_id=A, hold_id=hold.hold_id)).value
    assert (entry.type, entry.amount, entry.available, entry.held) == ("release", 0, 100, 0)
    with pytest.raises(HoldNotActiveError):
        ledger.run(c.ReleaseHold(tenant_id=T, account_id=A, hold_id=hold.hold_id))


def test_a_hold_expires_and_can_no_longer_be_captured() -> None:
    ledger = make_ledger()
    grant(ledger, 100)
    hold = place(ledger, 40, expires_in_s=60)
    ledger.now = START + timedelta(seconds=61)
    with pytest.raises(HoldNotActiveError):
        ledger.run(c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold.hold_id))
    ledger.run(c.ExpireCredits(tenant_id=T, account_id=A))
    assert account(ledger).available == 100


def test_an_unknown_hold_is_not_found() -> None:
    ledger = make_ledger()
    with pytest.raises(HoldNotFoundError):
        ledger.run(c.ReleaseHold(tenant_id=T, account_id=A, hold_id="nope"))


# ------------------------------------------------------------------ expiry and adjustments


def test_a_lot_past_its_expiry_expires_what_is_left() -> None:
    ledger = make_ledger()
    lot = grant(ledger, 50, expires_at=START + timedelta(days=1))
    grant(ledger, 5)
    consume(ledger, 20)
    ledger.now = START + timedelta(days=2)
    ledger.run(c.ExpireCredits(tenant_id=T, account_id=A))
    expired = [e for e in ledger.events if isinstance(e, Account.LotExpired)]
    assert [(e.lot_id, e.amount) for e in expired] == [(lot.lot_id, -30)]
    assert account(ledger).balance == 5
    assert account(ledger).totals["expired"] == 30


def test_held_credits_do_not_expire_until_the_hold_ends() -> None:
    ledger = make_ledger()
    grant(ledger, 50, expires_at=START + timedelta(hours=1))
    hold = place(ledger, 20, expires_in_s=86_400)
    ledger.now = START + timedelta(hours=2)
    ledger.run(c.ExpireCredits(tenant_id=T, account_id=A))
    assert (account(ledger).balance, account(ledger).held) == (20, 20)
    ledger.run(c.ReleaseHold(tenant_id=T, account_id=A, hold_id=hold.hold_id))
    assert account(ledger).balance == 0


def test_an_adjustment_may_not_take_balance_below_the_overdraft_limit() -> None:
    ledger = make_ledger(overdraft_limit=5)
    grant(ledger, 10)
    assert (
        ledger.run(
            c.AdjustBalance(tenant_id=T, account_id=A, amount=-15, reason="fix")
        ).value.balance
        == -5
    )
    with pytest.raises(InsufficientCreditsError):
        ledger.run(c.AdjustBalance(tenant_id=T, account_id=A, amount=-1, reason="fix"))
    assert (
        ledger.run(c.AdjustBalance(tenant_id=T, account_id=A, amount=7, reason="fix")).value.balance
        == 2
    )


def test_every_entry_states_balance_available_and_held_after_it() -> None:
    ledger = make_ledger()
    grant(ledger, 30)
    entry = place(ledger, 10)
    assert entry.amount == 10
    used = consume(ledger, 5)
    assert (used.balance, used.held, used.available) == (25, 10, 15)

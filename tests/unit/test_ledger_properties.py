"""Random command sequences against a plain-Python model of one account.

The model predicts which commands succeed and what balance and held become; after every step
the account must agree with it and keep its invariants: balance = sum of lots, available =
balance - held, never below -overdraft, totals add up, nothing past its expiry left unheld.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.accounts.account import Account
from ledger.accounts.lots import OVERDRAFT_LOT_ID
from ledger.errors import LedgerError
from ledger.ids import account_aggregate_id
from tests import envelopes as c
from tests.unit.fakes import InMemoryLedger

T, A = "prop", "acct"
OVERDRAFT = 50

amounts = st.integers(min_value=1, max_value=400)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = InMemoryLedger()
        settings_ = c.TenantSettings(overdraft_limit=OVERDRAFT)
        self.ledger.run(c.CreateTenant(tenant_id=T, name="P", settings=settings_))
        self.ledger.run(c.OpenAccount(tenant_id=T, account_id=A))
        self.balance = 0
        self.holds: dict[str, tuple[int, Any]] = {}  # hold_id -> (amount, expires_at)
        self.refundable: dict[str, int] = {}  # consumption_id -> credits still refundable
        self.expired_seen = 0

    # --------------------------------------------------------------- helpers

    @property
    def account(self) -> Account:
        return self.ledger.get(account_aggregate_id(T, A))

    @property
    def held(self) -> int:
        return sum(amount for amount, _ in self.holds.values())

    def can_take(self, amount: int) -> bool:
        return self.balance - self.held - amount >= -OVERDRAFT

    def run(self, command: c.Command, expect_ok: bool) -> Any:
        try:
            outcome = self.ledger.run(command)
        except LedgerError as error:
            assert not expect_ok, f"{command} refused: {error.detail}"
            return None
        assert expect_ok, f"{command} should have been refused"
        self.take_expiry()
        return outcome.value

    def take_expiry(self) -> None:
        """Credits expired by the command's sweep leave the model's balance too."""
        expired = self.account.totals["expired"]
        assert expired >= self.expired_seen
        self.balance -= expired - self.expired_seen
        self.expired_seen = expired
        for lot in self.account.lots.values():
            if lot.expires_at is not None and lot.expires_at <= self.ledger.now:
                assert lot.remaining == lot.held, "expired credits left unheld"

    # ----------------------------------------------------------------- rules

    @rule(
        amount=amounts,
        priority=st.integers(0, 3),
        expires_in_h=st.none() | st.integers(1, 6),
    )
    def grant(self, amount: int, priority: int, expires_in_h: int | None) -> None:
        expires_at = (
            None if expires_in_h is None else self.ledger.now + timedelta(hours=expires_in_h)
        )
        command = c.GrantCredits(
            tenant_id=T,
            account_id=A,
            amount=amount,
            reason="g",
            priority=priority,
            expires_at=expires_at,
        )
        if self.run(command, expect_ok=True) is not None:
            self.balance += amount

    @rule(amount=amounts)
    def consume(self, amount: int) -> None:
        ok = self.can_take(amount)
        entry = self.run(
            c.ConsumeCredits(tenant_id=T, account_id=A, amount=amount, operation="op"), ok
        )
        if entry is not None:
            self.balance -= amount
            self.refundable[entry.consumption_id] = amount

    @rule(amount=amounts, expires_in_s=st.integers(60, 7200))
    def hold(self, amount: int, expires_in_s: int) -> None:
        ok = self.can_take(amount)
        command = c.PlaceHold(
            tenant_id=T, account_id=A, amount=amount, operation="op", expires_in_s=expires_in_s
        )
        hold = self.run(command, ok)
        if hold is not None:
            self.holds[hold.hold_id] = (amount, hold.expires_at)

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), release=st.booleans())
    def end_hold(self, data: st.DataObject, release: bool) -> None:
        hold_id = list(self.holds)[data.draw(st.integers(0, len(self.holds) - 1))]
        amount, _ = self.holds[hold_id]
        if release:
            self.run(c.ReleaseHold(tenant_id=T, account_id=A, hold_id=hold_id), True)
            del self.holds[hold_id]
            return
        capture = data.draw(st.none() | st.integers(1, amount + 5))
        ok = capture is None or capture <= amount
        entry = self.run(
            c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold_id, amount=capture), ok
        )
        if entry is not None:
            taken = amount if capture is None else capture
            del self.holds[hold_id]
            self.balance -= taken
            self.refundable[entry.consumption_id] = taken

    @precondition(lambda self: self.refundable)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        consumption_id = list(self.refundable)[data.draw(st.integers(0, len(self.refundable) - 1))]
        left = self.refundable[consumption_id]
        amount = data.draw(st.none() | st.integers(1, max(1, left + 5)))
        ok = left > 0 and (amount is None or amount <= left)
        command = c.RefundConsumption(
            tenant_id=T, account_id=A, consumption_id=consumption_id, amount=amount, reason="r"
        )
        if self.run(command, ok) is not None:
            given = left if amount is None else amount
            self.balance += given
            self.refundable[consumption_id] -= given

    @rule(amount=st.integers(-400, 400).filter(bool))
    def adjust(self, amount: int) -> None:
        ok = amount > 0 or self.can_take(-amount)
        if (
            self.run(c.AdjustBalance(tenant_id=T, account_id=A, amount=amount, reason="fix"), ok)
            is not None
        ):
            self.balance += amount

    @rule(seconds=st.integers(1, 4 * 3600))
    def time_passes(self, seconds: int) -> None:
        self.ledger.now += timedelta(seconds=seconds)
        self.holds = {k: v for k, v in self.holds.items() if v[1] > self.ledger.now}
        self.run(c.ExpireCredits(tenant_id=T, account_id=A), True)

    # ------------------------------------------------------------ invariants

    @invariant()
    def agrees_with_the_model(self) -> None:
        account = self.account
        assert account.balance == self.balance
        assert account.held == self.held
        assert set(account.holds) == set(self.holds)

    @invariant()
    def keeps_its_invariants(self) -> None:
        account = self.account
        lots = account.lots.values()
        assert account.balance == sum(lot.remaining for lot in lots)
        assert account.held == sum(lot.held for lot in lots)
        assert account.available == account.balance - account.held
        assert account.available >= -OVERDRAFT
        for lot in lots:
            if lot.lot_id == OVERDRAFT_LOT_ID:
                assert lot.remaining <= 0 <= lot.held
            else:
                assert 0 <= lot.held <= lot.remaining
        t = account.totals
        flow = (
            t["granted"]
            + t["purchased"]
            + t["refunded"]
            + t["adjusted"]
            - t["consumed"]
            - t["expired"]
        )
        assert flow == account.balance

    @invariant()
    def entries_replay_to_the_same_balance(self) -> None:
        events = [e for e in self.ledger.events if isinstance(e, Account.Event | Account.Opened)]
        assert sum(e.amount for e in events) == self.account.balance
        assert events[-1].balance == self.account.balance
        assert events[-1].held == self.account.held


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
test_ledger_rules_hold_for_any_command_sequence = LedgerMachine.TestCase

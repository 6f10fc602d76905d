"""The rule of lots (docs/api.md, "Lots"): credits coming in join an open lot of the same
source, priority and expiry when that cannot change what burns first, so state stays bounded
however long an account lives; burn-down order stays priority, earliest expiry (none last),
oldest. Through the real handlers, on the in-memory ledger."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from eventsourcing.domain import Snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.accounts.account import Account
from ledger.accounts.lots import OVERDRAFT_LOT_ID, Lot, LotPlacer, LotTerms, burn_order_key
from ledger.errors import LedgerError, LimitExceededError
from ledger.ids import account_aggregate_id
from ledger.limits import LOTS_PER_ACCOUNT_MAX
from tests import envelopes as c
from tests.unit.fakes import START, InMemoryLedger

T = "acme"
A = "ada@example.com"
SOON = START + timedelta(days=3)


def make_ledger(**settings: object) -> InMemoryLedger:
    ledger = InMemoryLedger()
    ledger.run(c.CreateTenant(tenant_id=T, name="Acme", settings=c.TenantSettings(**settings)))  # type: ignore[arg-type]
    ledger.run(c.OpenAccount(tenant_id=T, account_id=A))
    return ledger


def account(ledger: InMemoryLedger) -> Account:
    return ledger.get(account_aggregate_id(T, A))


def grant(ledger: InMemoryLedger, amount: int, **fields: Any) -> Any:
    command = c.GrantCredits(tenant_id=T, account_id=A, amount=amount, reason="g", **fields)
    return ledger.run(command).value


def purchase(ledger: InMemoryLedger, amount: int, ref: str, **fields: Any) -> Any:
    price = c.Price(amount="1", currency="USD")
    command = c.PurchaseCredits(
        tenant_id=T, account_id=A, amount=amount, price=price, payment_ref=ref, **fields
    )
    return ledger.run(command).value


def consume(ledger: InMemoryLedger, amount: int) -> Any:
    command = c.ConsumeCredits(tenant_id=T, account_id=A, amount=amount, operation="op")
    return ledger.run(command).value


def refund(ledger: InMemoryLedger, consumption_id: str, amount: int | None = None) -> Any:
    command = c.RefundConsumption(
        tenant_id=T, account_id=A, consumption_id=consumption_id, reason="r", amount=amount
    )
    return ledger.run(command).value


def remaining(ledger: InMemoryLedger) -> dict[str, int]:
    return {lot_id: lot.remaining for lot_id, lot in account(ledger).lots.items()}


def one_lot_each(self: LotPlacer, terms: LotTerms, new_lot_id: str) -> tuple[str, bool]:
    """The rule before lots joined: every credit in makes a lot."""
    self.made.append((new_lot_id, terms))
    return new_lot_id, True


# ------------------------------------------------------------------ joining


def test_credits_of_the_same_source_priority_and_expiry_join_one_lot() -> None:
    ledger = make_ledger()
    first = grant(ledger, 10, expires_at=SOON)
    second = grant(ledger, 5, expires_at=SOON)
    assert second.lot_id == first.lot_id  # the entry names the lot it joined
    assert (second.amount, second.balance) == (5, 15)
    assert remaining(ledger) == {first.lot_id: 15}
    assert account(ledger).totals["granted"] == 15


def test_credits_of_another_source_priority_or_expiry_make_a_lot_of_their_own() -> None:
    ledger = make_ledger()
    lots = {
        grant(ledger, 10).lot_id,
        grant(ledger, 10, priority=5).lot_id,
        grant(ledger, 10, expires_at=SOON).lot_id,
        purchase(ledger, 10, "pi_1").lot_id,
    }
    assert len(lots) == 4 == len(account(ledger).lots)


def test_credits_join_a_lot_only_when_it_is_the_newest_of_their_priority_and_expiry() -> None:
    """A purchase between two grants of the same terms keeps them apart: the later grant's
    credits burn after the purchase's, as a lot of their own would."""
    ledger = make_ledger()
    older = grant(ledger, 10)
    bought = purchase(ledger, 10, "pi_1")
    newer = grant(ledger, 10)
    newest = grant(ledger, 10)
    assert newer.lot_id not in (older.lot_id, bought.lot_id)
    assert newest.lot_id == newer.lot_id
    consume(ledger, 15)
    assert remaining(ledger) == {bought.lot_id: 5, newer.lot_id: 20}


def test_credits_joining_a_lot_leave_what_holds_reserve_on_it_held() -> None:
    ledger = make_ledger()
    lot = grant(ledger, 10).lot_id
    hold = ledger.run(c.PlaceHold(tenant_id=T, account_id=A, amount=8, operation="op")).value
    assert grant(ledger, 5).lot_id == lot
    assert (account(ledger).lots[lot].remaining, account(ledger).lots[lot].held) == (15, 8)
    ledger.run(c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold.hold_id))
    assert remaining(ledger) == {lot: 7}


def test_credits_coming_in_repay_debt_before_joining_a_lot() -> None:
    ledger = make_ledger(overdraft_limit=20)
    lot = grant(ledger, 10).lot_id
    ledger.run(c.PlaceHold(tenant_id=T, account_id=A, amount=10, operation="op"))
    consume(ledger, 15)  # the held lot cannot pay: all debt
    entry = grant(ledger, 20)
    assert entry.lot_id == lot
    assert remaining(ledger) == {lot: 15}


def test_positive_adjustments_join_the_adjustment_lot() -> None:
    ledger = make_ledger()
    first = ledger.run(c.AdjustBalance(tenant_id=T, account_id=A, amount=5, reason="fix")).value
    again = ledger.run(c.AdjustBalance(tenant_id=T, account_id=A, amount=7, reason="fix")).value
    assert again.lot_id == first.lot_id
    assert remaining(ledger) == {first.lot_id: 12}


# ------------------------------------------------------------------ refunds


def test_a_refund_to_a_used_up_lot_joins_the_newest_lot_of_its_terms_and_source() -> None:
    ledger = make_ledger()
    used_up = grant(ledger, 10).lot_id
    spent = consume(ledger, 10)
    newer = grant(ledger, 10).lot_id
    refund(ledger, spent.consumption_id, 4)
    assert remaining(ledger) == {newer: 14}
    purchase(ledger, 1, "pi_1")  # now the newest of those terms is a purchase's lot
    refund(ledger, spent.consumption_id)
    assert remaining(ledger)[used_up] == 6  # made again, burning after the purchase


def test_what_a_refund_cannot_give_back_to_its_lots_joins_the_refund_lot() -> None:
    ledger = make_ledger()
    grant(ledger, 10, expires_at=START + timedelta(hours=1))
    first, second = consume(ledger, 5), consume(ledger, 5)
    ledger.now = START + timedelta(hours=2)
    one = refund(ledger, first.consumption_id)
    two = refund(ledger, second.consumption_id)
    (lot,) = account(ledger).lots.values()
    assert (lot.source, lot.remaining, lot.expires_at) == ("refund", 10, None)
    assert one.balance == 5 and two.balance == 10


# ------------------------------------------------------------------ the limit


def test_at_the_lot_limit_credits_join_their_sources_lot_and_new_terms_are_refused() -> None:
    ledger = make_ledger()
    granted = grant(ledger, 10).lot_id
    purchase(ledger, 10, "pi_1")  # the newest lot of priority 100 without expiry
    for day in range(LOTS_PER_ACCOUNT_MAX - 2):
        grant(ledger, 1, expires_at=START + timedelta(days=1 + day))
    assert len(account(ledger).lots) == LOTS_PER_ACCOUNT_MAX
    assert grant(ledger, 5).lot_id == granted  # out of turn, rather than refused
    assert grant(ledger, 1, expires_at=START + timedelta(days=1)).type == "grant"
    version = account(ledger).version
    with pytest.raises(LimitExceededError):
        grant(ledger, 1, priority=7)
    assert account(ledger).version == version
    assert len(account(ledger).lots) == LOTS_PER_ACCOUNT_MAX


# ------------------------------------------------------------------ old events


def test_events_stored_when_every_grant_made_a_lot_replay_to_a_lot_per_grant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = make_ledger()
    monkeypatch.setattr(LotPlacer, "place", one_lot_each)
    first, second = grant(ledger, 10).lot_id, grant(ledger, 10).lot_id
    monkeypatch.undo()
    assert first != second
    replayed: Any = None
    for event in ledger.events:
        if event.originator_id == account(ledger).id:
            replayed = event.mutate(replayed)
    assert {k: lot.remaining for k, lot in replayed.lots.items()} == {first: 10, second: 10}
    assert grant(ledger, 1).lot_id == second  # new credits join the newest


# ------------------------------------------------------------------ exactly as before


def by_terms(lots: dict[str, Lot]) -> Counter[tuple[Any, ...]]:
    """Credits (and held credits) per source, priority and expiry: what burn-down sees."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for lot in lots.values():
        terms = (lot.source, lot.priority, lot.expires_at)
        counts[(*terms, "remaining")] += lot.remaining
        counts[(*terms, "held")] += lot.held
    return +counts


EXPIRIES = [None, START + timedelta(days=2), START + timedelta(days=4)]
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("grant"),
            st.integers(1, 60),
            st.sampled_from([0, 100]),
            st.sampled_from([0, 1, 2]),
        ),
        st.tuples(st.just("purchase"), st.integers(1, 60), st.sampled_from([0, 1, 2])),
        st.tuples(st.just("adjust"), st.integers(-40, 40).filter(bool)),
        st.tuples(st.just("consume"), st.integers(1, 80)),
        st.tuples(st.just("hold"), st.integers(1, 50)),
        st.tuples(st.just("capture"), st.integers(0, 5), st.none() | st.integers(1, 50)),
        st.tuples(st.just("release"), st.integers(0, 5)),
        st.tuples(st.just("refund"), st.integers(0, 8), st.none() | st.integers(1, 40)),
        st.tuples(st.just("later"), st.integers(1, 40)),
    ),
    max_size=40,
)


class Twin:
    """One ledger under the rule of lots, one under a lot per credit in, fed the same steps.
    A consumption's or hold's id differs between them (versions differ by expire entries), so
    each is kept as the pair."""

    def __init__(self) -> None:
        self.joined = make_ledger(overdraft_limit=30)
        self.separate = make_ledger(overdraft_limit=30)
        self.consumptions: list[tuple[str, str]] = []
        self.holds: list[tuple[str, str]] = []
        self.payments = 0

    def command(self, step: tuple[Any, ...], ids: tuple[str, str] | None, which: int) -> Any:
        name = step[0]
        if name == "grant":
            _, amount, priority, expiry = step
            return c.GrantCredits(
                tenant_id=T,
                account_id=A,
                amount=amount,
                reason="g",
                priority=priority,
                expires_at=EXPIRIES[expiry],
            )
        if name == "purchase":
            price = c.Price(amount="1", currency="USD")
            return c.PurchaseCredits(
                tenant_id=T,
                account_id=A,
                amount=step[1],
                price=price,
                payment_ref=f"pi_{self.payments}",
                expires_at=EXPIRIES[step[2]],
            )
        if name == "adjust":
            return c.AdjustBalance(tenant_id=T, account_id=A, amount=step[1], reason="fix")
        if name == "consume":
            return c.ConsumeCredits(tenant_id=T, account_id=A, amount=step[1], operation="op")
        if name == "hold":
            return c.PlaceHold(
                tenant_id=T, account_id=A, amount=step[1], operation="op", expires_in_s=86_400
            )
        assert ids is not None
        if name == "capture":
            return c.CaptureHold(tenant_id=T, account_id=A, hold_id=ids[which], amount=step[2])
        if name == "release":
            return c.ReleaseHold(tenant_id=T, account_id=A, hold_id=ids[which])
        return c.RefundConsumption(
            tenant_id=T, account_id=A, consumption_id=ids[which], reason="r", amount=step[2]
        )

    def ids_of(self, step: tuple[Any, ...]) -> tuple[str, str] | None:
        pool = {"capture": self.holds, "release": self.holds, "refund": self.consumptions}
        chosen = pool.get(step[0])
        if chosen is None:
            return None
        return chosen[step[1] % len(chosen)] if chosen else ("none", "none")

    def run(self, step: tuple[Any, ...]) -> None:
        if step[0] == "later":
            for ledger in (self.joined, self.separate):
                ledger.now += timedelta(hours=step[1])
            step = ("consume", 1)  # any command sweeps what expired
        ids = self.ids_of(step)
        answers: list[Any] = []
        for which, ledger in enumerate((self.joined, self.separate)):
            with pytest.MonkeyPatch.context() as patch:
                if which == 1:
                    patch.setattr(LotPlacer, "place", one_lot_each)
                try:
                    answers.append(ledger.run(self.command(step, ids, which)).value)
                except LedgerError as error:
                    answers.append(type(error))
        self.payments += step[0] == "purchase"
        joined, separate = answers
        if isinstance(joined, type) or isinstance(separate, type):
            assert joined == separate, step
            return
        if step[0] == "hold":
            self.holds.append((joined.hold_id, separate.hold_id))
        elif joined.consumption_id is not None and step[0] != "refund":
            self.consumptions.append((joined.consumption_id, separate.consumption_id))

    def agree(self) -> None:
        joined = self.joined.get(account_aggregate_id(T, A))
        separate = self.separate.get(account_aggregate_id(T, A))
        assert (joined.balance, joined.held, joined.totals) == (
            separate.balance,
            separate.held,
            separate.totals,
        )
        assert by_terms(joined.lots) == by_terms(separate.lots)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_lots_that_join_burn_exactly_as_a_lot_per_credit_in_would(plan: list[Any]) -> None:
    """Whatever the commands, an account whose credits join lots holds, per source, priority
    and expiry, the same credits (held and not) as one making a lot per credit in, and
    refuses the same commands."""
    twin = Twin()
    for step in plan:
        twin.run(step)
        twin.agree()


# ------------------------------------------------------------------ ten years


def check_burn_down(before: dict[str, Lot], draws: list[Any]) -> None:
    """The draws took unheld credits in burn-down order: every lot that burns before the last
    one drawn was emptied of them, and none after it was touched."""
    order = sorted(
        (lot for lot in before.values() if lot.lot_id != OVERDRAFT_LOT_ID), key=burn_order_key
    )
    drawn = {draw.lot_id: draw.amount for draw in draws}
    taken = [lot for lot in order if lot.available > 0 and lot.lot_id in drawn]
    if not taken:
        return
    last = order.index(taken[-1])
    for lot in order[:last]:
        assert drawn.get(lot.lot_id, 0) == lot.available, (lot, draws)
    for lot in order[last + 1 :]:
        assert lot.lot_id not in drawn, (lot, draws)


def ten_years(ledger: InMemoryLedger, spend: int) -> tuple[int, int]:
    """Every day for ten years: a grant of 10, a consumption of up to `spend`; every week an
    estimate held and captured; every month a promotion that expires in 30 days and a partial
    refund; every quarter a purchase. Returns (most lots ever open, consumptions checked)."""
    most_lots = checked = 0
    last_consumption = None
    for day in range(3650):
        ledger.now = START + timedelta(days=day, hours=1)
        grant(ledger, 10, metadata={"day": day})
        if day % 30 == 0:
            grant(ledger, 100, priority=50, expires_at=ledger.now + timedelta(days=30))
        if day % 90 == 45:
            purchase(ledger, 500, f"pi_{day}")
        if day % 7 == 3 and account(ledger).available >= 30:
            hold = ledger.run(
                c.PlaceHold(tenant_id=T, account_id=A, amount=30, operation="render")
            ).value
            ledger.run(c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold.hold_id, amount=25))
        if day % 30 == 15 and last_consumption is not None:
            refund(ledger, last_consumption, 3)
        before = copy.deepcopy(account(ledger).lots)
        want = min(spend, account(ledger).available)
        if want > 0:
            entry = consume(ledger, want)
            event = ledger.events[-1]
            assert isinstance(event, Account.CreditsConsumed) and event.amount == -want
            check_burn_down(before, event.draws)
            last_consumption = entry.consumption_id
            checked += 1
        most_lots = max(most_lots, len(account(ledger).lots))
    return most_lots, checked


def snapshot_bytes(state: Account) -> int:
    taken = Snapshot.take(state).state
    return len(msgspec.json.encode(msgspec.to_builtins(taken, builtin_types=(datetime,))))


def test_an_account_granted_credits_every_day_for_ten_years_keeps_a_few_lots() -> None:
    ledger = make_ledger()
    most_lots, checked = ten_years(ledger, spend=16)
    state = account(ledger)
    assert checked > 3000  # burn-down order checked on every one of them
    assert state.version > 3650 * 2
    # Credits of priority 100 without expiry (grants and purchases), this month's promotion,
    # the refund lot.
    assert most_lots <= 4, most_lots
    assert snapshot_bytes(state) < 3_000
    flow = sum(state.totals[name] for name in ("granted", "purchased", "refunded", "adjusted"))
    assert flow - state.totals["consumed"] - state.totals["expired"] == state.balance


def test_an_account_saving_for_ten_years_keeps_a_lot_per_unspent_run_of_one_source() -> None:
    """Spending less than comes in, the unspent credits of priority 100 without expiry span
    many quarterly purchases: a run of grants between two purchases is one lot, so lots grow
    with the purchases not yet spent, far from the limit after ten years."""
    ledger = make_ledger()
    most_lots, _ = ten_years(ledger, spend=8)
    state = account(ledger)
    unspent_purchases = sum(1 for lot in state.lots.values() if lot.source == "purchase")
    assert most_lots <= 2 * unspent_purchases + 3 < LOTS_PER_ACCOUNT_MAX // 10
    assert snapshot_bytes(state) < 20_000

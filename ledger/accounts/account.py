"""The Account aggregate: lots, active holds and totals. Its state stays bounded.

Every public method decides first (raising a LedgerError and changing nothing) and only then
triggers its events: a failed command never leaves a half-applied account behind.
Every event carries the account's `balance` and `held` after it, so an entry (and an auditor)
needs nothing but the event itself.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import msgspec
from eventsourcing.domain import TZINFO, Aggregate

from ledger.accounts.lots import (
    OVERDRAFT_LOT_ID,
    Draw,
    Lot,
    LotTerms,
    Restore,
    ReturnableDraw,
    burn_order_key,
    debt_of,
    new_overdraft_lot,
    plan_capture,
    plan_draws,
    plan_restores,
)
from ledger.errors import HoldNotActiveError, InsufficientCreditsError, LimitExceededError
from ledger.limits import ACTIVE_HOLDS_PER_ACCOUNT_MAX, BALANCE_MAX, LOTS_PER_ACCOUNT_MAX
from ledger.topics import stored_as


@functools.cache
def _field_count(event_class: type) -> int:
    return len(dataclasses.fields(event_class))


TOTAL_NAMES = ("granted", "purchased", "consumed", "refunded", "expired", "adjusted")


class ActiveHold(msgspec.Struct, frozen=True, kw_only=True):
    """A hold the account still reserves credits for, on specific lots."""

    hold_id: str
    amount: int
    operation: str
    expires_at: datetime
    reservations: list[Draw]


@stored_as("ledger.account")
class Account(Aggregate):
    # How a snapshot's plain JSON becomes the account's typed state again (the mapper reads it).
    typed_state: ClassVar[dict[str, Any]] = {
        "lots": dict[str, Lot],
        "holds": dict[str, ActiveHold],
    }

    class Event(Aggregate.Event):
        tenant_id: str
        account_id: str
        amount: int  # the signed change of balance
        balance: int  # after this event
        held: int  # after this event

        entry_type: ClassVar[str] = ""

        def apply(self, aggregate: Any) -> None:
            self.apply_to(aggregate)
            assert aggregate.balance == self.balance, (aggregate.balance, self.balance)
            assert aggregate.held == self.held, (aggregate.held, self.held)

        def apply_to(self, account: Account) -> None:
            raise NotImplementedError

    class Opened(Aggregate.Created):
        tenant_id: str
        account_id: str
        metadata: dict[str, Any]
        amount: int
        balance: int
        held: int
        entry_type: ClassVar[str] = "open"

        def apply(self, aggregate: Any) -> None:
            """The state is set by Account.__init__."""

    class CreditsAdded(Event):
        """A new lot: grant, purchase or positive adjustment. Debt is repaid first."""

        lot_id: str
        source: str
        expires_at: datetime | None
        priority: int
        debt_repaid: int

        def apply_to(self, account: Account) -> None:
            account.repay_debt(self.debt_repaid)
            lot_amount = self.amount - self.debt_repaid
            if lot_amount > 0:
                account.add_lot(
                    self.lot_id, self.source, lot_amount, self.expires_at, self.priority
                )
            account.totals[self.total_name] += self.amount

        total_name: ClassVar[str] = ""

    class CreditsGranted(CreditsAdded):
        reason: str
        metadata: dict[str, Any]
        entry_type: ClassVar[str] = "grant"
        total_name: ClassVar[str] = "granted"

    class CreditsPurchased(CreditsAdded):
        payment_ref: str
        price: dict[str, str]
        metadata: dict[str, Any]
        entry_type: ClassVar[str] = "purchase"
        total_name: ClassVar[str] = "purchased"

    class CreditsConsumed(Event):
        consumption_id: str
        operation: str
        resource: str | None
        user_id: str | None
        metadata: dict[str, Any]
        draws: list[Draw]
        # Source, expiry and priority of each lot drawn from, so a refund can give credits
        # back to them (ADR 0002). Version 1 (before issue 6) had none.
        drawn_lots: dict[str, LotTerms] | None
        entry_type: ClassVar[str] = "consume"
        class_version: ClassVar[int] = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["drawn_lots"] = None

        def apply_to(self, account: Account) -> None:
            account.take_draws(self.draws)
            account.totals["consumed"] += -self.amount

    class CreditsRefunded(Event):
        consumption_id: str
        operation: str  # the refunded consumption's, so usage reports need no lookup
        reason: str
        debt_repaid: int
        restores: list[Restore]
        entry_type: ClassVar[str] = "refund"

        def apply_to(self, account: Account) -> None:
            account.repay_debt(self.debt_repaid)
            for restore in self.restores:
                lot = account.lots.get(restore.lot_id)
                if lot is None:
                    terms = restore.lot
                    assert terms is not None, restore
                    account.add_lot(
                        restore.lot_id,
                        terms.source,
                        restore.amount,
                        terms.expires_at,
                        terms.priority,
                    )
                else:
                    lot.remaining += restore.amount
            account.totals["refunded"] += self.amount

    class HoldPlaced(Event):
        hold_id: str
        operation: str
        hold_amount: int
        expires_at: datetime
        metadata: dict[str, Any]
        reservations: list[Draw]
        entry_type: ClassVar[str] = "hold"

        def apply_to(self, account: Account) -> None:
            for reservation in self.reservations:
                account.lot_for(reservation.lot_id).held += reservation.amount
            account.holds[self.hold_id] = ActiveHold(
                hold_id=self.hold_id,
                amount=self.hold_amount,
                operation=self.operation,
                expires_at=self.expires_at,
                reservations=self.reservations,
            )

    class HoldEnded(Event):
        """Base of capture, release and expiry: the whole reservation is lifted."""

        hold_id: str
        hold_amount: int

        def apply_to(self, account: Account) -> None:
            hold = account.holds.pop(self.hold_id)
            for reservation in hold.reservations:
                account.lot_for(reservation.lot_id).held -= reservation.amount
            self.after_release(account)
            account.drop_empty_lots()

        def after_release(self, account: Account) -> None:
            pass

    class HoldCaptured(HoldEnded):
        consumption_id: str
        operation: str
        draws: list[Draw]
        drawn_lots: dict[str, LotTerms] | None  # as in CreditsConsumed
        entry_type: ClassVar[str] = "capture"
        class_version: ClassVar[int] = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["drawn_lots"] = None

        def after_release(self, account: Account) -> None:
            account.take_draws(self.draws)
            account.totals["consumed"] += -self.amount

    class HoldReleased(HoldEnded):
        entry_type: ClassVar[str] = "release"

    class HoldExpired(HoldEnded):
        entry_type: ClassVar[str] = "release"

    class LotExpired(Event):
        lot_id: str
        entry_type: ClassVar[str] = "expire"

        def apply_to(self, account: Account) -> None:
            account.lots[self.lot_id].remaining += self.amount
            account.totals["expired"] += -self.amount
            account.drop_empty_lots()

    class BalanceAdjusted(Event):
        reason: str
        lot_id: str | None  # the new lot of a positive adjustment
        debt_repaid: int
        draws: list[Draw]  # what a negative adjustment took
        entry_type: ClassVar[str] = "adjust"

        def apply_to(self, account: Account) -> None:
            if self.amount > 0:
                account.repay_debt(self.debt_repaid)
                if self.amount > self.debt_repaid:
                    assert self.lot_id is not None
                    account.add_lot(
                        self.lot_id, "adjustment", self.amount - self.debt_repaid, None, 0
                    )
            else:
                account.take_draws(self.draws)
            account.totals["adjusted"] += self.amount

    # ---------------------------------------------------------------- state

    def __init__(self, tenant_id: str, account_id: str, metadata: dict[str, Any], **_: Any) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.metadata = metadata
        self.lots: dict[str, Lot] = {}
        self.holds: dict[str, ActiveHold] = {}
        self.totals: dict[str, int] = dict.fromkeys(TOTAL_NAMES, 0)
        self.lot_seq = 0

    @classmethod
    def open(
        cls, aggregate_id: UUID, tenant_id: str, account_id: str, metadata: dict[str, Any]
    ) -> Account:
        return cls._create(
            cls.Opened,
            id=aggregate_id,
            tenant_id=tenant_id,
            account_id=account_id,
            metadata=metadata,
            amount=0,
            balance=0,
            held=0,
        )

    @property
    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots.values())

    @property
    def held(self) -> int:
        return sum(hold.amount for hold in self.holds.values())

    @property
    def available(self) -> int:
        return self.balance - self.held

    def lot_for(self, lot_id: str) -> Lot:
        if lot_id == OVERDRAFT_LOT_ID and lot_id not in self.lots:
            self.lot_seq += 1
            self.lots[lot_id] = new_overdraft_lot(self.lot_seq)
        return self.lots[lot_id]

    def add_lot(
        self, lot_id: str, source: str, amount: int, expires_at: datetime | None, priority: int
    ) -> None:
        self.lot_seq += 1
        self.lots[lot_id] = Lot(
            lot_id=lot_id,
            source=source,
            remaining=amount,
            held=0,
            expires_at=expires_at,
            priority=priority,
            seq=self.lot_seq,
        )

    def drawn_lots(self, draws: list[Draw]) -> dict[str, LotTerms]:
        """Source, expiry and priority of the lots the draws take from, as they are now."""
        terms = {}
        for draw in draws:
            lot = self.lots.get(draw.lot_id)
            if lot is not None:
                terms[draw.lot_id] = LotTerms(
                    source=lot.source, expires_at=lot.expires_at, priority=lot.priority
                )
        return terms

    def repay_debt(self, amount: int) -> None:
        if amount:
            self.lots[OVERDRAFT_LOT_ID].remaining += amount
            self.drop_empty_lots()

    def take_draws(self, draws: list[Draw]) -> None:
        for draw in draws:
            self.lot_for(draw.lot_id).remaining -= draw.amount
        self.drop_empty_lots()

    def drop_empty_lots(self) -> None:
        empty = [k for k, lot in self.lots.items() if lot.remaining == 0 and lot.held == 0]
        for lot_id in empty:
            del self.lots[lot_id]

    def _trigger(self, event_class: type[Aggregate.Event], **fields: Any) -> None:
        """What the library's `trigger_event` does, for the Account's own events: the next event
        of the sequence, applied, then pending.

        Built as the library's mapper rebuilds a stored event (its attributes set at once, not
        through the frozen dataclass's `__init__`, which sets each of some twenty attributes by
        `object.__setattr__` and checks the id's type), since an event is made per command on
        the writer's thread (docs/BENCHMARKS.md). Every field must be given: counted below.
        """
        event = object.__new__(event_class)
        state = {
            "originator_id": self.id,
            "originator_version": self.version + 1,
            "timestamp": datetime.now(TZINFO),  # what create_timestamp() gives, one call less
            **fields,
        }
        assert len(state) == _field_count(event_class), (event_class, sorted(state))
        object.__setattr__(event, "__dict__", state)
        event.mutate(self)
        self._pending_events.append(event)

    # ------------------------------------------------------------- decisions

    def _check_room(self, amount: int) -> None:
        if self.balance + amount > BALANCE_MAX:
            raise LimitExceededError(f"balance may not exceed {BALANCE_MAX}")

    def _check_can_take(
        self, amount: int, overdraft_limit: int, available: int | None = None
    ) -> None:
        if available is None:
            available = self.available
        if available - amount < -overdraft_limit:
            raise InsufficientCreditsError(
                f"available {available} (overdraft limit {overdraft_limit}) is short of {amount}",
                available=available,
            )

    def _check_lot_room(self, new_lots: int) -> None:
        if new_lots and len(self.lots) + new_lots > LOTS_PER_ACCOUNT_MAX:
            raise LimitExceededError(
                f"an account may hold at most {LOTS_PER_ACCOUNT_MAX} open lots"
            )

    def _common(self, amount: int, held_change: int = 0) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "account_id": self.account_id,
            "amount": amount,
            "balance": self.balance + amount,
            "held": self.held + held_change,
        }

    def _debt_repaid(self, amount: int) -> int:
        """The debt adding `amount` repays first; refuses a new lot past the bound."""
        debt_repaid = min(amount, debt_of(self.lots))
        self._check_lot_room(1 if amount > debt_repaid else 0)
        return debt_repaid

    def grant(
        self,
        *,
        lot_id: str,
        amount: int,
        reason: str,
        expires_at: datetime | None,
        priority: int,
        metadata: dict[str, Any],
    ) -> None:
        self._check_room(amount)
        self._trigger(
            self.CreditsGranted,
            **self._common(amount),
            lot_id=lot_id,
            source="grant",
            expires_at=expires_at,
            priority=priority,
            debt_repaid=self._debt_repaid(amount),
            reason=reason,
            metadata=metadata,
        )

    def purchase(
        self,
        *,
        lot_id: str,
        amount: int,
        price: dict[str, str],
        payment_ref: str,
        expires_at: datetime | None,
        priority: int,
        metadata: dict[str, Any],
    ) -> None:
        self._check_room(amount)
        self._trigger(
            self.CreditsPurchased,
            **self._common(amount),
            lot_id=lot_id,
            source="purchase",
            expires_at=expires_at,
            priority=priority,
            debt_repaid=self._debt_repaid(amount),
            payment_ref=payment_ref,
            price=price,
            metadata=metadata,
        )

    def consume(
        self,
        *,
        consumption_id: str,
        amount: int,
        operation: str,
        resource: str | None,
        user_id: str | None,
        metadata: dict[str, Any],
        overdraft_limit: int,
    ) -> None:
        balance, held = self.balance, self.held  # each a sum over lots or holds
        self._check_can_take(amount, overdraft_limit, balance - held)
        draws = plan_draws(self.lots, amount)
        self._trigger(
            self.CreditsConsumed,
            tenant_id=self.tenant_id,
            account_id=self.account_id,
            amount=-amount,
            balance=balance - amount,
            held=held,
            consumption_id=consumption_id,
            operation=operation,
            resource=resource,
            user_id=user_id,
            metadata=metadata,
            draws=draws,
            drawn_lots=self.drawn_lots(draws),
        )

    def refund(
        self,
        *,
        consumption_id: str,
        operation: str,
        amount: int,
        reason: str,
        returnable: list[ReturnableDraw],
        refund_lot_id: str,
        now: datetime,
    ) -> list[Restore]:
        """Gives `amount` back: first paying down debt, then to the lots the consumption drew
        from (last drawn first) while they have not expired, the rest into a new `refund` lot.
        `returnable` lists the consumption's draws still refundable, in draw order."""
        self._check_room(amount)
        debt_repaid = min(amount, debt_of(self.lots))
        restores = plan_restores(self.lots, returnable, amount - debt_repaid, refund_lot_id, now)
        self._check_lot_room(sum(1 for restore in restores if restore.lot is not None))
        self._trigger(
            self.CreditsRefunded,
            **self._common(amount),
            consumption_id=consumption_id,
            operation=operation,
            reason=reason,
            debt_repaid=debt_repaid,
            restores=restores,
        )
        return restores

    def place_hold(
        self,
        *,
        hold_id: str,
        amount: int,
        operation: str,
        expires_at: datetime,
        metadata: dict[str, Any],
        overdraft_limit: int,
    ) -> None:
        if len(self.holds) >= ACTIVE_HOLDS_PER_ACCOUNT_MAX:
            raise LimitExceededError(
                f"an account may have at most {ACTIVE_HOLDS_PER_ACCOUNT_MAX} active holds"
            )
        self._check_can_take(amount, overdraft_limit)
        self._trigger(
            self.HoldPlaced,
            **self._common(0, held_change=amount),
            hold_id=hold_id,
            operation=operation,
            hold_amount=amount,
            expires_at=expires_at,
            metadata=metadata,
            reservations=plan_draws(self.lots, amount),
        )

    def active_hold(self, hold_id: str) -> ActiveHold:
        hold = self.holds.get(hold_id)
        if hold is None:
            raise HoldNotActiveError(f"hold {hold_id} is not active")
        return hold

    def capture_hold(self, *, hold_id: str, amount: int, consumption_id: str) -> None:
        hold = self.active_hold(hold_id)
        if amount > hold.amount:
            raise HoldNotActiveError(f"capture of {amount} exceeds the {hold.amount} held")
        draws = plan_capture(self.lots, hold.reservations, amount)
        self._trigger(
            self.HoldCaptured,
            **self._common(-amount, held_change=-hold.amount),
            hold_id=hold_id,
            hold_amount=hold.amount,
            consumption_id=consumption_id,
            operation=hold.operation,
            draws=draws,
            drawn_lots=self.drawn_lots(draws),
        )

    def release_hold(self, *, hold_id: str) -> None:
        hold = self.active_hold(hold_id)
        self._trigger(
            self.HoldReleased,
            **self._common(0, held_change=-hold.amount),
            hold_id=hold_id,
            hold_amount=hold.amount,
        )

    def adjust(self, *, amount: int, reason: str, lot_id: str, overdraft_limit: int) -> None:
        if amount > 0:
            self._check_room(amount)
            debt_repaid = self._debt_repaid(amount)
            draws: list[Draw] = []
            new_lot_id: str | None = lot_id if amount > debt_repaid else None
        else:
            self._check_can_take(-amount, overdraft_limit)
            debt_repaid, draws, new_lot_id = 0, plan_draws(self.lots, -amount), None
        self._trigger(
            self.BalanceAdjusted,
            **self._common(amount),
            reason=reason,
            lot_id=new_lot_id,
            debt_repaid=debt_repaid,
            draws=draws,
        )

    def expire_due(self, now: datetime) -> list[str]:
        """Ends holds past their expiry, then expires the unheld credits of lots past theirs.

        Returns the ids of the holds that expired (their records must be told too).
        """
        expired_holds = [h for h in self.holds.values() if h.expires_at <= now]
        for hold in sorted(expired_holds, key=lambda h: (h.expires_at, h.hold_id)):
            self._trigger(
                self.HoldExpired,
                **self._common(0, held_change=-hold.amount),
                hold_id=hold.hold_id,
                hold_amount=hold.amount,
            )
        # Only the lots past their expiry are put in burn-down order (a sweep runs before every
        # command, and usually finds none).
        due = [
            lot
            for lot in self.lots.values()
            if lot.expires_at is not None
            and lot.expires_at <= now
            and lot.lot_id != OVERDRAFT_LOT_ID
        ]
        for lot in sorted(due, key=burn_order_key):
            unheld = lot.remaining - lot.held
            if unheld > 0:
                self._trigger(self.LotExpired, **self._common(-unheld), lot_id=lot.lot_id)
        return [hold.hold_id for hold in expired_holds]

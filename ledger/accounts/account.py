"""The Account aggregate: an account's lots, active holds and totals, and the rules that
decide what happens to them. Its state stays bounded.

Every public method decides first (raising a LedgerError and changing nothing) and only then
triggers its events (ledger/accounts/account_events.py): a failed command never leaves a
half-applied account behind.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import msgspec
from eventsourcing.domain import TZINFO, Aggregate

from ledger.accounts import account_events as events
from ledger.accounts.account_events import TOTAL_NAMES, AccountState, ActiveHold
from ledger.accounts.holds import CaptureUsage
from ledger.accounts.lots import (
    ADJUSTMENT_LOT_TERMS,
    OVERDRAFT_LOT_ID,
    Draw,
    Lot,
    LotPlacer,
    LotTerms,
    Restore,
    ReturnableDraw,
    burn_order_key,
    debt_of,
    plan_capture,
    plan_draws,
    plan_restores,
)
from ledger.commands import NOBODY, Actor
from ledger.errors import HoldNotActiveError, InsufficientCreditsError, LimitExceededError
from ledger.limits import ACTIVE_HOLDS_PER_ACCOUNT_MAX, BALANCE_MAX
from ledger.topics import stored_as


@functools.cache
def _field_count(event_class: type) -> int:
    return len(dataclasses.fields(event_class))


@stored_as("ledger.account")
class Account(AccountState, Aggregate):
    # How a snapshot's plain JSON becomes the account's typed state again (the mapper reads it).
    typed_state: ClassVar[dict[str, Any]] = {
        "lots": dict[str, Lot],
        "holds": dict[str, ActiveHold],
    }

    # Its events, under the names their topics have always had.
    Event = events.AccountEvent
    Opened = events.Opened
    CreditsAdded = events.CreditsAdded
    CreditsGranted = events.CreditsGranted
    CreditsPurchased = events.CreditsPurchased
    CreditsConsumed = events.CreditsConsumed
    CreditsRefunded = events.CreditsRefunded
    HoldPlaced = events.HoldPlaced
    HoldEnded = events.HoldEnded
    HoldCaptured = events.HoldCaptured
    HoldReleased = events.HoldReleased
    HoldExpired = events.HoldExpired
    LotExpired = events.LotExpired
    BalanceAdjusted = events.BalanceAdjusted
    CreditsReversed = events.CreditsReversed
    TopUpRequested = events.TopUpRequested

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
        cls,
        aggregate_id: UUID,
        tenant_id: str,
        account_id: str,
        metadata: dict[str, Any],
        by: Actor = NOBODY,
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
            actor_key_id=by.key_id,
            actor=by.principal,
        )

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

    def _common(self, amount: int, held_change: int = 0, by: Actor = NOBODY) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "account_id": self.account_id,
            "amount": amount,
            "balance": self.balance + amount,
            "held": self.held + held_change,
            "actor_key_id": by.key_id,
            "actor": by.principal,
        }

    def _credits_in(self, amount: int, terms: LotTerms, new_lot_id: str) -> tuple[int, str]:
        """(the debt adding `amount` repays first, the lot the rest goes to: an open lot it
        joins or `new_lot_id`); refuses a new lot past the bound (LotPlacer)."""
        debt_repaid = min(amount, debt_of(self.lots))
        if amount == debt_repaid:
            return debt_repaid, new_lot_id
        lot_id, _ = LotPlacer(self.lots).place(terms, new_lot_id)
        return debt_repaid, lot_id

    def grant(
        self,
        *,
        lot_id: str,
        amount: int,
        reason: str,
        expires_at: datetime | None,
        priority: int,
        metadata: dict[str, Any],
        by: Actor = NOBODY,
    ) -> None:
        self._check_room(amount)
        terms = LotTerms(source="grant", expires_at=expires_at, priority=priority)
        debt_repaid, lot_id = self._credits_in(amount, terms, lot_id)
        self._trigger(
            self.CreditsGranted,
            **self._common(amount, by=by),
            lot_id=lot_id,
            source="grant",
            expires_at=expires_at,
            priority=priority,
            debt_repaid=debt_repaid,
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
        by: Actor = NOBODY,
    ) -> None:
        self._check_room(amount)
        terms = LotTerms(source="purchase", expires_at=expires_at, priority=priority)
        debt_repaid, lot_id = self._credits_in(amount, terms, lot_id)
        self._trigger(
            self.CreditsPurchased,
            **self._common(amount, by=by),
            lot_id=lot_id,
            source="purchase",
            expires_at=expires_at,
            priority=priority,
            debt_repaid=debt_repaid,
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
        by: Actor = NOBODY,
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
            actor_key_id=by.key_id,
            actor=by.principal,
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
        by: Actor = NOBODY,
    ) -> list[Restore]:
        """Gives `amount` back: first paying down debt, then to the lots the consumption drew
        from (last drawn first) while they have not expired, the rest into a new `refund` lot.
        `returnable` lists the consumption's draws still refundable, in draw order."""
        self._check_room(amount)
        debt_repaid = min(amount, debt_of(self.lots))
        restores = plan_restores(self.lots, returnable, amount - debt_repaid, refund_lot_id, now)
        self._trigger(
            self.CreditsRefunded,
            **self._common(amount, by=by),
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
        resource: str | None,
        user_id: str | None,
        expires_at: datetime,
        metadata: dict[str, Any],
        overdraft_limit: int,
        by: Actor = NOBODY,
    ) -> None:
        if len(self.holds) >= ACTIVE_HOLDS_PER_ACCOUNT_MAX:
            raise LimitExceededError(
                f"an account may have at most {ACTIVE_HOLDS_PER_ACCOUNT_MAX} active holds"
            )
        self._check_can_take(amount, overdraft_limit)
        self._trigger(
            self.HoldPlaced,
            **self._common(0, held_change=amount, by=by),
            hold_id=hold_id,
            operation=operation,
            hold_amount=amount,
            expires_at=expires_at,
            metadata=metadata,
            reservations=plan_draws(self.lots, amount),
            resource=resource,
            user_id=user_id,
        )

    def active_hold(self, hold_id: str) -> ActiveHold:
        hold = self.holds.get(hold_id)
        if hold is None:
            raise HoldNotActiveError(f"hold {hold_id} is not active")
        return hold

    def capture_hold(
        self,
        *,
        hold_id: str,
        amount: int,
        consumption_id: str,
        usage: CaptureUsage,
        by: Actor = NOBODY,
    ) -> None:
        """Takes `amount` of the hold; `usage` is what its entry says the credits paid for
        (the hold's, with what the capture gave of its own)."""
        hold = self.active_hold(hold_id)
        if amount > hold.amount:
            raise HoldNotActiveError(f"capture of {amount} exceeds the {hold.amount} held")
        draws = plan_capture(self.lots, hold.reservations, amount)
        self._trigger(
            self.HoldCaptured,
            **self._common(-amount, held_change=-hold.amount, by=by),
            hold_id=hold_id,
            hold_amount=hold.amount,
            consumption_id=consumption_id,
            operation=usage.operation,
            draws=draws,
            drawn_lots=self.drawn_lots(draws),
            resource=usage.resource,
            user_id=usage.user_id,
            metadata=usage.metadata,
        )

    def release_hold(self, *, hold_id: str, by: Actor = NOBODY) -> None:
        hold = self.active_hold(hold_id)
        self._trigger(
            self.HoldReleased,
            **self._common(0, held_change=-hold.amount, by=by),
            hold_id=hold_id,
            hold_amount=hold.amount,
        )

    def adjust(
        self, *, amount: int, reason: str, lot_id: str, overdraft_limit: int, by: Actor = NOBODY
    ) -> None:
        if amount > 0:
            self._check_room(amount)
            debt_repaid, lot_id = self._credits_in(amount, ADJUSTMENT_LOT_TERMS, lot_id)
            draws: list[Draw] = []
            new_lot_id: str | None = lot_id if amount > debt_repaid else None
        else:
            self._check_can_take(-amount, overdraft_limit)
            debt_repaid, draws, new_lot_id = 0, plan_draws(self.lots, -amount), None
        self._trigger(
            self.BalanceAdjusted,
            **self._common(amount, by=by),
            reason=reason,
            lot_id=new_lot_id,
            debt_repaid=debt_repaid,
            draws=draws,
        )

    def reverse(
        self,
        *,
        payment_ref: str,
        lot_id: str,
        amount: int,
        reason: str,
        policy: str,
        by: Actor = NOBODY,
    ) -> None:
        """Takes back `amount` of a purchase: first what its lot still has unheld; the rest,
        under the policy "debt", from the account's other unheld credits in burn-down order and
        then as debt (past the overdraft limit if it must: the customer was never paid for),
        under "remaining" not at all (written off)."""
        lot = self.lots.get(lot_id)
        from_lot = min(amount, lot.available) if lot is not None else 0
        draws = [Draw(lot_id=lot_id, amount=from_lot)] if from_lot else []
        rest = amount - from_lot
        written_off = 0
        if rest and policy == "debt":
            others = {key: value for key, value in self.lots.items() if key != lot_id}
            draws.extend(plan_draws(others, rest))
        else:
            written_off = rest
        taken = amount - written_off
        self._trigger(
            self.CreditsReversed,
            **self._common(-taken, by=by),
            payment_ref=payment_ref,
            reason=reason,
            lot_id=lot_id,
            draws=draws,
            written_off=written_off,
        )

    def request_topup(self, *, metadata: dict[str, Any], by: Actor = NOBODY) -> None:
        """Says an auto top-up is wanted (ledger/topups/ decides when): no credits move."""
        self._trigger(
            self.TopUpRequested, **self._common(0, by=by), reason="auto_topup", metadata=metadata
        )

    def has_due(self, now: datetime) -> bool:
        """Whether a sweep at `now` would end a hold or expire a lot's credits."""
        return any(hold.expires_at <= now for hold in self.holds.values()) or any(
            lot.expires_at is not None
            and lot.expires_at <= now
            and lot.lot_id != OVERDRAFT_LOT_ID
            and lot.remaining > lot.held
            for lot in self.lots.values()
        )

    def as_of(self, now: datetime) -> Account:
        """The account as a sweep at `now` would leave it, without touching this one: a copy
        of its state (lots, holds, totals) on which the sweep runs, its events thrown away.
        Itself when nothing is due."""
        if not self.has_due(now):
            return self
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.lots = {lot_id: msgspec.structs.replace(lot) for lot_id, lot in self.lots.items()}
        copy.holds = dict(self.holds)
        copy.totals = dict(self.totals)
        copy._pending_events = []
        copy.expire_due(now)
        return copy

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

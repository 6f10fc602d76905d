"""What happens to an account: its events, stored under `ledger.account:Account.<name>`
(ledger/topics.py pins them on the Account class), and the state they change.

Each event's `apply_to` changes an `AccountState` (lots, active holds, totals) and nothing
else; the Account aggregate (ledger/accounts/account.py) decides which events to trigger.
Every event carries the account's `balance` and `held` after it, so an entry (and an auditor)
needs nothing but the event itself.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from datetime import datetime
from typing import Any, ClassVar

import msgspec
from eventsourcing.domain import Aggregate

from ledger.accounts.lots import (
    OVERDRAFT_LOT_ID,
    Draw,
    Lot,
    LotTerms,
    Restore,
    new_overdraft_lot,
)

TOTAL_NAMES = ("granted", "purchased", "consumed", "refunded", "expired", "adjusted")


class ActiveHold(msgspec.Struct, frozen=True, kw_only=True):
    """A hold the account still reserves credits for, on specific lots."""

    hold_id: str
    amount: int
    operation: str
    expires_at: datetime
    reservations: list[Draw]


class AccountState:
    """An account's credits: its lots (credits of one source, priority and expiry, and the
    overdraft lot holding its debt), its active holds and its totals, with the changes events
    make."""

    tenant_id: str
    account_id: str
    metadata: dict[str, Any]
    lots: dict[str, Lot]
    holds: dict[str, ActiveHold]
    totals: dict[str, int]
    lot_seq: int

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

    def add_credits(
        self, lot_id: str, source: str, amount: int, expires_at: datetime | None, priority: int
    ) -> None:
        """Credits into the open lot `lot_id` (one they join: the same source, priority and
        expiry, ledger/accounts/lots.py LotPlacer), or into a new lot of that id. Events
        stored before lots joined always name a new lot."""
        lot = self.lots.get(lot_id)
        if lot is not None:
            assert (lot.source, lot.expires_at, lot.priority) == (source, expires_at, priority)
            lot.remaining += amount
            return
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


class AccountEvent(Aggregate.Event):
    """Every account event but the first carries the signed change of balance and the balance
    and held after it; applying one checks the account agrees."""

    tenant_id: str
    account_id: str
    amount: int  # the signed change of balance
    balance: int  # after this event
    held: int  # after this event
    # Who sent the command (ledger.commands.Actor): its API key and its console principal.
    # Keyword-only with defaults: events stored before they existed read them as None, so no
    # class changed its version for them.
    _: KW_ONLY
    actor_key_id: str | None = None
    actor: str | None = None

    entry_type: ClassVar[str] = ""

    def apply(self, aggregate: Any) -> None:
        self.apply_to(aggregate)
        assert aggregate.balance == self.balance, (aggregate.balance, self.balance)
        assert aggregate.held == self.held, (aggregate.held, self.held)

    def apply_to(self, account: AccountState) -> None:
        raise NotImplementedError


class Opened(Aggregate.Created):
    """The first event: the account's ids and metadata (its state is set by Account.__init__)."""

    tenant_id: str
    account_id: str
    metadata: dict[str, Any]
    amount: int
    balance: int
    held: int
    _: KW_ONLY
    actor_key_id: str | None = None  # as AccountEvent's
    actor: str | None = None
    entry_type: ClassVar[str] = "open"

    def apply(self, aggregate: Any) -> None:
        """The state is set by Account.__init__."""


class CreditsAdded(AccountEvent):
    """Credits of a grant or purchase: debt is repaid first, the rest goes to `lot_id`, a new
    lot or an open one of the same source, priority and expiry that they join."""

    lot_id: str
    source: str
    expires_at: datetime | None
    priority: int
    debt_repaid: int

    def apply_to(self, account: AccountState) -> None:
        account.repay_debt(self.debt_repaid)
        lot_amount = self.amount - self.debt_repaid
        if lot_amount > 0:
            account.add_credits(
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


class CreditsConsumed(AccountEvent):
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

    def apply_to(self, account: AccountState) -> None:
        account.take_draws(self.draws)
        account.totals["consumed"] += -self.amount


class CreditsRefunded(AccountEvent):
    consumption_id: str
    operation: str  # the refunded consumption's, so usage reports need no lookup
    reason: str
    debt_repaid: int
    restores: list[Restore]
    entry_type: ClassVar[str] = "refund"

    def apply_to(self, account: AccountState) -> None:
        account.repay_debt(self.debt_repaid)
        for restore in self.restores:
            lot = account.lots.get(restore.lot_id)
            if lot is None:
                terms = restore.lot
                assert terms is not None, restore
                account.add_credits(
                    restore.lot_id,
                    terms.source,
                    restore.amount,
                    terms.expires_at,
                    terms.priority,
                )
            else:
                lot.remaining += restore.amount
        account.totals["refunded"] += self.amount


class HoldPlaced(AccountEvent):
    hold_id: str
    operation: str
    hold_amount: int
    expires_at: datetime
    metadata: dict[str, Any]
    reservations: list[Draw]
    # As a consumption names them. Version 1 (before issue 14) had neither.
    resource: str | None
    user_id: str | None
    entry_type: ClassVar[str] = "hold"
    class_version: ClassVar[int] = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["resource"] = None
        state["user_id"] = None

    def apply_to(self, account: AccountState) -> None:
        for reservation in self.reservations:
            account.lot_for(reservation.lot_id).held += reservation.amount
        account.holds[self.hold_id] = ActiveHold(
            hold_id=self.hold_id,
            amount=self.hold_amount,
            operation=self.operation,
            expires_at=self.expires_at,
            reservations=self.reservations,
        )


class HoldEnded(AccountEvent):
    """Base of capture, release and expiry: the whole reservation is lifted."""

    hold_id: str
    hold_amount: int

    def apply_to(self, account: AccountState) -> None:
        hold = account.holds.pop(self.hold_id)
        for reservation in hold.reservations:
            account.lot_for(reservation.lot_id).held -= reservation.amount
        self.after_release(account)
        account.drop_empty_lots()

    def after_release(self, account: AccountState) -> None:
        pass


class HoldCaptured(HoldEnded):
    consumption_id: str
    operation: str
    draws: list[Draw]
    drawn_lots: dict[str, LotTerms] | None  # as in CreditsConsumed
    # The hold's (or the capture's own), as a consumption's: usage by user or resource counts
    # captures too. Version 2 (before issue 14) had none.
    resource: str | None
    user_id: str | None
    metadata: dict[str, Any]
    entry_type: ClassVar[str] = "capture"
    class_version: ClassVar[int] = 3

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["drawn_lots"] = None

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["resource"] = None
        state["user_id"] = None
        state["metadata"] = {}

    def after_release(self, account: AccountState) -> None:
        account.take_draws(self.draws)
        account.totals["consumed"] += -self.amount


class HoldReleased(HoldEnded):
    entry_type: ClassVar[str] = "release"


class HoldExpired(HoldEnded):
    entry_type: ClassVar[str] = "release"


class LotExpired(AccountEvent):
    lot_id: str
    entry_type: ClassVar[str] = "expire"

    def apply_to(self, account: AccountState) -> None:
        account.lots[self.lot_id].remaining += self.amount
        account.totals["expired"] += -self.amount
        account.drop_empty_lots()


class BalanceAdjusted(AccountEvent):
    reason: str
    lot_id: str | None  # the lot a positive adjustment's credits went to
    debt_repaid: int
    draws: list[Draw]  # what a negative adjustment took
    entry_type: ClassVar[str] = "adjust"

    def apply_to(self, account: AccountState) -> None:
        if self.amount > 0:
            account.repay_debt(self.debt_repaid)
            if self.amount > self.debt_repaid:
                assert self.lot_id is not None
                account.add_credits(
                    self.lot_id, "adjustment", self.amount - self.debt_repaid, None, 0
                )
        else:
            account.take_draws(self.draws)
        account.totals["adjusted"] += self.amount


class CreditsReversed(AccountEvent):
    """A purchase taken back (its payment refunded or disputed): `draws` takes what is left
    of its lot and, under the tenant's `reversal_policy` "debt", the rest from the account's
    other credits and below zero as debt; `written_off` is what the policy "remaining" left
    with the customer. Totals do not change: the `reverse` entries are the record of it."""

    payment_ref: str
    reason: str
    lot_id: str  # the purchase's lot
    draws: list[Draw]
    written_off: int
    entry_type: ClassVar[str] = "reverse"

    def apply_to(self, account: AccountState) -> None:
        account.take_draws(self.draws)


class TopUpRequested(AccountEvent):
    """An auto top-up asked for (ledger/topups/): `amount` 0; `metadata` carries the
    `topup_id` (the idempotency key the payment side must reuse), the credits to buy and the
    attempt. Changes nothing but says so, on every channel an entry reaches."""

    reason: str
    metadata: dict[str, Any]
    entry_type: ClassVar[str] = "topup_requested"

    def apply_to(self, account: AccountState) -> None:
        pass

"""Lots: credits of one source, priority and expiry, the burn-down order that draws on them,
and where credits coming in go.

Each value is a msgspec struct stored as the JSON object it always was (the transcoder writes
a struct as its fields, in order): a lot is
    {"lot_id", "source", "remaining", "held", "expires_at", "priority", "seq"}
`held` is the part of `remaining` reserved by active holds. The special lot `overdraft` holds
the account's debt: its `remaining` is <= 0 and it is never drawn from by burn-down.

Credits coming in join an open lot instead of making one when that cannot change what burns
first (`LotPlacer`): so an account granted credits every day for years keeps a few lots, one
per (priority, expiry) its unspent credits have, not one per grant.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from ledger.errors import LimitExceededError
from ledger.limits import LOTS_PER_ACCOUNT_MAX, PRIORITY_DEFAULT

OVERDRAFT_LOT_ID = "overdraft"
# Where a refund puts what it cannot give back to the lots it came from.
REFUND_SOURCE = "refund"


class Lot(msgspec.Struct, kw_only=True):
    """Credits of one source; `remaining` and `held` change as they are drawn and reserved."""

    lot_id: str
    source: str
    remaining: int
    held: int
    expires_at: datetime | None
    priority: int
    seq: int  # the order lots were added: oldest first among equals

    @property
    def available(self) -> int:
        return max(0, self.remaining - self.held)


class Draw(msgspec.Struct, frozen=True, kw_only=True):
    """Credits taken from (or reserved on) one lot."""

    lot_id: str
    amount: int


class LotTerms(msgspec.Struct, frozen=True, kw_only=True):
    """What a lot is besides its credits: enough to make it again (a refund to a lot that has
    since been used up)."""

    source: str
    expires_at: datetime | None
    priority: int


class Restore(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Credits a refund gives back to one lot; `lot` when that lot must be made again."""

    lot_id: str
    amount: int
    lot: LotTerms | None = None


class ReturnableDraw(msgspec.Struct, kw_only=True):
    """A consumption's draw that a refund may still give back; `amount` goes down as it does."""

    lot_id: str
    amount: int
    source: str
    expires_at: datetime | None
    priority: int


OVERDRAFT_TERMS = LotTerms(source="overdraft", expires_at=None, priority=0)
REFUND_LOT_TERMS = LotTerms(source=REFUND_SOURCE, expires_at=None, priority=PRIORITY_DEFAULT)
ADJUSTMENT_LOT_TERMS = LotTerms(source="adjustment", expires_at=None, priority=0)
# Lots a decision makes come after every open lot in age (their seq is given when applied).
_MADE_LOT_AGE = 1 << 62


def terms_of(lot: Lot) -> LotTerms:
    return LotTerms(source=lot.source, expires_at=lot.expires_at, priority=lot.priority)


class LotPlacer:
    """Where the credits of one decision go (a grant, a purchase, a positive adjustment, what a
    refund gives back), lot by lot, before any of it is applied.

    Credits join the open lot of their priority and expiry that would burn last (the newest,
    among both the open lots and those this decision makes) when it has their source: burn-down
    then takes them exactly when it would take a lot of their own, since nothing can come
    between. Otherwise they make a lot, unless the account already holds
    LOTS_PER_ACCOUNT_MAX: then they join the newest lot of their source, priority and expiry
    (they burn with it, ahead of younger lots of another source of the same terms), and only
    when there is none is the decision refused.
    """

    def __init__(self, lots: dict[str, Lot]) -> None:
        self.lots = lots
        self.made: list[tuple[str, LotTerms]] = []

    def place(self, terms: LotTerms, new_lot_id: str) -> tuple[str, bool]:
        """(the lot the credits go to, whether it is `new_lot_id`, made now)."""
        newest: tuple[int, str, str] | None = None  # (age, source, lot_id) of the class
        newest_of_source: tuple[int, str] | None = None
        candidates = [
            (lot.seq, lot.lot_id, terms_of(lot))
            for lot in self.lots.values()
            if lot.lot_id != OVERDRAFT_LOT_ID
            and lot.priority == terms.priority
            and lot.expires_at == terms.expires_at
        ]
        candidates += [
            (_MADE_LOT_AGE + index, lot_id, made)
            for index, (lot_id, made) in enumerate(self.made)
            if made.priority == terms.priority and made.expires_at == terms.expires_at
        ]
        for age, lot_id, lot_terms in candidates:
            if newest is None or age > newest[0]:
                newest = (age, lot_terms.source, lot_id)
            if lot_terms.source == terms.source and (
                newest_of_source is None or age > newest_of_source[0]
            ):
                newest_of_source = (age, lot_id)
        if newest is not None and newest[1] == terms.source:
            return newest[2], False
        if len(self.lots) + len(self.made) < LOTS_PER_ACCOUNT_MAX:
            self.made.append((new_lot_id, terms))
            return new_lot_id, True
        if newest_of_source is not None:
            return newest_of_source[1], False
        raise LimitExceededError(
            f"an account may hold at most {LOTS_PER_ACCOUNT_MAX} open lots of different "
            "sources, priorities or expiries"
        )


def burn_order_key(lot: Lot) -> tuple[int, int, float, int]:
    """Lower priority first, then earliest expiry (none last), then oldest."""
    if lot.expires_at is None:
        return (lot.priority, 1, 0.0, lot.seq)
    return (lot.priority, 0, lot.expires_at.timestamp(), lot.seq)


def lots_in_burn_order(lots: dict[str, Lot]) -> list[Lot]:
    return sorted(
        (lot for lot in lots.values() if lot.lot_id != OVERDRAFT_LOT_ID), key=burn_order_key
    )


def plan_draws(lots: dict[str, Lot], amount: int) -> list[Draw]:
    """Draws `amount` from unheld credits in burn-down order; the rest from the overdraft lot.

    The caller has checked that the account may go that far below zero.
    """
    draws: list[Draw] = []
    left = amount
    for lot in lots_in_burn_order(lots):
        if left == 0:
            break
        take = min(lot.available, left)
        if take > 0:
            draws.append(Draw(lot_id=lot.lot_id, amount=take))
            left -= take
    if left > 0:
        draws.append(Draw(lot_id=OVERDRAFT_LOT_ID, amount=left))
    return draws


def plan_capture(lots: dict[str, Lot], reservations: list[Draw], amount: int) -> list[Draw]:
    """What a capture of `amount` takes from a hold's reservations: in burn-down order of
    their lots, so what it leaves reserved (and releases) is what would burn last."""
    order = {lot.lot_id: index for index, lot in enumerate(lots_in_burn_order(lots))}
    draws: list[Draw] = []
    left = amount
    for reservation in sorted(reservations, key=lambda r: order.get(r.lot_id, len(order))):
        if left == 0:
            break
        take = min(left, reservation.amount)
        draws.append(Draw(lot_id=reservation.lot_id, amount=take))
        left -= take
    return draws


def plan_restores(
    lots: dict[str, Lot],
    returnable: Iterable[ReturnableDraw],
    amount: int,
    refund_lot_id: str,
    now: datetime,
) -> list[Restore]:
    """Where a refund of `amount` (after any debt it repays) goes: back to the lots the
    consumption drew from, last drawn first, while they have not expired; the rest into a
    `refund` lot. A lot used up since is made again, or joins one of its terms (LotPlacer)."""
    restores: list[Restore] = []
    placer = LotPlacer(lots)
    left = amount
    for draw in reversed(list(returnable)):
        if left == 0:
            break
        if draw.lot_id == OVERDRAFT_LOT_ID:
            continue
        if draw.expires_at is not None and draw.expires_at <= now:
            continue
        give = min(left, draw.amount)
        if draw.lot_id in lots:
            restores.append(Restore(lot_id=draw.lot_id, amount=give))
        else:  # used up since: made again, or joining a lot of the same terms
            terms = LotTerms(source=draw.source, expires_at=draw.expires_at, priority=draw.priority)
            restores.append(_restore(placer, terms, draw.lot_id, give))
        left -= give
    if left > 0:
        restores.append(_restore(placer, REFUND_LOT_TERMS, refund_lot_id, left))
    return restores


def _restore(placer: LotPlacer, terms: LotTerms, new_lot_id: str, amount: int) -> Restore:
    lot_id, made = placer.place(terms, new_lot_id)
    return Restore(lot_id=lot_id, amount=amount, lot=terms if made else None)


def debt_of(lots: dict[str, Lot]) -> int:
    lot = lots.get(OVERDRAFT_LOT_ID)
    return -lot.remaining if lot is not None else 0


def new_overdraft_lot(seq: int) -> Lot:
    return Lot(
        lot_id=OVERDRAFT_LOT_ID,
        source="overdraft",
        remaining=0,
        held=0,
        expires_at=None,
        priority=0,
        seq=seq,
    )

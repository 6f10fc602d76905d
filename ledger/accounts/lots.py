"""Lots: the credits of one grant or purchase, and the burn-down order that draws on them.

Each value is a msgspec struct stored as the JSON object it always was (the transcoder writes
a struct as its fields, in order): a lot is
    {"lot_id", "source", "remaining", "held", "expires_at", "priority", "seq"}
`held` is the part of `remaining` reserved by active holds. The special lot `overdraft` holds
the account's debt: its `remaining` is <= 0 and it is never drawn from by burn-down.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from ledger.limits import PRIORITY_DEFAULT

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
    consumption drew from, last drawn first, while they have not expired; the rest into a new
    `refund` lot."""
    restores: list[Restore] = []
    left = amount
    for draw in reversed(list(returnable)):
        if left == 0:
            break
        if draw.lot_id == OVERDRAFT_LOT_ID:
            continue
        if draw.expires_at is not None and draw.expires_at <= now:
            continue
        give = min(left, draw.amount)
        terms = None
        if draw.lot_id not in lots:
            terms = LotTerms(source=draw.source, expires_at=draw.expires_at, priority=draw.priority)
        restores.append(Restore(lot_id=draw.lot_id, amount=give, lot=terms))
        left -= give
    if left > 0:
        restores.append(Restore(lot_id=refund_lot_id, amount=left, lot=REFUND_LOT_TERMS))
    return restores


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

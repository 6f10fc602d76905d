"""Lots: the credits of one grant or purchase, and the burn-down order that draws on them.

A lot is a plain dict (so an account snapshot is plain JSON):
    {"lot_id", "source", "remaining", "held", "expires_at", "priority", "seq"}
`held` is the part of `remaining` reserved by active holds. The special lot `overdraft` holds
the account's debt: its `remaining` is <= 0 and it is never drawn from by burn-down.
"""

from __future__ import annotations

from typing import Any

OVERDRAFT_LOT_ID = "overdraft"

Lot = dict[str, Any]
Draw = dict[str, Any]  # {"lot_id": str, "amount": int}


def burn_order_key(lot: Lot) -> tuple[int, int, float, int]:
    """Lower priority first, then earliest expiry (none last), then oldest."""
    expires_at = lot["expires_at"]
    if expires_at is None:
        return (lot["priority"], 1, 0.0, lot["seq"])
    return (lot["priority"], 0, expires_at.timestamp(), lot["seq"])


def lots_in_burn_order(lots: dict[str, Lot]) -> list[Lot]:
    return sorted(
        (lot for lot in lots.values() if lot["lot_id"] != OVERDRAFT_LOT_ID), key=burn_order_key
    )


def lot_available(lot: Lot) -> int:
    remaining: int = lot["remaining"]
    held: int = lot["held"]
    return max(0, remaining - held)


def plan_draws(lots: dict[str, Lot], amount: int) -> list[Draw]:
    """Draws `amount` from unheld credits in burn-down order; the rest from the overdraft lot.

    The caller has checked that the account may go that far below zero.
    """
    draws: list[Draw] = []
    left = amount
    for lot in lots_in_burn_order(lots):
        if left == 0:
            break
        take = min(lot_available(lot), left)
        if take > 0:
            draws.append({"lot_id": lot["lot_id"], "amount": take})
            left -= take
    if left > 0:
        draws.append({"lot_id": OVERDRAFT_LOT_ID, "amount": left})
    return draws


def debt_of(lots: dict[str, Lot]) -> int:
    lot = lots.get(OVERDRAFT_LOT_ID)
    return -lot["remaining"] if lot is not None else 0


def new_overdraft_lot(seq: int) -> Lot:
    return {
        "lot_id": OVERDRAFT_LOT_ID,
        "source": "overdraft",
        "remaining": 0,
        "held": 0,
        "expires_at": None,
        "priority": 0,
        "seq": seq,
    }

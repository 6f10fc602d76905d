"""When an entry takes an account's `available` below its tenant's `low_balance_threshold`
(`ledger.low_balance.v1`, events/contract.py): computed from the entry alone, so a crossing is
exact and alerts once, except for a placed hold, whose entry lacks the hold's amount.
"""

from __future__ import annotations

from typing import Any

from ledger.accounts.account import Account

# Ending a hold never lowers `available` (a capture takes at most what the hold reserved), so
# its entries cannot cross a threshold. Placing one lowers it by the hold's amount, which the
# entry does not carry: for that entry the event is decoded.
HOLD_ENDED_TYPES = frozenset(
    cls.entry_type for cls in (Account.HoldCaptured, Account.HoldReleased, Account.HoldExpired)
)


def held_before(event: Any) -> int:
    """The account's held credits before the event (events carry what is after)."""
    if isinstance(event, Account.HoldPlaced):
        return int(event.held - event.hold_amount)
    if isinstance(event, Account.HoldEnded):
        return int(event.held + event.hold_amount)
    return int(event.held)


def crossed_below(event: Any, threshold: int) -> bool:
    """True when this event takes `available` from at or above the threshold to below it. An
    Entry will do instead of the event, but not for a hold (see HOLD_ENDED_TYPES)."""
    available_after: int = event.balance - event.held
    available_before: int = (event.balance - event.amount) - held_before(event)
    return available_after < threshold <= available_before

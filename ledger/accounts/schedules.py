"""What falls due in the accounts area (docs/adr/0007): a hold's expiry and a lot's.

Each is a `Schedule` of the registry: the account events that add a due item (a hold placed,
a lot made with an `expires_at`) or clear one (the hold ended, the lot's credits expired), and
the command that acts on an item once due, `ExpireDue`, under the item's deterministic key. A
lot used up before its expiry has no event that clears its item: at its time `ExpireDue`
finds nothing to do, records nothing, and the scheduler clears the item once that committed.
Credits of an expired lot that a hold still reserves expire when the hold ends (its own item).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ledger.accounts.account_events import (
    CreditsGranted,
    CreditsPurchased,
    CreditsRefunded,
    HoldCaptured,
    HoldExpired,
    HoldPlaced,
    HoldReleased,
    LotExpired,
)
from ledger.accounts.commands import ExpireDue
from ledger.registry import DueChange, DueItem, Schedule

HOLD_EXPIRY = "hold_expiry"
LOT_EXPIRY = "lot_expiry"


def _hold_changes(event: Any) -> Iterator[DueChange]:
    due_at = event.expires_at if isinstance(event, HoldPlaced) else None
    yield DueChange(HOLD_EXPIRY, event.hold_id, event.tenant_id, event.account_id, due_at)


def _lot_changes(event: Any) -> Iterator[DueChange]:
    tenant_id, account_id = event.tenant_id, event.account_id
    if isinstance(event, LotExpired):
        yield DueChange(LOT_EXPIRY, event.lot_id, tenant_id, account_id, None)
    elif isinstance(event, CreditsRefunded):
        for restore in event.restores:  # a lot made again, with its old expiry
            if restore.lot is not None and restore.lot.expires_at is not None:
                yield DueChange(
                    LOT_EXPIRY, restore.lot_id, tenant_id, account_id, restore.lot.expires_at
                )
    elif event.expires_at is not None and event.amount > event.debt_repaid:  # a lot was made
        yield DueChange(LOT_EXPIRY, event.lot_id, tenant_id, account_id, event.expires_at)


def _expire_hold(item: DueItem) -> ExpireDue:
    return ExpireDue(account_id=item.account_id, due_at=item.due_at, hold_id=item.key)


def _expire_lot(item: DueItem) -> ExpireDue:
    return ExpireDue(account_id=item.account_id, due_at=item.due_at)


SCHEDULES = (
    Schedule(
        kind=HOLD_EXPIRY,
        events=(HoldPlaced, HoldCaptured, HoldReleased, HoldExpired),
        changes=_hold_changes,
        command=_expire_hold,
    ),
    Schedule(
        kind=LOT_EXPIRY,
        events=(CreditsGranted, CreditsPurchased, CreditsRefunded, LotExpired),
        changes=_lot_changes,
        command=_expire_lot,
    ),
)

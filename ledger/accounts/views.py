"""What account commands answer: entries and views, as msgspec structs (the API sends them
as they are).

`position` is the entry's place in the whole ledger (the event store's notification id); the
writer fills it in after the commit, since only the database knows it.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime
from typing import Any

import msgspec

from ledger.accounts.account import Account
from ledger.accounts.account_events import AccountEvent, Opened
from ledger.accounts.holds import HoldRecord
from ledger.ids import entry_id


class Entry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    entry_id: str
    account_id: str
    type: str
    amount: int
    balance: int
    available: int
    held: int
    version: int
    position: int
    recorded_at: datetime
    operation: str | None = None
    resource: str | None = None
    user_id: str | None = None
    reason: str | None = None
    hold_id: str | None = None
    consumption_id: str | None = None
    lot_id: str | None = None
    expires_at: datetime | None = None
    payment_ref: str | None = None
    price: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    # Who sent the command: its API key's id and, from the web console, its principal (both
    # left out for what the ledger did itself: an expiry, a top-up request, an older entry).
    actor_key_id: str | None = None
    actor: str | None = None


class LotView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    lot_id: str
    source: str
    remaining: int
    expires_at: datetime | None
    priority: int
    held: int = 0


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    granted: int
    purchased: int
    consumed: int
    refunded: int
    expired: int
    adjusted: int


class AccountView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    account_id: str
    balance: int
    available: int
    held: int
    version: int
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any]
    lots: list[LotView]
    totals: Totals
    position: int = 0


class HoldView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    hold_id: str
    account_id: str
    amount: int
    operation: str
    status: str
    expires_at: datetime
    created_at: datetime
    captured: int = 0
    position: int = 0
    resource: str | None = None
    user_id: str | None = None
    metadata: dict[str, Any] = {}


# The optional fields an entry takes from its event, when the event's class has them.
ENTRY_FIELDS = (
    "operation",
    "resource",
    "user_id",
    "reason",
    "hold_id",
    "consumption_id",
    "lot_id",
    "expires_at",
    "payment_ref",
    "price",
    "metadata",
    "actor_key_id",
    "actor",
)


@functools.cache
def entry_fields(event_class: type[Any]) -> tuple[str, ...]:
    """The optional entry fields an event class has (asked once per class, not per event)."""
    names = {field.name for field in dataclasses.fields(event_class)}
    return tuple(name for name in ENTRY_FIELDS if name in names)


def entry_from_event(event: AccountEvent | Opened, position: int = 0) -> Entry:
    """The public entry of one account event; needs nothing but the event."""
    state = vars(event)
    optional = {name: state[name] for name in entry_fields(type(event)) if name in state}
    if not optional.get("metadata"):
        optional.pop("metadata", None)
    version = state["originator_version"]
    balance = state["balance"]
    held = state["held"]
    return Entry(
        entry_id=entry_id(state["originator_id"], version),
        account_id=state["account_id"],
        type=event.entry_type,
        amount=state["amount"],
        balance=balance,
        available=balance - held,
        held=held,
        version=version,
        position=position,
        recorded_at=state["timestamp"],
        **optional,
    )


def account_view(account: Account) -> AccountView:
    lots = sorted(account.lots.values(), key=lambda lot: lot.seq)
    return AccountView(
        account_id=account.account_id,
        balance=account.balance,
        available=account.available,
        held=account.held,
        version=account.version,
        created_at=account.created_on,
        updated_at=account.modified_on,
        metadata=account.metadata,
        lots=[
            LotView(
                lot_id=lot.lot_id,
                source=lot.source,
                remaining=lot.remaining,
                expires_at=lot.expires_at,
                priority=lot.priority,
                held=lot.held,
            )
            for lot in lots
        ],
        totals=Totals(**account.totals),
    )


def effective_account_view(account: Account, now: datetime) -> AccountView:
    """The account as it stands at `now`: holds past their expiry ended and the unheld
    credits of lots past theirs gone, as the sweep will record them; `version` and
    `updated_at` stay those of the last recorded event (nothing is recorded by a read)."""
    swept = account.as_of(now)
    view = account_view(swept)
    if swept is account:
        return view
    return msgspec.structs.replace(view, version=account.version, updated_at=account.modified_on)


def effective_hold_view(record: HoldRecord, now: datetime) -> HoldView:
    """The hold as it stands at `now`: an active hold past its expiry is `expired`."""
    view = hold_view(record)
    if record.status == "active" and record.expires_at <= now:
        return msgspec.structs.replace(view, status="expired")
    return view


def hold_view(record: HoldRecord) -> HoldView:
    return HoldView(
        hold_id=record.hold_id,
        account_id=record.account_id,
        amount=record.amount,
        operation=record.operation,
        status=record.status,
        expires_at=record.expires_at,
        created_at=record.created_on,
        captured=record.captured,
        resource=record.resource,
        user_id=record.user_id,
        metadata=record.metadata,
    )

"""What the console's pages read that the API has no route for yet: a page of a tenant's
accounts (from the read model rm_accounts; `GET /v1/accounts` is being added elsewhere and the
console moves to it once it exists), an account's and a tenant's newest entries, an account's
state with its active holds (the Account aggregate as committed), and the lots each entry drew
from (read from the event store: the Entry does not carry its draws, and its public shape is
left as it is).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.application import AggregateNotFoundError

from api.http.read_models import read_models
from api.http.services import Services
from ledger.accounts.account import Account
from ledger.accounts.account_events import ActiveHold
from ledger.accounts.views import Entry
from ledger.errors import AccountNotFoundError
from ledger.ids import account_aggregate_id

# Rows of one page of accounts or entries in the console.
CONSOLE_PAGE_SIZE = 50
_entry_decoder = msgspec.json.Decoder(Entry)


class AccountRow(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    balance: int
    held: int
    updated_at: datetime

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True)
class DrawnLot:
    """Credits an entry took from one lot (or a refund gave back to one)."""

    lot_id: str
    amount: int
    source: str | None = None
    priority: int | None = None
    expires_at: datetime | None = None


@dataclass
class EntryRow:
    entry: Entry
    drawn: list[DrawnLot] = field(default_factory=list)  # consume, capture, negative adjust
    restored: list[DrawnLot] = field(default_factory=list)  # refund


async def accounts_page(
    services: Services, tenant_id: str, prefix: str, after: str, limit: int = CONSOLE_PAGE_SIZE
) -> list[AccountRow]:
    models = read_models(services)
    rows = await models.pool.fetch(
        f"SELECT account_id, balance, held, updated_at FROM {models.s}.rm_accounts "
        f'WHERE tenant_id = $1 AND starts_with(account_id, $2) AND account_id > $3 COLLATE "C" '
        f'ORDER BY account_id COLLATE "C" LIMIT $4',
        tenant_id,
        prefix,
        after,
        limit,
    )
    return [AccountRow(**dict(row)) for row in rows]


async def newest_entries(
    services: Services,
    tenant_id: str,
    account_id: str | None,
    before: int | None,
    limit: int = CONSOLE_PAGE_SIZE,
) -> list[Entry]:
    """The newest entries of a tenant (or one account) before a position, newest first."""
    models = read_models(services)
    args: list[Any] = [tenant_id, before or 2**62, limit]
    account = ""
    if account_id is not None:
        account = " AND account_id = $4"
        args.append(account_id)
    rows = await models.pool.fetch(
        f"SELECT entry::text FROM {models.s}.rm_entries WHERE tenant_id = $1 "
        f"AND position < $2{account} ORDER BY position DESC LIMIT $3",
        *args,
    )
    return [_entry_decoder.decode(row[0]) for row in rows]


def load_account(services: Services, tenant_id: str, account_id: str) -> Account:
    """Runs in a thread: the account as committed (every answered command in it)."""
    try:
        account: Any = services.ledger.repository.get(account_aggregate_id(tenant_id, account_id))
    except AggregateNotFoundError:
        raise AccountNotFoundError(f"account {account_id} not found") from None
    assert isinstance(account, Account)
    return account


def active_holds(account: Account) -> list[ActiveHold]:
    return sorted(account.holds.values(), key=lambda hold: hold.expires_at)


def _drawn(draws: list[Any], terms: dict[str, Any] | None) -> list[DrawnLot]:
    found = []
    for draw in draws:
        term = (terms or {}).get(draw.lot_id)
        found.append(
            DrawnLot(
                lot_id=draw.lot_id,
                amount=draw.amount,
                source=term.source if term else None,
                priority=term.priority if term else None,
                expires_at=term.expires_at if term else None,
            )
        )
    return found


def with_draws(services: Services, tenant_id: str, entries: list[Entry]) -> list[EntryRow]:
    """Runs in a thread: each entry with the lots it drew from, read from its event (one read
    of the event store per account on the page, over the versions the page spans)."""
    by_account: dict[str, list[Entry]] = {}
    for entry in entries:
        by_account.setdefault(entry.account_id, []).append(entry)
    events: dict[tuple[str, int], Any] = {}
    store = services.ledger.repository.event_store
    for account_id, listed in by_account.items():
        versions = [entry.version for entry in listed]
        for event in store.get(
            account_aggregate_id(tenant_id, account_id), gt=min(versions) - 1, lte=max(versions)
        ):
            events[(account_id, event.originator_version)] = event
    rows = []
    for entry in entries:
        recorded = events.get((entry.account_id, entry.version))
        row = EntryRow(entry=entry)
        if recorded is not None:
            draws = getattr(recorded, "draws", None)
            if draws:
                row.drawn = _drawn(draws, getattr(recorded, "drawn_lots", None))
            restores = getattr(recorded, "restores", None)
            if restores:
                row.restored = [
                    DrawnLot(
                        lot_id=restore.lot_id,
                        amount=restore.amount,
                        source=restore.lot.source if restore.lot else None,
                    )
                    for restore in restores
                ]
        rows.append(row)
    return rows


async def entry_rows(services: Services, tenant_id: str, entries: list[Entry]) -> list[EntryRow]:
    return await asyncio.to_thread(with_draws, services, tenant_id, entries)

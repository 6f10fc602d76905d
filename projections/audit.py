"""Audit: a tenant's history replayed from the event store (the record), a replay file's check
with nothing but the file, and the comparison of a replay with the read models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from eventsourcing.persistence import Mapper

from ledger.accounts.stored_entries import decode_entries
from ledger.accounts.views import Entry
from projections.event_store import events_after

# Events read per round trip while replaying.
REPLAY_CHUNK = 2_000
# Mismatches listed at most in one report (the count is always complete).
MISMATCHES_LISTED_MAX = 100

entry_encoder = msgspec.json.Encoder()
entry_decoder = msgspec.json.Decoder(Entry)


async def replay(
    conn: asyncpg.Connection, schema: str, mapper: Mapper[UUID], tenant_id: str
) -> AsyncIterator[Entry]:
    """The tenant's entries, in ledger order, decoded from the event store itself."""
    after = 0
    while True:
        rows = await events_after(conn, schema, after, REPLAY_CHUNK, accounts_only=True)
        if not rows:
            return
        for entry_tenant, entry in decode_entries(mapper, rows):
            if entry_tenant == tenant_id:
                yield entry
        after = rows[-1][0]


@dataclass
class AccountState:
    balance: int = 0
    held: int = 0
    version: int = 0
    entries: int = 0


@dataclass
class Verification:
    accounts: dict[str, AccountState] = field(default_factory=dict)
    entries: int = 0
    mismatch_count: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0

    def mismatch(self, message: str) -> None:
        self.mismatch_count += 1
        if len(self.mismatches) < MISMATCHES_LISTED_MAX:
            self.mismatches.append(message)


def verify_entries(entries: Iterable[tuple[int, Entry]]) -> Verification:
    """Recomputes every balance from the entries alone (line number, entry) and reports each
    entry whose recorded balance, available or version disagrees with the recomputation."""
    result = Verification()
    last_position = 0
    for line, entry in entries:
        result.entries += 1
        state = result.accounts.setdefault(entry.account_id, AccountState())
        where = f"line {line} (account {entry.account_id}, position {entry.position})"
        if entry.position <= last_position:
            result.mismatch(f"{where}: position not after {last_position}")
        last_position = entry.position
        if entry.version != state.version + 1:
            result.mismatch(f"{where}: version {entry.version}, expected {state.version + 1}")
        expected = state.balance + entry.amount
        if entry.balance != expected:
            result.mismatch(f"{where}: balance {entry.balance}, recomputed {expected}")
        if entry.available != entry.balance - entry.held or entry.held < 0:
            result.mismatch(f"{where}: available {entry.available} is not balance - held")
        state.balance, state.held, state.version = expected, entry.held, entry.version
        state.entries += 1
    return result


def read_replay_file(lines: Iterable[bytes]) -> Iterable[tuple[int, Entry]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, entry_decoder.decode(line)


async def compare_with_read_models(
    conn: asyncpg.Connection, schema: str, mapper: Mapper[UUID], tenant_id: str
) -> dict[str, Any]:
    """Replays the tenant from the event store and compares every entry and every account's
    final state with the read models."""
    replayed: list[tuple[int, Entry]] = []
    async for entry in replay(conn, schema, mapper, tenant_id):
        replayed.append((len(replayed) + 1, entry))
    check = verify_entries(replayed)
    stored = {
        row["position"]: row
        for row in await conn.fetch(
            f'SELECT position, account_id, amount, balance, held, version FROM "{schema}".rm_entries '
            f"WHERE tenant_id = $1",
            tenant_id,
        )
    }
    seen = set()
    for _, entry in replayed:
        seen.add(entry.position)
        row = stored.get(entry.position)
        if row is None:
            check.mismatch(
                f"position {entry.position} (account {entry.account_id}) missing from the read models"
            )
        elif (row["account_id"], row["amount"], row["balance"], row["held"], row["version"]) != (
            entry.account_id,
            entry.amount,
            entry.balance,
            entry.held,
            entry.version,
        ):
            check.mismatch(
                f"position {entry.position} differs between the event store and the read models"
            )
    for position in sorted(set(stored) - seen):
        check.mismatch(f"position {position} is in the read models but not in the event store")
    accounts = {
        row["account_id"]: row
        for row in await conn.fetch(
            f'SELECT account_id, balance, held, version FROM "{schema}".rm_accounts WHERE tenant_id = $1',
            tenant_id,
        )
    }
    for account_id, state in check.accounts.items():
        row = accounts.get(account_id)
        if row is None or (row["balance"], row["held"], row["version"]) != (
            state.balance,
            state.held,
            state.version,
        ):
            check.mismatch(f"account {account_id}: read model balance differs from the replay")
    for account_id in sorted(set(accounts) - set(check.accounts)):
        check.mismatch(f"account {account_id} is in the read models but has no events")
    return {
        "ok": check.ok,
        "accounts": len(check.accounts),
        "entries": check.entries,
        "mismatches": check.mismatches,
    }

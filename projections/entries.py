"""From stored events to read-model rows: entries, account balances and usage.

Only the Account's events make entries; every other aggregate's events are skipped by topic,
before decoding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Mapper

from ledger.results import Entry, entry_from_event
from projections.tailing import account_events

_encoder = msgspec.json.Encoder()


def decode_entries(mapper: Mapper[UUID], rows: Iterable[Any]) -> list[tuple[str, Entry]]:
    """(tenant_id, Entry) of every account event among rows from `tailing.events_after`."""
    return [
        (event.tenant_id, entry_from_event(event, position))
        for position, event in account_events(mapper, rows)
    ]


@dataclass
class Changes:
    """What one batch of entries does to the read models."""

    entry_rows: list[tuple[Any, ...]] = field(default_factory=list)
    accounts: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    usage: dict[tuple[str, date, str, str], list[int]] = field(default_factory=dict)

    def add(self, tenant_id: str, entry: Entry) -> None:
        self.entry_rows.append(
            (
                entry.position,
                tenant_id,
                entry.account_id,
                entry.type,
                entry.amount,
                entry.balance,
                entry.held,
                entry.version,
                entry.recorded_at,
                _encoder.encode(entry).decode(),
            )
        )
        key = (tenant_id, entry.account_id)
        known = self.accounts.get(key)
        created_at = known[6] if known else entry.recorded_at
        self.accounts[key] = [
            tenant_id,
            entry.account_id,
            entry.balance,
            entry.held,
            entry.version,
            entry.position,
            created_at,
            entry.recorded_at,
        ]
        self._count_usage(tenant_id, entry)

    def _count_usage(self, tenant_id: str, entry: Entry) -> None:
        if entry.type not in ("consume", "capture", "refund") or entry.operation is None:
            return
        key = (tenant_id, entry.recorded_at.date(), entry.operation, entry.account_id)
        totals = self.usage.setdefault(key, [0, 0, 0])
        if entry.type == "refund":
            totals[2] += entry.amount
        else:
            totals[0] += 1
            totals[1] += -entry.amount

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
from eventsourcing.persistence import Mapper, StoredEvent

from ledger.account import Account
from ledger.results import Entry, entry_from_event

ACCOUNT_TOPIC_PREFIX = "ledger.account:Account."
_encoder = msgspec.json.Encoder()


class TenantEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An entry with its tenant: the line format of histories and replay files."""

    tenant_id: str
    entry: Entry


def decode_entries(mapper: Mapper[UUID], rows: Iterable[Any]) -> list[tuple[str, Entry]]:
    """(tenant_id, Entry) of every account event among rows of
    (notification_id, originator_id, originator_version, topic, state)."""
    entries = []
    for position, originator_id, version, topic, state in rows:
        if not topic.startswith(ACCOUNT_TOPIC_PREFIX):
            continue
        event = mapper.to_domain_event(
            StoredEvent(
                originator_id=originator_id,
                originator_version=version,
                topic=topic,
                state=bytes(state),
            )
        )
        assert isinstance(event, Account.Event | Account.Opened)
        entries.append((event.tenant_id, entry_from_event(event, position)))
    return entries


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

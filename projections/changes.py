"""What a batch of entries does to the read models: the rows of rm_entries, rm_accounts and
rm_usage it writes (the follower's and the rebuild's)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Mapper

from ledger.accounts.stored_entries import entry_fields_of_rows
from ledger.accounts.views import Entry

_encoder = msgspec.json.Encoder()

# Entry types that count in rm_usage, and the one of them that counts as refunded.
USAGE_TYPES = frozenset(("consume", "capture", "refund"))
REFUND_TYPE = "refund"
# A lot's credits expiring count as `expired`, under no operation (stored as "").
EXPIRE_TYPE = "expire"
NO_OPERATION = ""


@dataclass
class Changes:
    """What a batch of entries does to the read models. A rebuild hands every batch the same
    `accounts` and `usage`, so they add up over the whole history."""

    entry_rows: list[tuple[Any, ...]] = field(default_factory=list)
    accounts: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    usage: dict[tuple[str, date, str, str], list[int]] = field(default_factory=dict)

    def add(self, tenant_id: str, entry: Entry) -> None:
        self._add(tenant_id, msgspec.structs.asdict(entry), _encoder.encode(entry))

    def add_rows(self, mapper: Mapper[UUID], rows: Iterable[Any]) -> None:
        """Adds the entries of stored rows, as `add` would add each of `entries_of_rows`, but
        on the fast path without an Entry object per row."""
        add = self._add
        for tenant_id, fields in entry_fields_of_rows(mapper, rows):
            if isinstance(fields, Entry):
                self.add(tenant_id, fields)
            else:
                add(tenant_id, fields, _encoder.encode(fields))

    def _add(self, tenant_id: str, fields: dict[str, Any], entry_json: bytes) -> None:
        account_id = fields["account_id"]
        entry_type = fields["type"]
        amount = fields["amount"]
        balance = fields["balance"]
        held = fields["held"]
        version = fields["version"]
        position = fields["position"]
        recorded_at = fields["recorded_at"]
        self.entry_rows.append(
            (
                position,
                tenant_id,
                account_id,
                entry_type,
                amount,
                balance,
                held,
                version,
                recorded_at,
                entry_json.decode(),
            )
        )
        key = (tenant_id, account_id)
        known = self.accounts.get(key)
        created_at = known[6] if known else recorded_at
        self.accounts[key] = [
            tenant_id,
            account_id,
            balance,
            held,
            version,
            position,
            created_at,
            recorded_at,
        ]
        operation = fields.get("operation")
        if entry_type == EXPIRE_TYPE:
            operation = NO_OPERATION
        elif entry_type not in USAGE_TYPES or operation is None:
            return
        usage_key = (tenant_id, recorded_at.date(), operation, account_id)
        totals = self.usage.get(usage_key)
        if totals is None:
            totals = self.usage[usage_key] = [0, 0, 0, 0]
        if entry_type == EXPIRE_TYPE:
            totals[3] -= amount
        elif entry_type == REFUND_TYPE:
            totals[2] += amount
        else:
            totals[0] += 1
            totals[1] -= amount

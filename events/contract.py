"""The public event contract on NATS (docs/api.md, "NATS (JetStream)"), versioned.

`ledger.entry.v1`: one message per entry, `{"schema": "ledger.entry.v1", "tenant_id": ...,
...Entry}`. `ledger.low_balance.v1`: the same fields, when `available` drops below the tenant's
`low_balance_threshold`, plus the threshold. A new version gets new structs and a new schema
name; these never change.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.accounts.views import Entry

ENTRY_SCHEMA = "ledger.entry.v1"
LOW_BALANCE_SCHEMA = "ledger.low_balance.v1"


class EntryV1(Entry, frozen=True, kw_only=True, omit_defaults=True):
    schema: str
    tenant_id: str


class LowBalanceV1(Entry, frozen=True, kw_only=True, omit_defaults=True):
    schema: str
    tenant_id: str
    low_balance_threshold: int


_encoder = msgspec.json.Encoder()
_entry_fields = tuple(Entry.__struct_fields__)


def _fields(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in _entry_fields}


def entry_message(tenant_id: str, entry: Entry) -> EntryV1:
    return EntryV1(schema=ENTRY_SCHEMA, tenant_id=tenant_id, **_fields(entry))


def low_balance_message(tenant_id: str, entry: Entry, threshold: int) -> LowBalanceV1:
    return LowBalanceV1(
        schema=LOW_BALANCE_SCHEMA,
        tenant_id=tenant_id,
        low_balance_threshold=threshold,
        **_fields(entry),
    )


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)

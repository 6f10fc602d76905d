"""From stored events to read-model rows: entries, account balances and usage.

Only the Account's events make entries; every other aggregate's events are skipped by topic,
before decoding.

The follower (live and rebuild alike) decodes with `entries_of_rows`: msgspec reads the stored
JSON straight into the few fields an entry needs and skips the rest unparsed, instead of the
library's transcoder building every nested dict and a domain event object (decoding was most
of the follower's time, docs/BENCHMARKS.md "The rebuild"). Whatever that path does not know
(another class version, a value the transcoder would turn into an object, a cipher) goes
through the library's mapper, as `decode_entries` does for everything; the auditor keeps
`decode_entries`, so the two paths check each other.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
from eventsourcing.persistence import Mapper
from eventsourcing.utils import resolve_topic

from ledger.account import Account
from ledger.ids import entry_id
from ledger.results import ENTRY_FIELDS, Entry, entry_fields, entry_from_event
from projections.tailing import ACCOUNT_TOPIC_PREFIX, account_events, decode

_encoder = msgspec.json.Encoder()


def decode_entries(mapper: Mapper[UUID], rows: Iterable[Any]) -> list[tuple[str, Entry]]:
    """(tenant_id, Entry) of every account event among rows from `tailing.events_after`,
    through the library's mapper and domain event objects."""
    return [
        (event.tenant_id, entry_from_event(event, position))
        for position, event in account_events(mapper, rows)
    ]


class _Tagged(msgspec.Struct, forbid_unknown_fields=True):
    """A value the library's JSONTranscoder stored as {"_type_": name, "_data_": data}."""

    type: str = msgspec.field(name="_type_")
    data: Any = msgspec.field(name="_data_")


class _EntryState(msgspec.Struct, kw_only=True):
    """What an entry takes from a stored account event's state; other keys are skipped.
    An absent optional field and a null one make the same entry (Entry omits None)."""

    timestamp: _Tagged
    tenant_id: str
    account_id: str
    amount: int
    balance: int
    held: int
    class_version: int = 1
    operation: str | None = None
    resource: str | None = None
    user_id: str | None = None
    reason: str | None = None
    hold_id: str | None = None
    consumption_id: str | None = None
    lot_id: str | None = None
    expires_at: _Tagged | None = None
    payment_ref: str | None = None
    price: msgspec.Raw = msgspec.Raw()  # empty when absent; decoded only if present
    metadata: msgspec.Raw = msgspec.Raw()


_state_decoder = msgspec.json.Decoder(_EntryState)
# Optional entry fields (what `entry_from_event` copies) that _EntryState does not read: should
# one be added, the fast path switches itself off rather than leave it out
# (tests/integration/test_projections.py notices).
FIELDS_NOT_DECODED = set(ENTRY_FIELDS) - set(_EntryState.__struct_fields__)
_TAGGED_MARK = b'"_type_"'
_ISO_DATETIME = "datetime_iso"


class _NotFastError(Exception):
    """This row needs the library's mapper."""


class _Kind(NamedTuple):
    entry_type: str
    class_version: int
    undeclared: tuple[str, ...]  # optional entry fields the class does not have


@functools.lru_cache(maxsize=256)
def _account_event_kind(topic: str) -> _Kind | None:
    """What the fast path needs of an account event class it can decode: one whose optional
    entry fields all come from its stored state (none is a class attribute)."""
    try:
        cls = resolve_topic(topic)
    except Exception:  # noqa: BLE001 - an unknown topic is the mapper's to report
        return None
    if not (isinstance(cls, type) and issubclass(cls, Account.Event | Account.Opened)):
        return None
    if not cls.entry_type or any(hasattr(cls, name) for name in ENTRY_FIELDS):
        return None
    declared = entry_fields(cls)
    undeclared = tuple(name for name in ENTRY_FIELDS if name not in declared)
    return _Kind(cls.entry_type, getattr(cls, "class_version", 1), undeclared)


def _datetime(value: _Tagged) -> datetime:
    if value.type != _ISO_DATETIME or not isinstance(value.data, str):
        raise _NotFastError
    return datetime.fromisoformat(value.data)


def _plain_json(raw: msgspec.Raw) -> Any:
    """A nested value as the transcoder decodes it, if it holds no tagged object."""
    if not raw:
        return None
    data = bytes(raw)
    if data == b"{}":
        return {}  # most metadata
    if _TAGGED_MARK in data:
        raise _NotFastError
    return msgspec.json.decode(data)


def _fast_entry(
    kind: _Kind, position: int, originator_id: Any, version: int, state: bytes
) -> tuple[str, Entry]:
    s = _state_decoder.decode(state)
    if s.class_version != kind.class_version:
        raise _NotFastError  # an older version: the class's upcasts apply
    for name in kind.undeclared:
        value = getattr(s, name)
        if value is not None and (value or not isinstance(value, msgspec.Raw)):
            raise _NotFastError  # a key the class does not declare: the mapper decides
    return s.tenant_id, Entry(
        entry_id=entry_id(originator_id, version),
        account_id=s.account_id,
        type=kind.entry_type,
        amount=s.amount,
        balance=s.balance,
        available=s.balance - s.held,
        held=s.held,
        version=version,
        position=position,
        recorded_at=_datetime(s.timestamp),
        operation=s.operation,
        resource=s.resource,
        user_id=s.user_id,
        reason=s.reason,
        hold_id=s.hold_id,
        consumption_id=s.consumption_id,
        lot_id=s.lot_id,
        expires_at=None if s.expires_at is None else _datetime(s.expires_at),
        payment_ref=s.payment_ref,
        price=_plain_json(s.price),
        metadata=_plain_json(s.metadata) or None,
    )


def entries_of_rows(mapper: Mapper[UUID], rows: Iterable[Any]) -> list[tuple[str, Entry]]:
    """What `decode_entries` gives for the same rows, decoded straight from the stored JSON."""
    fast = mapper.cipher is None and mapper.compressor is None and not FIELDS_NOT_DECODED
    entries = []
    for position, originator_id, version, topic, state in rows:
        if not topic.startswith(ACCOUNT_TOPIC_PREFIX):
            continue
        kind = _account_event_kind(topic) if fast else None
        if kind is not None:
            try:
                entries.append(_fast_entry(kind, position, originator_id, version, state))
                continue
            except (_NotFastError, msgspec.DecodeError, ValueError):
                pass
        event = decode(mapper, originator_id, version, topic, state)
        entries.append((event.tenant_id, entry_from_event(event, position)))
    return entries


@dataclass
class Changes:
    """What a batch of entries does to the read models. A rebuild hands every batch the same
    `accounts` and `usage`, so they add up over the whole history."""

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

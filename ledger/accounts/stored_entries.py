"""Stored account events to entries: what the rows of the event store hold, decoded.

A stored row is `(notification_id, originator_id, originator_version, topic, state)`, a plain
tuple (an asyncpg Record reads as one), so this needs no database driver. Only the Account's
events make entries; every other aggregate's events are skipped by topic, before decoding.

It lives here, beside `Entry` and `entry_from_event`, because the format it reads is the
ledger's: the Account's event classes, their topics (pinned by ledger/topics.py) and the
mapper's transcoding (`ledger.store.application.new_mapper`). The read models
(projections/changes.py) and the NATS relay (events/relay.py) both decode with it, so neither
depends on the other for it; it is not the tailer's, because the rebuild and the auditor decode
rows the tailer never hands out.

`entries_of_rows` and `entry_fields_of_rows` decode on a fast path: msgspec reads the stored
JSON straight into the few fields an entry needs and skips the rest unparsed, instead of the
library's transcoder building every nested dict and a domain event object (decoding was most of
the follower's time, docs/BENCHMARKS.md "The rebuild"). The follower does not even build the
Entry: it encodes the fields as a dict, which gives the same JSON. Whatever the fast path does
not know (another class version, a value the transcoder would turn into an object, a cipher)
goes through the library's mapper, as `decode_entries` does for everything; the auditor keeps
`decode_entries`, so the two paths check each other.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import resolve_topic

from ledger.accounts.account import Account
from ledger.accounts.views import ENTRY_FIELDS, Entry, entry_fields, entry_from_event
from ledger.ids import entry_id

# Topics of the Account's events (pinned by ledger/topics.py): the only ones that make entries.
ACCOUNT_TOPIC_PREFIX = "ledger.account:Account."


def event_of_row(
    mapper: Mapper[UUID], originator_id: UUID, version: int, topic: str, state: bytes
) -> Any:
    """The domain event of one stored row (any aggregate's), through the library's mapper."""
    stored = StoredEvent(
        originator_id=originator_id, originator_version=version, topic=topic, state=bytes(state)
    )
    return mapper.to_domain_event(stored)


def account_events(mapper: Mapper[UUID], rows: Iterable[Any]) -> list[tuple[int, Any]]:
    """(position, event) of the Account's events among stored rows; the others are skipped by
    topic, before decoding."""
    return [
        (position, event_of_row(mapper, originator_id, version, topic, state))
        for position, originator_id, version, topic, state in rows
        if topic.startswith(ACCOUNT_TOPIC_PREFIX)
    ]


def decode_entries(mapper: Mapper[UUID], rows: Iterable[Any]) -> list[tuple[str, Entry]]:
    """(tenant_id, Entry) of every account event among stored rows, through the library's
    mapper and domain event objects."""
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
    actor_key_id: str | None = None
    actor: str | None = None


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
    # the optional entry fields it has, in Entry's order, each with how its stored value
    # becomes the entry's (None: as it is)
    declared: tuple[tuple[str, Callable[[Any], Any] | None], ...]


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
    # A class attribute that is no dataclass field (a constant of the class) would not be in
    # the stored state; a field's default (the actor of an event stored before it) is what an
    # absent key decodes to here too.
    fields = {field.name for field in dataclasses.fields(cls)}
    if not cls.entry_type or any(
        hasattr(cls, name) and name not in fields for name in ENTRY_FIELDS
    ):
        return None
    declared = entry_fields(cls)
    undeclared = tuple(name for name in ENTRY_FIELDS if name not in declared)
    converted = tuple((name, _CONVERTED.get(name)) for name in declared)
    return _Kind(cls.entry_type, getattr(cls, "class_version", 1), undeclared, converted)


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


def _metadata(raw: msgspec.Raw) -> Any:
    return _plain_json(raw) or None  # an entry leaves empty metadata out


_CONVERTED: dict[str, Callable[[Any], Any]] = {
    "expires_at": _datetime,
    "price": _plain_json,
    "metadata": _metadata,
}


def _fast_fields(
    kind: _Kind, position: int, originator_id: Any, version: int, state: bytes
) -> tuple[str, dict[str, Any]]:
    """(tenant_id, the fields of the row's Entry) in Entry's order, leaving out those that are
    None: `Entry(**fields)` is the entry, and encoding `fields` gives the same JSON as
    encoding it (Entry omits None), without building it."""
    s = _state_decoder.decode(state)
    if s.class_version != kind.class_version:
        raise _NotFastError  # an older version: the class's upcasts apply
    for name in kind.undeclared:
        value = getattr(s, name)
        if value is not None and (value or not isinstance(value, msgspec.Raw)):
            raise _NotFastError  # a key the class does not declare: the mapper decides
    balance, held = s.balance, s.held
    fields = {
        "entry_id": entry_id(originator_id, version),
        "account_id": s.account_id,
        "type": kind.entry_type,
        "amount": s.amount,
        "balance": balance,
        "available": balance - held,
        "held": held,
        "version": version,
        "position": position,
        "recorded_at": _datetime(s.timestamp),
    }
    for name, convert in kind.declared:
        value = getattr(s, name)
        if value is not None and convert is not None:
            value = convert(value)
        if value is not None:
            fields[name] = value
    return s.tenant_id, fields


def _fast_enabled(mapper: Mapper[UUID]) -> bool:
    return mapper.cipher is None and mapper.compressor is None and not FIELDS_NOT_DECODED


def entry_fields_of_rows(
    mapper: Mapper[UUID], rows: Iterable[Any]
) -> Iterator[tuple[str, dict[str, Any] | Entry]]:
    """(tenant_id, fields) of each account event among stored rows: the fields from
    `_fast_fields` (what `Entry(**fields)` would hold, without building it), or the Entry
    itself where the library's mapper decoded it."""
    fast = _fast_enabled(mapper)
    for position, originator_id, version, topic, state in rows:
        if not topic.startswith(ACCOUNT_TOPIC_PREFIX):
            continue
        kind = _account_event_kind(topic) if fast else None
        if kind is not None:
            try:
                yield _fast_fields(kind, position, originator_id, version, state)
                continue
            except (_NotFastError, msgspec.DecodeError, ValueError):
                pass
        event = event_of_row(mapper, originator_id, version, topic, state)
        yield event.tenant_id, entry_from_event(event, position)


def entries_of_rows(mapper: Mapper[UUID], rows: Iterable[Any]) -> list[tuple[str, Entry]]:
    """What `decode_entries` gives for the same rows, decoded straight from the stored JSON."""
    return [
        (tenant_id, fields if isinstance(fields, Entry) else Entry(**fields))
        for tenant_id, fields in entry_fields_of_rows(mapper, rows)
    ]

"""How the ledger's events are stored: the library's JSON format, written by msgspec, and read
back into typed values.

Encoding: `LedgerTranscoder` writes what the library's JSONTranscoder writes (UUIDs, Decimals
and datetimes as the library's tagged objects), faster; a msgspec struct (a lot, a draw, the
tenant's settings) is written as the JSON object of its fields, in order, which is what those
values were stored as when they were plain dicts. Decoding: the library's transcoder reads the
JSON back to plain values; `LedgerMapper` then turns the fields an event class types as structs
(and the `typed_state` a snapshotted aggregate declares) into those structs again.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    Transcoding,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic, resolve_topic

# Values a struct's fields keep as they are when it becomes a dict: the transcoder tags them.
_PASSTHROUGH = (datetime, UUID, Decimal)


# Values msgspec writes exactly as the library's json encoder does. A float is not among them
# (msgspec writes NaN as null): a state with one is written by the library's encoder.
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
_state_encoder = msgspec.json.Encoder()
# Stored in their own columns, not in the state.
_ID_KEYS = frozenset({"originator_id", "originator_version"})


class _UnusualValueError(Exception):
    """A value the fast path leaves to the library's encoder."""


class LedgerTranscoder(JSONTranscoder):
    """The library's JSON format, written by msgspec: the library's `JSONTranscoder` reads it
    back to the same objects, and reads what earlier versions wrote.

    The library's encoder spent about 30 µs of a consume's CPU on this machine in json's
    encoder and one Python `default` call per datetime (docs/BENCHMARKS.md). Here a walk of the
    state wraps each UUID, Decimal and datetime as the library does,
    `{"_type_": "datetime_iso", "_data_": "<isoformat>"}`, and msgspec writes the result. A state
    holding anything else (a float, a key that is not a string, a subclass of a plain type)
    goes to the library's encoder whole, so what is written never differs in meaning.
    Decoding is the library's.
    """

    def register(self, transcoding: Transcoding) -> None:
        if transcoding.type is datetime and not isinstance(transcoding, DatetimeAsISO):
            raise TypeError("_tagged writes datetimes as DatetimeAsISO does")
        super().register(transcoding)

    def encode(self, obj: Any) -> bytes:
        try:
            return _state_encoder.encode(self._tagged(obj))
        except (_UnusualValueError, msgspec.EncodeError, UnicodeEncodeError):
            return super().encode(_plain(obj))

    def encode_event(self, attributes: dict[str, Any], class_version: int) -> bytes:
        """`encode` of an event's state: its attributes but id and version, and its class
        version when above 1."""
        state = {key: value for key, value in attributes.items() if key not in _ID_KEYS}
        if class_version > 1:
            state["class_version"] = class_version
        return self.encode(state)

    def _tagged(self, value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            tagged = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise _UnusualValueError
                item_kind = type(item)
                if item_kind in _PLAIN_TYPES:
                    tagged[key] = item
                elif item_kind is datetime:  # every event has one: spare it a call
                    tagged[key] = {"_type_": "datetime_iso", "_data_": item.isoformat()}
                else:
                    tagged[key] = self._tagged(item)
            return tagged
        if kind is list or kind is tuple:
            return [item if type(item) in _PLAIN_TYPES else self._tagged(item) for item in value]
        if kind in _PLAIN_TYPES:
            return value
        if isinstance(value, msgspec.Struct):
            return self._tagged(msgspec.to_builtins(value, builtin_types=_PASSTHROUGH))
        transcoding = self.types.get(kind)
        if transcoding is None:
            raise _UnusualValueError
        return {"_type_": transcoding.name, "_data_": self._tagged(transcoding.encode(value))}


def _plain(obj: Any) -> Any:
    """The structs in a state as plain dicts, for the library's own encoder."""
    try:
        return msgspec.to_builtins(obj, builtin_types=_PASSTHROUGH)
    except TypeError:  # a value msgspec does not know: the library's encoder decides
        return obj


def _holds_struct(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return True
    return any(_holds_struct(arg) for arg in typing.get_args(annotation))


@functools.cache
def typed_fields(event_class: type) -> tuple[tuple[str, Any], ...]:
    """The fields of an event class whose values are (or hold) structs, with their types."""
    if not dataclasses.is_dataclass(event_class):
        return ()
    hints = typing.get_type_hints(event_class)
    return tuple(
        (f.name, hints[f.name])
        for f in dataclasses.fields(event_class)
        if _holds_struct(hints.get(f.name))
    )


def typed(value: Any, annotation: Any) -> Any:
    return msgspec.convert(value, type=annotation)


class LedgerMapper(Mapper[UUID]):
    """The library's mapper, with the event's state taken in one pass, and struct values read
    back as structs."""

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = super().to_domain_event(stored_event)
        state = vars(event)
        for name, annotation in typed_fields(type(event)):
            if name in state:
                state[name] = typed(state[name], annotation)
        if isinstance(event, Snapshot):
            aggregate_class = resolve_topic(event.topic)
            snapshot_state = event.state
            for name, annotation in getattr(aggregate_class, "typed_state", {}).items():
                if name in snapshot_state:
                    snapshot_state[name] = typed(snapshot_state[name], annotation)
        return event

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = vars(domain_event)
        return StoredEvent(
            originator_id=state["originator_id"],
            originator_version=state["originator_version"],
            topic=get_topic(type(domain_event)),
            state=self.encode_state(domain_event),
        )

    def encode_state(self, domain_event: Any) -> bytes:
        """The stored state of an event: its attributes but its id and version, as JSON."""
        class_version = getattr(type(domain_event), "class_version", 1)
        transcoder = self.transcoder
        assert isinstance(transcoder, LedgerTranscoder)  # new_mapper() builds every one
        stored = transcoder.encode_event(vars(domain_event), class_version)
        if self.compressor:
            stored = self.compressor.compress(stored)
        if self.cipher:
            stored = self.cipher.encrypt(stored)
        return stored


def new_transcoder() -> LedgerTranscoder:
    transcoder = LedgerTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DecimalAsStr())
    transcoder.register(DatetimeAsISO())
    return transcoder


def new_mapper() -> Mapper[UUID]:
    """The mapper of the Ledger's events, built without a database (followers, auditors)."""
    return LedgerMapper(transcoder=new_transcoder())

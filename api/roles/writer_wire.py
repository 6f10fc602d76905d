"""The messages between `ledger serve` and its writer process (api/writer_process.py).

Each message is a 4-byte big-endian length and a JSON document, encoded and decoded by msgspec
against the types below:
- serve to writer, works: `[[token, atomic, [envelope, ...]], ...]`, each envelope
  `{tenant_id, command, key_id}` with its command tagged by its `op` (the registry's commands,
  ledger/areas.py);
- writer to serve, answers: `[[stats...], [[token, kind, [outcome, ...], error], ...]]`, an
  outcome being `[view, created, replayed, value]` with `view` the index of the value's type
  in VIEW_TYPES (the registry's views).
JSON, not pickle or msgpack: as fast as msgspec goes for these shapes (about 1.5 µs to decode a
command, 3 µs an answer, against 4 and 7 µs unpickled), exact for integers of any size and for
timestamps with their UTC offsets, so an answer is byte for byte what the writer's thread gives.
Errors, rare, travel pickled (LedgerError pickles with its attributes), as does any answer of a
type not listed here.
"""

from __future__ import annotations

import pickle
from typing import Any, Union

import msgspec
import structlog

from ledger.areas import REGISTRY
from ledger.commands import Envelope
from ledger.errors import LedgerError
from ledger.outcome import Outcome

log = structlog.get_logger("api.roles.writer_wire")

# Bytes of a message's length prefix.
LENGTH_BYTES = 4

COMMAND_TYPES = REGISTRY.command_types
AnyCommand = Union[COMMAND_TYPES]  # type: ignore[valid-type]  # noqa: UP007 - built from a tuple
Work = tuple[int, bool, list[Envelope[AnyCommand]]]

VIEW_TYPES: tuple[type[msgspec.Struct], ...] = tuple(REGISTRY.view_types.values())
_VIEW_INDEX = {view: index for index, view in enumerate(VIEW_TYPES)}
_VIEW_DECODERS = [msgspec.json.Decoder(view) for view in VIEW_TYPES]

# An answer's kind: one outcome, an atomic batch's outcomes, an error, anything else (pickled).
ONE, MANY, ERROR, PICKLED = 0, 1, 2, 3
WireOutcome = tuple[int, bool, bool, msgspec.Raw]
Answer = tuple[int, int, list[WireOutcome], bytes]


class Stats(msgspec.Struct, array_like=True, frozen=True):
    """The writer's counters, sent with every answer (GET /metrics). All but
    `cached_aggregates` are sums since the child started; the times are in microseconds."""

    batches_committed: int = 0
    commands_committed: int = 0
    batches_rerun: int = 0
    cached_aggregates: int = 0
    apply_us: int = 0
    commit_us: int = 0
    queued_us: int = 0
    works_answered: int = 0

    def plus(self, other: Stats) -> Stats:
        """Both sums added (a child that died, then its replacement); `cached_aggregates`,
        a gauge, is the other's."""
        sums = [
            mine + theirs
            for mine, theirs in zip(
                msgspec.structs.astuple(self), msgspec.structs.astuple(other), strict=True
            )
        ]
        return msgspec.structs.replace(Stats(*sums), cached_aggregates=other.cached_aggregates)


_encoder = msgspec.json.Encoder()
_works_decoder = msgspec.json.Decoder(list[Work])
_answers_decoder = msgspec.json.Decoder(tuple[Stats, list[Answer]])


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def encode_work(token: int, atomic: bool, commands: list[Envelope[Any]]) -> bytes:
    """One work, encoded when it is queued: a command that cannot be encoded fails its own
    caller, not the message it would have shared."""
    return _encoder.encode((token, atomic, commands))


def works_message(encoded: list[bytes]) -> bytes:
    return frame(b"[" + b",".join(encoded) + b"]")


def decode_works(
    body: bytes | bytearray | memoryview,
) -> list[tuple[int, bool, list[Envelope[Any]]]]:
    works: list[tuple[int, bool, list[Envelope[Any]]]] = _works_decoder.decode(body)
    return works


def _wire_outcome(outcome: Outcome) -> tuple[int, bool, bool, msgspec.Struct]:
    return (_VIEW_INDEX[type(outcome.value)], outcome.created, outcome.replayed, outcome.value)


def _encode_answer(token: int, result: Any) -> bytes:
    """One answer; never raises: what cannot be encoded goes as an error in its place."""
    try:
        if isinstance(result, Outcome):
            return _encoder.encode((token, ONE, [_wire_outcome(result)], b""))
        if isinstance(result, list):
            return _encoder.encode((token, MANY, [_wire_outcome(o) for o in result], b""))
    except (KeyError, TypeError, ValueError):  # a value of another type: it travels pickled
        pass
    try:
        kind = ERROR if isinstance(result, BaseException) else PICKLED
        return _encoder.encode((token, kind, [], pickle.dumps(portable(result))))
    except Exception as error:
        log.exception("writer_answer_unencodable", token=token)
        failed = RuntimeError(f"the answer could not be sent: {type(error).__name__}")
        return _encoder.encode((token, ERROR, [], pickle.dumps(failed)))


def answers_messages(stats: Stats, pairs: list[tuple[Any, Any]], bytes_budget: int) -> list[bytes]:
    """A batch's answers in as many messages as keep each under `bytes_budget` (one answer
    larger than that still goes, alone). The first carries `stats`; so does every other."""
    head = _encoder.encode(stats)
    messages: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for token, result in pairs:
        part = _encode_answer(token, result)
        if parts and size + len(part) > bytes_budget:
            messages.append(_answers_frame(head, parts))
            parts, size = [], 0
        parts.append(part)
        size += len(part) + 1
    if parts or not messages:
        messages.append(_answers_frame(head, parts))
    return messages


def _answers_frame(head: bytes, parts: list[bytes]) -> bytes:
    return frame(b"[" + head + b",[" + b",".join(parts) + b"]]")


def decode_answers(body: bytes) -> tuple[Stats, list[tuple[int, Any]]]:
    """Raises msgspec.DecodeError for a message that is not one (the connection is then
    dropped); one answer that does not decode fails its own caller only, with a RuntimeError."""
    stats, answers = _answers_decoder.decode(body)
    return stats, [
        (token, _result(kind, outcomes, blob)) for token, kind, outcomes, blob in answers
    ]


def _result(kind: int, outcomes: list[WireOutcome], blob: bytes) -> Any:
    try:
        if kind == ONE:
            return _outcome(outcomes[0])
        if kind == MANY:
            return [_outcome(outcome) for outcome in outcomes]
        return pickle.loads(blob)  # noqa: S301 - from our own child, over an inherited socket
    except Exception as error:
        log.exception("writer_answer_undecodable", kind=kind)
        return RuntimeError(f"the writer's answer could not be read: {type(error).__name__}")


def _outcome(wire: WireOutcome) -> Outcome:
    view, created, replayed, value = wire
    return Outcome(value=_VIEW_DECODERS[view].decode(value), created=created, replayed=replayed)


def portable(result: Any) -> Any:
    """An error the parent can unpickle: a crash that is not a LedgerError travels as a
    RuntimeError with its text (its class may not pickle); the parent answers it with a 500."""
    if isinstance(result, BaseException) and not isinstance(result, LedgerError):
        return RuntimeError(f"{type(result).__name__}: {result}")
    return result

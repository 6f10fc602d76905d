"""The Ledger application: the event store on PostgreSQL, its mapper and its snapshot store.

Configuration is passed in (a database URL and a schema); the library's habit of reading
os.environ is switched off, so settings are read once, by api/.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import msgspec
import psycopg
from eventsourcing.application import Application
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
from eventsourcing.utils import Environment, get_topic

from ledger.accounts.records import StoredResult
from ledger.errors import InvalidCommandError
from ledger.store.recorder import EventColumns, StoredRow

# psycopg connections the writer's thread and the snapshot/lookup calls may hold at once.
STORE_POOL_SIZE = 4
STORE_POOL_OVERFLOW = 4
# Seconds to wait for the events table lock before giving up (the writer then retries).
STORE_LOCK_TIMEOUT_S = 5
# The advisory lock of a schema's event-store DDL is (STORE_DDL_LOCK_CLASS, hashtext(schema)):
# a constant every writer agrees on ("lsdd"), apart from the read models' DDL lock.
STORE_DDL_LOCK_CLASS = 0x6C73_6464
# Seconds to wait for a pooled connection. The library retries a failed write 10 times, so an
# unreachable store answers `unavailable` after about ten times this.
STORE_CONNECT_TIMEOUT_S = 2


def postgres_env(
    database_url: str, schema: str = "public", connect_timeout_s: int = STORE_CONNECT_TIMEOUT_S
) -> dict[str, str]:
    """The library's settings for a `postgresql://user:pw@host:port/db?host=/socket/dir` URL."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise InvalidCommandError("database URL must start with postgresql://")
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(STORE_POOL_SIZE),
        "POSTGRES_MAX_OVERFLOW": str(STORE_POOL_OVERFLOW),
        "POSTGRES_LOCK_TIMEOUT": str(STORE_LOCK_TIMEOUT_S),
        "POSTGRES_CONNECT_TIMEOUT": str(connect_timeout_s),
        # No ping per checkout (a round trip per transaction): a dead connection fails its
        # statement instead, and the library retries on a fresh one.
        "POSTGRES_PRE_PING": "n",
        "CREATE_TABLE": "y",
        "APPLICATION_RECORDER_TOPIC": "ledger.store.recorder:LedgerRecorder",
    }


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
            return super().encode(obj)

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
        transcoding = self.types.get(kind)
        if transcoding is None:
            raise _UnusualValueError
        return {"_type_": transcoding.name, "_data_": self._tagged(transcoding.encode(value))}


class LedgerMapper(Mapper[UUID]):
    """The library's mapper, with the event's state taken in one pass."""

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


@contextlib.contextmanager
def store_ddl_lock(
    database_url: str, schema: str, connect_timeout_s: int = STORE_CONNECT_TIMEOUT_S
) -> Iterator[None]:
    """Holds the schema's event-store DDL lock (a session's advisory lock, on a connection of
    its own) while the library creates the tables. Its `CREATE … IF NOT EXISTS` statements
    are not safe when replicas start at once on a fresh schema: two sessions can both find a
    name free, and one fails on a unique violation in pg_type or pg_class."""
    with psycopg.connect(database_url, connect_timeout=connect_timeout_s, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (STORE_DDL_LOCK_CLASS, schema))
        yield  # the lock ends with the session


def new_transcoder() -> LedgerTranscoder:
    transcoder = LedgerTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DecimalAsStr())
    transcoder.register(DatetimeAsISO())
    return transcoder


def new_mapper() -> Mapper[UUID]:
    """The mapper of the Ledger's events, built without a database (followers, auditors)."""
    return LedgerMapper(transcoder=new_transcoder())


class Ledger(Application[UUID]):
    """Tables: `ledger_events` (the record, in notification_id order) and `ledger_snapshots`."""

    name = "Ledger"
    is_snapshotting_enabled = True
    snapshot_class = Snapshot

    def __init__(
        self,
        database_url: str,
        schema: str = "public",
        connect_timeout_s: int = STORE_CONNECT_TIMEOUT_S,
    ) -> None:
        env = postgres_env(database_url, schema, connect_timeout_s)
        with store_ddl_lock(database_url, schema, connect_timeout_s):
            super().__init__(env=env)  # creates the tables that are missing

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Only what was passed in: the library would otherwise read os.environ."""
        return Environment(name, {**dict(env or {}), "IS_SNAPSHOTTING_ENABLED": "y"})

    def construct_mapper(self) -> Mapper[UUID]:
        """The same mapper as the followers' (no compressor or cipher is configured)."""
        return new_mapper()

    def collect(self, aggregates: Iterable[Any]) -> EventColumns:
        """Takes the aggregates' pending events and encodes them as the insert's four arrays,
        in the order they are stored (the CPU half of the library's `save`; `record` is the
        store's half). It makes no StoredEvent per event."""
        mapper = self.mapper
        assert isinstance(mapper, LedgerMapper)
        columns = EventColumns([], [], [], [])
        for aggregate in aggregates:
            for event in aggregate.collect_events():
                state = vars(event)
                columns.add(
                    state["originator_id"],
                    state["originator_version"],
                    get_topic(type(event)),
                    mapper.encode_state(event),
                )
        return columns

    def record(
        self, columns: EventColumns, results: Sequence[StoredRow] = ()
    ) -> dict[tuple[UUID, int], int]:
        """Stores collected events and the results in one transaction. Returns each event's
        position by (originator id, version): no Recording nor Notification per event."""
        recorder: Any = self.recorder
        positions: dict[tuple[UUID, int], int] = recorder.insert_columns(columns, results)
        return positions

    @property
    def events_table(self) -> str:
        recorder: Any = self.recorder
        return f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'

    def positions_of(self, refs: Iterable[tuple[UUID, int]]) -> dict[tuple[UUID, int], int]:
        """The notification ids (ledger positions) of stored events, by (originator, version)."""
        refs = list(refs)
        if not refs:
            return {}
        recorder: Any = self.recorder
        ids = [ref[0] for ref in refs]
        versions = [ref[1] for ref in refs]
        sql = (
            f"SELECT e.originator_id, e.originator_version, e.notification_id "
            f"FROM {self.events_table} e JOIN unnest(%b::uuid[], %b::bigint[]) AS r(id, v) "
            f"ON e.originator_id = r.id AND e.originator_version = r.v"
        )
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(sql, (ids, versions), binary=True)
            rows = cursor.fetchall()
        return {
            (row["originator_id"], row["originator_version"]): row["notification_id"]
            for row in rows
        }

    def stored_ids(self, aggregate_ids: Iterable[UUID]) -> set[UUID]:
        """Which of the given aggregates have events: one query for a whole batch's lookups."""
        wanted = list(aggregate_ids)
        if not wanted:
            return set()
        recorder: Any = self.recorder
        sql = (
            f"SELECT DISTINCT originator_id FROM {self.events_table} "
            f"WHERE originator_id = ANY(%b::uuid[])"
        )
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(sql, (wanted,), binary=True)
            return {row["originator_id"] for row in cursor.fetchall()}

    def stored_results(self, ids: Iterable[UUID]) -> dict[UUID, StoredResult]:
        """The stored results (idempotency keys, payment refs) among the given ids."""
        recorder: Any = self.recorder
        rows = recorder.select_results(list(ids))
        return {row.id: StoredResult.from_row(row) for row in rows}

    def stored_state(self, originator_id: UUID, version: int) -> bytes | None:
        """The stored state of one event, or None when there is none."""
        recorder: Any = self.recorder
        sql = (
            f"SELECT state FROM {self.events_table} "
            f"WHERE originator_id = %s AND originator_version = %s"
        )
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(sql, (originator_id, version))
            row = cursor.fetchone()
        return None if row is None else bytes(row["state"])

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

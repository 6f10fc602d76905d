"""The Ledger application: the event store on PostgreSQL and its snapshot store.

Configuration is passed in (a database URL and a schema); the library's habit of reading
os.environ is switched off, so settings are read once, by api/settings.py. Stored events
are encoded and decoded by ledger/store/transcoder.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import Environment, get_topic

from ledger.errors import InvalidCommandError
from ledger.store.availability import StoreGate, install_gate
from ledger.store.recorder import EventColumns, StoredRow
from ledger.store.stored_results import StoredResult
from ledger.store.transcoder import LedgerMapper, new_mapper

# psycopg connections the writer's thread and the snapshot/lookup calls may hold at once.
STORE_POOL_SIZE = 4
STORE_POOL_OVERFLOW = 4
# Seconds to wait for the events table lock before giving up (the writer then retries).
STORE_LOCK_TIMEOUT_S = 5
# The advisory lock of a schema's event-store DDL is (STORE_DDL_LOCK_CLASS, hashtext(schema)):
# a constant every writer agrees on ("lsdd"), apart from the read models' DDL lock.
STORE_DDL_LOCK_CLASS = 0x6C73_6464
# Seconds to wait for a pooled connection. A store that cannot be reached closes the store's
# gate (ledger/store/availability.py) at the first failure, so this bounds one wait, not ten.
STORE_CONNECT_TIMEOUT_S = 1


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
        recorder: Any = self.recorder
        # Every recorder of this application shares the datastore: one gate for all of them.
        self.store_gate: StoreGate = install_gate(recorder.datastore)

    def close(self) -> None:
        self.store_gate.close()
        super().close()

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

    def load_many(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, Any]:
        """The aggregates among the ids that have events, each as `repository.get` makes it
        (its last snapshot, then the events after it), in two queries for all of them rather
        than two each: a batch of commands on accounts no writer has cached (the scheduler's
        expiries) loads them together."""
        wanted = list(set(aggregate_ids))
        if not wanted:
            return {}
        recorder: Any = self.recorder
        found: dict[UUID, Any] = {}
        after: dict[UUID, int] = dict.fromkeys(wanted, 0)
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            if self.snapshots is not None:
                snapshot_recorder: Any = self.snapshots.recorder
                table = (
                    f'"{snapshot_recorder.datastore.schema}".'
                    f'"{snapshot_recorder.events_table_name}"'
                )
                cursor.execute(
                    f"SELECT DISTINCT ON (originator_id) originator_id, originator_version, "
                    f"topic, state FROM {table} WHERE originator_id = ANY(%b::uuid[]) "
                    f"ORDER BY originator_id, originator_version DESC",
                    (wanted,),
                    binary=True,
                )
                for row in cursor.fetchall():
                    snapshot: Any = self.snapshots.mapper.to_domain_event(_stored(row))
                    found[row["originator_id"]] = snapshot.mutate(None)
                    after[row["originator_id"]] = row["originator_version"]
            cursor.execute(
                f"SELECT e.originator_id, e.originator_version, e.topic, e.state "
                f"FROM {self.events_table} e JOIN unnest(%b::uuid[], %b::bigint[]) AS r(id, v) "
                f"ON e.originator_id = r.id AND e.originator_version > r.v "
                f"ORDER BY e.originator_id, e.originator_version",
                (list(after), list(after.values())),
                binary=True,
            )
            rows = cursor.fetchall()
        for row in rows:
            event: Any = self.mapper.to_domain_event(_stored(row))
            found[row["originator_id"]] = event.mutate(found.get(row["originator_id"]))
        return found

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


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )

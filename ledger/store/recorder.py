"""The event store's insert: one INSERT ... SELECT FROM unnest(...) per batch, with the batch's
stored results (answers kept per idempotency key or payment_ref, ADR 0002) in the same statement.

The library's recorder sends a batch as an executemany in psycopg's pipeline mode. Over a Unix
socket (the embedded PostgreSQL) that pipeline was seen to stall for good, the server waiting
for the rest of a message the client believed sent. Sending the batch as four arrays in one
statement has no pipeline, needs one round trip, and keeps what matters of the original: the
EXCLUSIVE table lock (so notification ids commit in the order they are issued and a follower
never passes over a gap that fills later), the NOTIFY, and the ids returned per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.sql import SQL, Composed, Identifier, Literal

# The stored results' table, beside the events table in the same schema.
RESULTS_TABLE = "ledger_results"
# The topic of a tenant's first event (ledger.tenants.tenant.Tenant.Created, pinned by
# ledger/topics.py): a partial index on it lets the operator list tenants without a scan of
# every event (projections/tenant_directory.py; tests/unit/test_tenant_directory.py holds the two
# to each other).
TENANT_CREATED_TOPIC = "ledger.tenant:Tenant.Created"
TENANT_CREATED_INDEX = "ledger_events_tenant_created"
# The topic under which versions before issue 6 stored answers as events.
LEGACY_RESULT_TOPIC = "ledger.records:StoredResult.Recorded"
_RESULT_COLUMNS = "id, fingerprint, result_type, result, created, entry_id, entry_version"
# %b: binary parameters. psycopg's text dumper escapes every array element with a regex.
_RESULT_ARRAYS = (
    "%b::uuid[], %b::text[], %b::text[], %b::bytea[], %b::bool[], %b::uuid[], %b::bigint[]"
)


class StoredRow(NamedTuple):
    """One stored result as the table holds it (ledger.store.stored_results.StoredResult is the domain's)."""

    id: UUID
    fingerprint: str
    result_type: str
    result: bytes
    created: bool
    entry_id: UUID | None
    entry_version: int | None


class EventColumns(NamedTuple):
    """A batch's events as the insert's four arrays, in the order they are stored."""

    originator_ids: list[Any]
    originator_versions: list[int]
    topics: list[str]
    states: list[bytes]

    def add(self, originator_id: Any, originator_version: int, topic: str, state: bytes) -> None:
        self.originator_ids.append(originator_id)
        self.originator_versions.append(originator_version)
        self.topics.append(topic)
        self.states.append(state)


class LedgerRecorder(PostgresApplicationRecorder):
    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema, events, results = (
            Identifier(datastore.schema),
            Identifier(events_table_name),
            Identifier(RESULTS_TABLE),
        )
        self.results_table = SQL("{0}.{1}").format(schema, results)
        # Created once, and then filled with the answers that earlier versions kept as
        # StoredResult events (ADR 0002), so no key or payment_ref is forgotten by an upgrade.
        self.sql_create_statements.append(
            SQL(
                "DO $create_results$ BEGIN IF to_regclass({qualified}) IS NULL THEN "
                "CREATE TABLE {0}.{1} ("
                "id uuid PRIMARY KEY, fingerprint text NOT NULL, result_type text NOT NULL, "
                "result bytea NOT NULL, created boolean NOT NULL, entry_id uuid, "
                "entry_version bigint); "
                "INSERT INTO {0}.{1} (" + _RESULT_COLUMNS + ") "
                "SELECT e.originator_id, s->>'fingerprint', s->>'result_type', "
                "convert_to((s->'result')::text, 'UTF8'), (s->>'created')::boolean, "
                "(s->'entry_ref'->>0)::uuid, (s->'entry_ref'->>1)::bigint "
                "FROM {0}.{2} e, LATERAL (SELECT convert_from(e.state, 'UTF8')::jsonb AS s) j "
                "WHERE e.topic = {legacy_topic}; "
                "END IF; END $create_results$"
            ).format(
                schema,
                results,
                events,
                qualified=Literal(f'"{datastore.schema}"."{RESULTS_TABLE}"'),
                legacy_topic=Literal(LEGACY_RESULT_TOPIC),
            )
        )
        # Only tenants' first events are in it: an insert of any other event leaves it alone.
        # Built once, by the first start after the upgrade (one pass over the events table).
        self.sql_create_statements.append(
            SQL(
                "CREATE INDEX IF NOT EXISTS {0} ON {1}.{2} (notification_id) WHERE topic = {3}"
            ).format(
                Identifier(TENANT_CREATED_INDEX), schema, events, Literal(TENANT_CREATED_TOPIC)
            )
        )
        insert_events = SQL(
            "INSERT INTO {0}.{1} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING originator_id, originator_version, notification_id"
        ).format(schema, events)
        self.insert_unnest_statement = insert_events
        # One statement, so one round trip, for a batch's events and its results: a result
        # whose id is taken fails the whole statement (a unique violation, which the writer
        # treats as a conflict), so no answer is ever stored without its events or twice.
        self.insert_with_results_statement: Composed = (
            SQL(
                "WITH results AS (INSERT INTO {0} (" + _RESULT_COLUMNS + ") "
                "SELECT * FROM unnest(" + _RESULT_ARRAYS + ")) "
            ).format(self.results_table)
            + insert_events
        )
        self.insert_results_statement: Composed = SQL(
            "INSERT INTO {0} (" + _RESULT_COLUMNS + ") SELECT * FROM unnest(" + _RESULT_ARRAYS + ")"
        ).format(self.results_table)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        columns = EventColumns([], [], [], [])
        for event in stored_events:
            columns.add(event.originator_id, event.originator_version, event.topic, event.state)
        positions = self.insert_columns(columns, kwargs.get("results") or ())
        return [
            positions[(event.originator_id, event.originator_version)] for event in stored_events
        ]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_columns(
        self, columns: EventColumns, results: Sequence[StoredRow] = ()
    ) -> dict[tuple[Any, int], int]:
        """Inserts the events and the results in one transaction; the events' notification ids
        (positions) by (originator_id, originator_version)."""
        if not columns.originator_ids and not results:
            return {}
        result_columns = tuple(list(column) for column in zip(*results, strict=True))
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cursor:
            if not columns.originator_ids:
                cursor.execute(self.insert_results_statement, result_columns, binary=True)
                return {}
            for statement in self.lock_table_statements:
                cursor.execute(statement, prepare=True)
            cursor.execute(SQL("NOTIFY {0}").format(Identifier(self.channel_name)))
            if results:
                cursor.execute(
                    self.insert_with_results_statement, result_columns + columns, binary=True
                )
            else:
                cursor.execute(self.insert_unnest_statement, columns, binary=True)
            rows = cursor.fetchall()
        return {
            (row["originator_id"], row["originator_version"]): row["notification_id"]
            for row in rows
        }

    def select_results(self, ids: Sequence[UUID]) -> list[StoredRow]:
        """The stored results among the given ids (one query for a whole batch's keys)."""
        if not ids:
            return []
        statement = SQL("SELECT " + _RESULT_COLUMNS + " FROM {0} WHERE id = ANY(%b::uuid[])")
        with self.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement.format(self.results_table), (list(ids),), binary=True)
            return [StoredRow(**row) for row in cursor.fetchall()]

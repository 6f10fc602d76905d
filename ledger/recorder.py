"""The event store's insert: one INSERT ... SELECT FROM unnest(...) per batch.

The library's recorder sends a batch as an executemany in psycopg's pipeline mode. Over a Unix
socket (the embedded PostgreSQL) that pipeline was seen to stall for good, the server waiting
for the rest of a message the client believed sent. Sending the batch as four arrays in one
statement has no pipeline, needs one round trip, and keeps what matters of the original: the
EXCLUSIVE table lock (so notification ids commit in the order they are issued and a follower
never passes over a gap that fills later), the NOTIFY, and the ids returned per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier


class LedgerRecorder(PostgresApplicationRecorder):
    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.insert_unnest_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) "
            "RETURNING originator_id, originator_version, notification_id"
        ).format(schema=Identifier(datastore.schema), table=Identifier(events_table_name))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        columns = (
            [event.originator_id for event in stored_events],
            [event.originator_version for event in stored_events],
            [event.topic for event in stored_events],
            [event.state for event in stored_events],
        )
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cursor:
            for statement in self.lock_table_statements:
                cursor.execute(statement, prepare=True)
            cursor.execute(SQL("NOTIFY {0}").format(Identifier(self.channel_name)))
            cursor.execute(self.insert_unnest_statement, columns, binary=True)
            rows = cursor.fetchall()
        ids = {
            (row["originator_id"], row["originator_version"]): row["notification_id"]
            for row in rows
        }
        return [ids[(event.originator_id, event.originator_version)] for event in stored_events]

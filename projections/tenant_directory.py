"""The tenants there are, for the operator's list (`GET /v1/tenants`): a query of the tenants'
first events (`Tenant.Created`) in the event store, not a read model.

Tenants are few and change rarely; the events table holds a partial index of exactly those
events (ledger/store/recorder.py, TENANT_CREATED_INDEX), so the query reads one index entry
per tenant and never the accounts' events. It lists the tenant ids in order; their current
name, settings and status are read from the Tenant aggregates themselves (api/http/tenants.py).
"""

from __future__ import annotations

import asyncpg

from ledger.store.recorder import TENANT_CREATED_TOPIC

# The topic is written into the statement, not bound: PostgreSQL uses a partial index only
# when it can see that the query's condition is the index's.
_TOPIC_LITERAL = "'" + TENANT_CREATED_TOPIC.replace("'", "''") + "'"


async def tenant_ids(
    pool: asyncpg.Pool, schema: str, prefix: str, after: str, limit: int
) -> list[str]:
    """At most `limit` tenant ids starting with `prefix` and sorted after `after`, in order."""
    rows = await pool.fetch(
        f"SELECT tenant_id FROM (SELECT convert_from(state, 'UTF8')::jsonb ->> 'tenant_id' "
        f'AS tenant_id FROM "{schema}".ledger_events WHERE topic = {_TOPIC_LITERAL}) created '
        f'WHERE starts_with(tenant_id, $1) AND tenant_id > $2 COLLATE "C" '
        f'ORDER BY tenant_id COLLATE "C" LIMIT $3',
        prefix,
        after,
        limit,
    )
    return [str(row["tenant_id"]) for row in rows]

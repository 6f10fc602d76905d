"""`ledger replay` writes a tenant's history from the event store, one Entry per line;
`ledger verify` recomputes every balance from such a file alone, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import msgspec

from api.roles.embedded import database_url
from api.settings import Settings
from ledger.ids import check_tenant_id
from ledger.store.transcoder import new_mapper
from projections.audit import entry_encoder, read_replay_file, replay, verify_entries


async def run_replay(settings: Settings, tenant_id: str, out: Path) -> None:
    check_tenant_id(tenant_id)
    conn = await asyncpg.connect(database_url(settings))
    count = 0
    try:
        with out.open("wb") as file:
            async for entry in replay(conn, settings.schema, new_mapper(), tenant_id):
                file.write(entry_encoder.encode(entry) + b"\n")
                count += 1
    finally:
        await conn.close()
    print(f"wrote {count:,} entries of tenant {tenant_id} to {out}")


def run_verify(path: Path) -> int:
    """Recomputes every balance from the file alone; exit status 1 on any mismatch."""
    with path.open("rb") as file:
        try:
            result = verify_entries(read_replay_file(file))
        except msgspec.DecodeError as error:
            print(f"{path}: not a replay file: {error}", file=sys.stderr)
            return 2
    for account_id, state in sorted(result.accounts.items()):
        print(
            f"  {account_id}: balance {state.balance}, held {state.held}, {state.entries} entries"
        )
    print(
        f"{result.entries:,} entries, {len(result.accounts):,} accounts, {result.mismatch_count} mismatches"
    )
    for line in result.mismatches:
        print(f"  MISMATCH {line}")
    return 0 if result.ok else 1

"""The `ledger` command: `ledger serve` runs the service, `ledger demo` a scripted session.

Run it as `python -m api ...` or, once installed, `ledger ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import msgspec
import structlog

from api.http.app import create_app
from api.roles.database import ensure_schema
from api.roles.embedded import start_nats, start_postgres
from api.roles.garbage_collector import tune_collector
from api.roles.logs import configure_logging
from api.roles.runtime import relay_connector
from api.roles.supervisor import Supervisor, child_environ
from api.settings import Settings, settings_from_env
from events.relay import Relay
from ledger.accounts.commands import ConsumeCredits, GrantCredits, OpenAccount
from ledger.commands import Command, Envelope
from ledger.errors import LedgerError
from ledger.ids import check_tenant_id
from ledger.store.application import Ledger
from ledger.store.transcoder import new_mapper
from ledger.tenants.commands import CreateTenant
from ledger.tenants.settings import TenantSettings
from ledger.writer.writer import Writer
from projections.audit import entry_encoder, read_replay_file, replay, verify_entries
from projections.follower import Follower

log = structlog.get_logger("api.roles.cli")


# Seconds uvicorn gives in-flight requests to finish on shutdown (the writer drains after).
GRACEFUL_SHUTDOWN_S = 30


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return start_postgres(settings.data_dir)


def admin_key(settings: Settings) -> str:
    """LEDGER_ADMIN_KEY, else one generated once and kept in the data directory (mode 0600)."""
    if settings.admin_key:
        return settings.admin_key
    path = settings.data_dir / "admin_key"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = "lk_admin_" + secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def serve(settings: Settings) -> None:
    import uvicorn  # noqa: PLC0415 - only the serve role needs it

    url = database_url(settings)
    ensure_schema(url, settings.schema)
    nats_url = settings.nats_url or start_nats(settings.data_dir)
    resolved = msgspec.structs.replace(
        settings, database_url=url, nats_url=nats_url, admin_key=admin_key(settings)
    )
    print(f"credits ledger on http://{settings.host}:{settings.port}", flush=True)
    print(f"  admin key: {resolved.admin_key}", flush=True)
    print(f"  database:  {url}", flush=True)
    print(f"  nats:      {nats_url}", flush=True)
    print(f"  API docs:  http://{settings.host}:{settings.port}/schema", flush=True)
    supervisor = None
    if settings.background == "process":
        roles = [
            role
            for role, on in (("project", settings.run_follower), ("relay", settings.run_relay))
            if on
        ]
        # The event store before the children, which read it from their first step. The
        # read models' and the relay's tables each role creates itself: projections.schema's
        # DDL lock keeps them from racing.
        Ledger(url, settings.schema).close()
        supervisor = Supervisor(
            roles,
            child_environ(os.environ, database_url=url, nats_url=nats_url, schema=settings.schema),
        )
        resolved = msgspec.structs.replace(
            resolved, writer_process=True, run_follower=False, run_relay=False
        )
    app = create_app(resolved)
    tune_collector()
    # uvicorn re-raises the signal it stopped on; exit through Python so the embedded servers'
    # atexit handlers stop them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if supervisor is not None:
            supervisor.start()
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()  # before the embedded NATS and PostgreSQL stop


async def run_demo(settings: Settings) -> None:
    """A first session with the ledger core, printed step by step."""
    url = database_url(settings)
    ensure_schema(url, settings.schema)
    ledger = Ledger(url, schema=settings.schema)
    writer = Writer(ledger)
    writer.start()
    tenant_id = "demo"
    steps: list[tuple[str, Command]] = [
        (
            "create tenant",
            CreateTenant(
                tenant_id=tenant_id, name="Demo", settings=TenantSettings(signup_bonus=100)
            ),
        ),
        ("open account", OpenAccount(account_id="ada@example.com")),
        (
            "grant 500",
            GrantCredits(account_id="ada@example.com", amount=500, reason="welcome pack"),
        ),
        (
            "consume 120",
            ConsumeCredits(
                account_id="ada@example.com",
                amount=120,
                operation="IMAGE_GENERATION",
                idempotency_key="demo-consume-1",
            ),
        ),
        (
            "consume 10,000",
            ConsumeCredits(
                account_id="ada@example.com", amount=10_000, operation="VIDEO_GENERATION"
            ),
        ),
    ]
    try:
        for title, command in steps:
            try:
                outcome = await writer.submit(Envelope(tenant_id=tenant_id, command=command))
            except LedgerError as error:
                print(f"{title:>16}: {error.code}: {error.detail}")
                continue
            value = outcome.value
            summary = {
                k: getattr(value, k)
                for k in ("balance", "available", "position")
                if hasattr(value, k)
            }
            note = " (replayed: it ran before)" if outcome.replayed else ""
            print(f"{title:>16}: {type(value).__name__} {summary}{note}")
    finally:
        await writer.stop()
        ledger.close()


async def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Runs a long-lived role until SIGINT or SIGTERM, which it answers by stopping cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tune_collector()
    await run(stop)


async def run_project(settings: Settings) -> None:
    """The follower alone: active, or standby while another holds the lock."""
    follower = Follower(
        database_url(settings),
        settings.schema,
        new_mapper(),
        batch_size_max=settings.follower_batch_size,
    )
    await run_until_signalled(follower.run)


async def run_relay(settings: Settings) -> None:
    """The NATS relay alone: active, or standby while another holds the lock."""
    nats_url = settings.nats_url or start_nats(settings.data_dir)
    relay = Relay(
        database_url(settings),
        settings.schema,
        new_mapper(),
        relay_connector(nats_url),
        stream_name=settings.stream_name,
    )
    await run_until_signalled(relay.run)


async def run_rebuild(settings: Settings) -> None:
    follower = Follower(database_url(settings), settings.schema, new_mapper())
    # A rebuild holds every account in memory: with the default thresholds, each full
    # collection would walk them all again, every few thousand events.
    tune_collector()
    started = time.monotonic()

    def progress(events: int, position: int) -> None:
        rate = events / max(time.monotonic() - started, 1e-6)
        bar = "#" * min(40, events // 25_000)
        print(
            f"\r  [{bar:<40}] {events:>10,} events  position {position:>10,}  {rate:>9,.0f}/s",
            end="",
            flush=True,
        )

    print("rebuilding the read models from position 0")
    total, seconds = await follower.rebuild(progress)
    print(
        f"\nrebuilt: {total:,} events in {seconds:.1f} s ({total / max(seconds, 1e-6):,.0f} events/s)"
    )


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledger", description="The credits ledger.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP API with its writer (embedded servers by default)")
    sub.add_parser("demo", help="run a short scripted session against the ledger core")
    sub.add_parser("project", help="run the read-model follower alone (standby if one is active)")
    sub.add_parser("rebuild", help="drop the read models and rebuild them from position 0")
    sub.add_parser("relay", help="run the NATS relay alone (standby if one is active)")
    replay_parser = sub.add_parser(
        "replay", help="write a tenant's history as NDJSON, from the event store"
    )
    replay_parser.add_argument("--tenant", required=True)
    replay_parser.add_argument("--out", required=True, type=Path)
    verify_parser = sub.add_parser(
        "verify", help="recompute every balance of a replay file, offline"
    )
    verify_parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "verify":
        return run_verify(args.file)
    settings = settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "serve":
        serve(settings)
    elif args.command == "demo":
        asyncio.run(run_demo(settings))
    elif args.command == "project":
        asyncio.run(run_project(settings))
    elif args.command == "relay":
        asyncio.run(run_relay(settings))
    elif args.command == "rebuild":
        asyncio.run(run_rebuild(settings))
    elif args.command == "replay":
        asyncio.run(run_replay(settings, args.tenant, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

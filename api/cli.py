"""The `ledger` command: `ledger serve` runs the service, `ledger demo` a scripted session.

Run it as `python -m api.cli ...` or, once installed, `ledger ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys

import msgspec
import structlog

from api.database import ensure_schema
from api.embedded import start_nats, start_postgres
from api.logs import configure_logging
from api.settings import Settings, settings_from_env
from ledger import commands as c
from ledger.application import Ledger
from ledger.errors import LedgerError
from ledger.writer import Writer

log = structlog.get_logger("api.cli")


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

    from api.app import create_app  # noqa: PLC0415 - keeps `ledger demo` light

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
    # uvicorn re-raises the signal it stopped on; exit through Python so the embedded servers'
    # atexit handlers stop them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(resolved),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


async def run_demo(settings: Settings) -> None:
    """A first session with the ledger core, printed step by step."""
    url = database_url(settings)
    ensure_schema(url, settings.schema)
    ledger = Ledger(url, schema=settings.schema)
    writer = Writer(ledger)
    writer.start()
    tenant_id = "demo"
    steps: list[tuple[str, c.Command]] = [
        (
            "create tenant",
            c.CreateTenant(
                tenant_id=tenant_id, name="Demo", settings=c.TenantSettings(signup_bonus=100)
            ),
        ),
        ("open account", c.OpenAccount(tenant_id=tenant_id, account_id="ada@example.com")),
        (
            "grant 500",
            c.GrantCredits(
                tenant_id=tenant_id, account_id="ada@example.com", amount=500, reason="welcome pack"
            ),
        ),
        (
            "consume 120",
            c.ConsumeCredits(
                tenant_id=tenant_id,
                account_id="ada@example.com",
                amount=120,
                operation="IMAGE_GENERATION",
                idempotency_key="demo-consume-1",
            ),
        ),
        (
            "consume 10,000",
            c.ConsumeCredits(
                tenant_id=tenant_id,
                account_id="ada@example.com",
                amount=10_000,
                operation="VIDEO_GENERATION",
            ),
        ),
    ]
    try:
        for title, command in steps:
            try:
                outcome = await writer.submit(command)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledger", description="The credits ledger.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP API with its writer (embedded servers by default)")
    sub.add_parser("demo", help="run a short scripted session against the ledger core")
    args = parser.parse_args(argv)
    settings = settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "serve":
        serve(settings)
    elif args.command == "demo":
        asyncio.run(run_demo(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

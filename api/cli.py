"""The `ledger` command: `ledger demo` (more roles come with the API and projections).

Run it as `python -m api.cli ...` or, once installed, `ledger ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import structlog

from api.database import ensure_schema
from api.embedded import start_postgres
from api.logs import configure_logging
from api.settings import Settings, settings_from_env
from ledger import commands as c
from ledger.application import Ledger
from ledger.errors import LedgerError
from ledger.writer import Writer

log = structlog.get_logger("api.cli")


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return start_postgres(settings.data_dir)


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
    sub.add_parser("demo", help="run a short scripted session against the ledger core")
    args = parser.parse_args(argv)
    settings = settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "demo":
        asyncio.run(run_demo(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`ledger demo`: a first session with the ledger core, printed step by step (`make demo`)."""

from __future__ import annotations

from api.roles.database import ensure_schema
from api.roles.embedded import database_url
from api.settings import Settings
from ledger.accounts.commands import ConsumeCredits, GrantCredits, OpenAccount
from ledger.commands import Command, Envelope
from ledger.errors import LedgerError
from ledger.store.application import Ledger
from ledger.tenants.commands import CreateTenant
from ledger.tenants.settings import TenantSettings
from ledger.writer.writer import Writer

TENANT_ID = "demo"
ACCOUNT_ID = "ada@example.com"


def steps() -> list[tuple[str, Command]]:
    """The session: each step's title and its command (all in the tenant TENANT_ID)."""
    return [
        (
            "create tenant",
            CreateTenant(
                tenant_id=TENANT_ID, name="Demo", settings=TenantSettings(signup_bonus=100)
            ),
        ),
        ("open account", OpenAccount(account_id=ACCOUNT_ID)),
        ("grant 500", GrantCredits(account_id=ACCOUNT_ID, amount=500, reason="welcome pack")),
        (
            "consume 120",
            ConsumeCredits(
                account_id=ACCOUNT_ID,
                amount=120,
                operation="IMAGE_GENERATION",
                idempotency_key="demo-consume-1",
            ),
        ),
        (
            "consume 10,000",
            ConsumeCredits(account_id=ACCOUNT_ID, amount=10_000, operation="VIDEO_GENERATION"),
        ),
    ]


async def run_demo(settings: Settings) -> None:
    """A first session with the ledger core, printed step by step."""
    url = database_url(settings)
    ensure_schema(url, settings.schema)
    ledger = Ledger(url, schema=settings.schema)
    writer = Writer(ledger)
    writer.start()
    try:
        for title, command in steps():
            try:
                outcome = await writer.submit(Envelope(tenant_id=TENANT_ID, command=command))
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

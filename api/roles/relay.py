"""`ledger relay`: the NATS relay alone (docs/adr/0005)."""

from __future__ import annotations

from api.roles.embedded import database_url, nats_url
from api.roles.runtime import relay_of
from api.roles.signals import run_until_signalled
from api.settings import Settings


async def run_relay(settings: Settings) -> None:
    """The NATS relay alone: active, or standby while another holds the lock."""
    relay = relay_of(settings, database_url(settings), nats_url(settings))
    await run_until_signalled(relay.run)

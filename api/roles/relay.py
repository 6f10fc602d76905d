"""`ledger relay`: the NATS relay alone (docs/adr/0005)."""

from __future__ import annotations

from api.roles.embedded import database_url, nats_url
from api.roles.runtime import relay_connector
from api.roles.signals import run_until_signalled
from api.settings import Settings
from events.relay import Relay
from ledger.store.transcoder import new_mapper


async def run_relay(settings: Settings) -> None:
    """The NATS relay alone: active, or standby while another holds the lock."""
    relay = Relay(
        database_url(settings),
        settings.schema,
        new_mapper(),
        relay_connector(nats_url(settings)),
        stream_name=settings.stream_name,
    )
    await run_until_signalled(relay.run)

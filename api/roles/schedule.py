"""`ledger schedule`: the scheduler alone (docs/adr/0007): what falls due, acted on in time."""

from __future__ import annotations

from api.roles.embedded import database_url
from api.roles.signals import run_until_signalled
from api.settings import Settings
from ledger.store.transcoder import new_mapper
from projections.scheduler import Scheduler


async def run_schedule(settings: Settings) -> None:
    """The scheduler alone: active, or standby while another holds the lock."""
    scheduler = Scheduler(database_url(settings), settings.schema, new_mapper())
    await run_until_signalled(scheduler.run)

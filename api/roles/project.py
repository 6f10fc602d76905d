"""`ledger project`: the read-model follower alone (docs/adr/0004)."""

from __future__ import annotations

from api.roles.embedded import database_url
from api.roles.signals import run_until_signalled
from api.settings import Settings
from ledger.store.transcoder import new_mapper
from projections.follower import Follower


async def run_project(settings: Settings) -> None:
    """The follower alone: active, or standby while another holds the lock."""
    follower = Follower(
        database_url(settings),
        settings.schema,
        new_mapper(),
        batch_size_max=settings.follower_batch_size,
    )
    await run_until_signalled(follower.run)

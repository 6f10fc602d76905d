"""`ledger rebuild`: drops the read models and fills them again from position 0, with progress."""

from __future__ import annotations

import time

from api.roles.embedded import database_url
from api.roles.garbage_collector import tune_collector
from api.settings import Settings
from ledger.store.transcoder import new_mapper
from projections.follower import Follower


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

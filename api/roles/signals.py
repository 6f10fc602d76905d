"""How a long-running role stops: SIGINT or SIGTERM ends it cleanly, its position stored."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from api.roles.garbage_collector import tune_collector


async def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Runs a long-lived role until SIGINT or SIGTERM, which it answers by stopping cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tune_collector()
    await run(stop)

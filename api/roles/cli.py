"""The `ledger` command: its sub-commands and their options; each runs from the module named
after it (`serve.py`, `demo.py`, `project.py`, `relay.py`, `schedule.py`, `rebuild.py`,
`replay.py`).

Run it as `python -m api ...` or, once installed, `ledger ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from api.roles.child_settings import settings_from_stdin
from api.roles.demo import run_demo
from api.roles.logs import configure_logging
from api.roles.project import run_project
from api.roles.rebuild import run_rebuild
from api.roles.relay import run_relay
from api.roles.replay import run_replay, run_verify
from api.roles.schedule import run_schedule
from api.roles.serve import serve
from api.roles.topups import run_topups
from api.roles.webhooks import run_webhooks
from api.settings import Settings, settings_from_env

# The sub-commands that run on an event loop with nothing but the settings.
RUN_ON_EVENT_LOOP: dict[str, Callable[[Settings], Coroutine[Any, Any, None]]] = {
    "demo": run_demo,
    "project": run_project,
    "relay": run_relay,
    "schedule": run_schedule,
    "rebuild": run_rebuild,
    "webhooks": run_webhooks,
    "topups": run_topups,
}


def parser() -> argparse.ArgumentParser:
    # Every sub-command that reads settings reads them from LEDGER_*, or, as a child of serve,
    # from stdin (api/roles/child_settings.py).
    settings_source = argparse.ArgumentParser(add_help=False)
    settings_source.add_argument(
        "--settings-from-stdin",
        action="store_true",
        help="read the settings, encoded, from stdin instead of LEDGER_* (serve's children)",
    )
    root = argparse.ArgumentParser(prog="ledger", description="The credits ledger.")
    sub = root.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, parents=[settings_source])

    command("serve", "run the HTTP API with its writer (embedded servers by default)")
    command("demo", "run a short scripted session against the ledger core")
    command("project", "run the read-model follower alone (standby if one is active)")
    command("rebuild", "drop the read models and rebuild them from position 0")
    command("relay", "run the NATS relay alone (standby if one is active)")
    command("schedule", "run the scheduler alone: expiries on time (standby if one is active)")
    command("webhooks", "run the outbound webhook deliverer alone (standby if one is active)")
    command("topups", "run the auto top-up watcher alone, with a writer (standby if one is active)")
    replay = command("replay", "write a tenant's history as NDJSON, from the event store")
    replay.add_argument("--tenant", required=True)
    replay.add_argument("--out", required=True, type=Path)
    verify = sub.add_parser("verify", help="recompute every balance of a replay file, offline")
    verify.add_argument("file", type=Path)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "verify":  # a file alone: no settings, no database
        return run_verify(args.file)
    # The environment is read here, once, by the top process; a child decodes its parent's.
    settings = settings_from_stdin() if args.settings_from_stdin else settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "serve":
        serve(settings)
    elif args.command == "replay":
        asyncio.run(run_replay(settings, args.tenant, args.out))
    else:
        asyncio.run(RUN_ON_EVENT_LOOP[args.command](settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

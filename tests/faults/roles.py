"""Which process plays which role, told by its command line: the one place that knows.

`python -m api serve` starts the writer, the read-model follower, the NATS relay and the
scheduler as child processes (each in a session of its own). When the modules move, only ROLE_COMMAND_LINES
changes: each role is recognised by a run of consecutive arguments in its argv.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

SERVE_COMMAND = ["-m", "api", "serve"]
ROLE_COMMAND_LINES: dict[str, list[str]] = {
    "serve": SERVE_COMMAND,
    "writer": ["-m", "api.roles.writer_process"],
    "follower": ["-m", "api", "project"],
    "relay": ["-m", "api", "relay"],
    "scheduler": ["-m", "api", "schedule"],
}
# The JSON log events in which `serve` names the pid of a child it started.
STARTED_EVENTS = ("background_role_started", "writer_process_started")


def argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except (FileNotFoundError, ProcessLookupError):
        return []


def alive(pid: int) -> bool:
    """Running: a zombie has finished and only waits for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def role_of(pid: int) -> str | None:
    """The role whose command line `pid` runs, or None."""
    args = argv(pid)
    for role, marker in ROLE_COMMAND_LINES.items():
        for start in range(len(args) - len(marker) + 1):
            if args[start : start + len(marker)] == marker:
                return role
    return None


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                found.extend(int(p) for p in (task / "children").read_text().split())
    return found


def descendants(pid: int) -> list[int]:
    tree, index = [pid], 0
    while index < len(tree):
        tree.extend(children(tree[index]))
        index += 1
    return tree[1:]


def live_roles(pid: int) -> dict[str, list[int]]:
    """role -> pids of the live descendants of `pid` that play it."""
    found: dict[str, list[int]] = {}
    for child in descendants(pid):
        role = role_of(child)
        if role is not None and alive(child):
            found.setdefault(role, []).append(child)
    return found


def kill_if_ours(pid: int, roles: set[str]) -> bool:
    """SIGKILL `pid` if it still runs one of our roles (a pid may have been reused since)."""
    if alive(pid) and role_of(pid) in roles:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            return True
    return False

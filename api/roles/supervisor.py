"""The follower and the relay as child processes of `ledger serve` (LEDGER_BACKGROUND=process).

In one process the follower and the relay share the GIL with the HTTP event loop and the
writer's thread; under load they took a third of its time (docs/BENCHMARKS.md). As children
they run `ledger project` and `ledger relay`, the same roles a deployment runs on their own,
with serve's resolved settings (its database and NATS URLs included) on their stdin. A child that exits is
started again after a back-off; each holds its advisory lock, so a restart can never make two
of a kind active. `stop()` sends SIGTERM and waits, so both store their positions first.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import structlog

from api.roles.child_settings import settings_pipe
from api.settings import Settings, encode_settings

log = structlog.get_logger("api.roles.supervisor")

# How often the supervisor looks at its children.
CHECK_INTERVAL_S = 0.5
# Back-off before restarting a child that exited: doubles from the first to the most.
RESTART_BACKOFF_FIRST_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0
# A child that ran this long before exiting starts again at the first back-off.
RESTART_BACKOFF_RESET_AFTER_S = 60.0
# Seconds a child gets to finish after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0
# prctl(2) option: the signal a child gets when its parent dies.
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    role: str  # the `ledger` sub-command: project | relay
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = RESTART_BACKOFF_FIRST_S
    restart_at: float = 0.0


@dataclass
class Supervisor:
    roles: list[str]
    settings: Settings  # what each child gets, resolved: they never start servers of their own
    children: list[Child] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.children = [Child(role) for role in self.roles]
        for child in self.children:
            self._spawn(child)
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("background_role_killed", role=child.role, pid=child.process.pid)
                child.process.kill()
                child.process.wait()
        log.info("background_roles_stopped", roles=self.roles)

    def _spawn(self, child: Child) -> None:
        stdin = settings_pipe(encode_settings(self.settings))
        try:
            child.process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                [sys.executable, "-m", "api", child.role, "--settings-from-stdin"],
                stdin=stdin,
                # Its own session: a Ctrl-C at the terminal reaches serve alone, which then stops
                # the children in order. On Linux a child also gets SIGTERM if serve dies.
                start_new_session=True,
                preexec_fn=functools.partial(die_with_parent, os.getpid()),  # noqa: PLW1509 - prctl only
            )
        finally:
            os.close(stdin)
        child.started_at = time.monotonic()
        log.info("background_role_started", role=child.role, pid=child.process.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(CHECK_INTERVAL_S):
            try:
                self._check_children()
            except Exception:  # a failed spawn (EAGAIN, ENOMEM): log it, try again later
                log.exception("background_role_spawn_failed")

    def _check_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                if now - child.started_at > RESTART_BACKOFF_RESET_AFTER_S:
                    child.backoff_s = RESTART_BACKOFF_FIRST_S
                log.error(
                    "background_role_exited",
                    role=child.role,
                    pid=process.pid,
                    returncode=process.returncode,
                    restart_in_s=child.backoff_s,
                )
                child.process = None
                child.restart_at = now + child.backoff_s
                child.backoff_s = min(child.backoff_s * 2, RESTART_BACKOFF_MAX_S)
            if child.process is None and now >= child.restart_at:
                child.restart_at = now + child.backoff_s  # should the spawn fail
                self._spawn(child)


# Loaded here, in the parent: the child runs only an already loaded function between fork and
# exec (loading a library there, with other threads in the parent, could deadlock).
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int) -> None:
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # it died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

"""Every child process of the service, started, started again and stopped in one place.

`ledger serve` (LEDGER_BACKGROUND=process) runs three roles as children: the writer
(api/roles/writer_process.py), the follower (`ledger project`) and the relay (`ledger
relay`). In one process they shared the GIL with the HTTP event loop and took a third of its
time under load (docs/BENCHMARKS.md); as children they use the other cores.

Who owns what: the app's Runtime (api/roles/runtime.py) builds one Supervisor in the lifespan
and owns it; the Supervisor owns a `Child` per role and spawns every process; a `Role` says
how its child is started and asked to stop, and does its own work around that (the writer
connects its socket). Everything runs on the app's event loop.

- Starting: each child gets the resolved settings on its stdin (api/roles/child_settings.py),
  its own session (a Ctrl-C at the terminal reaches serve alone, which stops the children in
  order) and, on Linux, SIGTERM should serve die.
- Restarts: a child that exits is started again after a back-off that doubles from 0.5 s to
  5 s and starts at 0.5 s again for a child that ran 10 s. A dependency's outage is no reason
  for a child to exit (each waits for the store or NATS itself), so the back-off only has to
  keep a child that crashes at once from spinning, not to wait out an outage: a longer cap
  would only delay its return. The follower and the relay each
  hold an advisory lock, so a restart can never make two of a kind active.
- Stopping: stage by stage, every child of a stage gone before those of the next are asked.
  The writer's stage comes first: it answers every command it accepted before the follower
  and the relay, together, get SIGTERM, on which each stores its position.

A later role is one more `ledger` sub-command: `supervisor.add(CommandRole("scheduler"))`
(`ledger serve` lists the roles in `Settings.child_roles`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import msgspec
import structlog

from api.roles.child_settings import settings_pipe
from api.settings import Settings, encode_settings

log = structlog.get_logger("api.roles.supervisor")

# How often the supervisor looks at its children.
CHECK_INTERVAL_S = 0.5
# Back-off before restarting a child that exited: doubles from the first to the most.
RESTART_BACKOFF_FIRST_S = 0.5
RESTART_BACKOFF_MAX_S = 5.0
# A child that ran this long before exiting starts again at the first back-off.
RESTART_BACKOFF_RESET_AFTER_S = 10.0
# Seconds a `ledger` sub-command gets to finish after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0
# How often a child that was asked to stop is looked at until it has.
EXIT_POLL_S = 0.05
# Stop stages: the writer drains before the roles that read what it wrote are asked to stop.
WRITER_STOP_STAGE = 0
READER_STOP_STAGE = 1
# prctl(2) option: the signal a child gets when its parent dies.
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Launch:
    """What one start of a child needs besides its settings."""

    argv: list[str]
    pass_fds: tuple[int, ...] = ()  # descriptors the child inherits (the writer's socket)


class Role(Protocol):
    """One kind of child, as its supervisor sees it. Called on the supervisor's event loop."""

    @property
    def name(self) -> str:
        """The `role` of the supervisor's log lines."""
        ...

    @property
    def stop_timeout_s(self) -> float:
        """Seconds its child gets, once asked to stop, before it is killed."""
        ...

    @property
    def stop_stage(self) -> int:
        """When it stops: the children of a stage are asked together, once every child of the
        stages before has exited."""
        ...

    def launch(self) -> AbstractContextManager[Launch]:
        """Before each start. The context ends once the process is started, or failed to
        start: where the role closes the descriptors that the child took with it."""
        ...

    async def launched(self, process: subprocess.Popen[bytes]) -> None:
        """Right after each start; if it raises, the process is killed (and, unless that
        was the first start, started again after the back-off)."""
        ...

    async def wait_ready(self) -> None:
        """After the first start only: returns once the child can do its work, raises if it
        cannot (the service then does not start)."""
        ...

    def ask_to_stop(self, process: subprocess.Popen[bytes]) -> None:
        """The role's way of asking its running child to finish and exit."""
        ...

    async def exited(self, returncode: int | None, *, stopped: bool) -> None:
        """After its child exited: of itself (`stopped` false; it is started again after
        the back-off), or when stopped (true; `returncode` None if none was running)."""
        ...


@dataclass(frozen=True)
class CommandRole:
    """A `ledger` sub-command as a child (`project`, `relay`): SIGTERM stops it, and it stores
    its position before it exits."""

    name: str
    stop_timeout_s: float = STOP_TIMEOUT_S
    stop_stage: int = READER_STOP_STAGE

    @contextlib.contextmanager
    def launch(self) -> Iterator[Launch]:
        yield Launch([sys.executable, "-m", "api", self.name, "--settings-from-stdin"])

    async def launched(self, process: subprocess.Popen[bytes]) -> None:
        pass

    async def wait_ready(self) -> None:
        pass

    def ask_to_stop(self, process: subprocess.Popen[bytes]) -> None:
        process.terminate()

    async def exited(self, returncode: int | None, *, stopped: bool) -> None:
        pass


class Child:
    """One role's process as its supervisor keeps it: started again whenever it exits, until
    it is stopped. One start, exit or stop of it at a time."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.backoff_s = RESTART_BACKOFF_FIRST_S
        self.restart_at = 0.0  # when a child that is not running starts again
        self.exit_by: float | None = None  # it should be exiting: killed if running then
        self.stopping = False  # never started again
        self._stopped = False
        self._lock = asyncio.Lock()

    def expect_exit(self, within_s: float) -> None:
        """Its work is over (the writer's connection ended, say) and it should exit of itself:
        it is killed if it still runs `within_s` from now, then started again as usual."""
        self.exit_by = time.monotonic() + within_s

    async def start(self, settings: bytes) -> None:
        """Starts its process with `settings` on its stdin; raises if it cannot."""
        stdin = settings_pipe(settings)
        try:
            with self.role.launch() as launch:
                process = subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
                    launch.argv,
                    stdin=stdin,
                    pass_fds=launch.pass_fds,
                    start_new_session=True,
                    preexec_fn=functools.partial(die_with_parent, os.getpid()),  # noqa: PLW1509 - prctl only
                )
        finally:
            os.close(stdin)
        self.process, self.started_at, self.exit_by = process, time.monotonic(), None
        log.info("background_role_started", role=self.role.name, pid=process.pid)
        try:
            await self.role.launched(process)
        except BaseException:
            self.process = None
            process.kill()
            process.wait()  # killed: it exits at once
            raise

    async def check(self, settings: bytes) -> None:
        """Looks at it once: an exit is logged and its restart planned, a restart that is
        due is made, a child past `exit_by` is killed."""
        if self.stopping:  # not even waiting for the lock: a stop may take a while
            return
        async with self._lock:
            if self.stopping:
                return
            now = time.monotonic()
            process = self.process
            if process is not None:
                returncode = process.poll()
                if returncode is None:
                    if self.exit_by is not None and now >= self.exit_by:
                        log.error("background_role_killed", role=self.role.name, pid=process.pid)
                        process.kill()
                        self.exit_by = None
                    return
                await self._exited(process, returncode, now)
            if now >= self.restart_at:
                await self._restart(settings, now)

    async def _exited(self, process: subprocess.Popen[bytes], returncode: int, now: float) -> None:
        if now - self.started_at > RESTART_BACKOFF_RESET_AFTER_S:
            self.backoff_s = RESTART_BACKOFF_FIRST_S
        log.error(
            "background_role_exited",
            role=self.role.name,
            pid=process.pid,
            returncode=returncode,
            restart_in_s=self.backoff_s,
        )
        self.process = None
        self._back_off(now)
        await self.role.exited(returncode, stopped=False)

    async def _restart(self, settings: bytes, now: float) -> None:
        try:
            await self.start(settings)
        except Exception:  # EAGAIN, ENOMEM, out of descriptors: log it, try again later
            log.exception(
                "background_role_spawn_failed", role=self.role.name, retry_in_s=self.backoff_s
            )
            self._back_off(now)

    def _back_off(self, now: float) -> None:
        self.restart_at = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, RESTART_BACKOFF_MAX_S)

    async def stop(self) -> None:
        """Asks it to stop the role's way and waits until it has exited, killing it after the
        role's stop timeout; it is started no more. A second call returns at once."""
        self.stopping = True
        async with self._lock:
            if self._stopped:
                return
            self._stopped = True
            process, returncode = self.process, None
            if process is not None:
                if process.poll() is None:
                    self.role.ask_to_stop(process)
                returncode = await self._exit_of(process)
                log.info(
                    "background_role_stopped",
                    role=self.role.name,
                    pid=process.pid,
                    returncode=returncode,
                )
            await self.role.exited(returncode, stopped=True)

    async def _exit_of(self, process: subprocess.Popen[bytes]) -> int:
        deadline = time.monotonic() + self.role.stop_timeout_s
        while (returncode := process.poll()) is None:
            if time.monotonic() >= deadline:
                log.error("background_role_killed", role=self.role.name, pid=process.pid)
                process.kill()
                return process.wait()  # killed: it exits at once
            await asyncio.sleep(EXIT_POLL_S)
        return returncode


class Supervisor:
    """The children of one process: started in order, watched, stopped stage by stage."""

    def __init__(self, settings: Settings) -> None:
        # What every child gets: these settings, resolved, with nothing for it to supervise.
        self._settings = encode_settings(
            msgspec.structs.replace(settings, writer_process=False, child_roles=())
        )
        self._children: list[Child] = []
        self._watching: asyncio.Task[None] | None = None
        self._stop_watching = asyncio.Event()

    @property
    def roles(self) -> list[str]:
        return [child.role.name for child in self._children]

    def add(self, role: Role) -> Child:
        """Before start(). Children start in the order they were added."""
        assert self._watching is None, "a role added after the supervisor started"
        child = Child(role)
        self._children.append(child)
        return child

    async def start(self) -> None:
        """Starts every child in order, each ready before the next, then watches them. If one
        cannot start, those started are stopped and the error raised."""
        try:
            for child in self._children:
                await child.start(self._settings)
                await child.role.wait_ready()
        except BaseException:
            await self.stop()
            raise
        if self._children:
            self._watching = asyncio.create_task(self._watch(), name="supervisor")

    async def stop(self) -> None:
        """Stops watching, then stops the children stage by stage (one stopped already, such
        as the writer by its own stop(), is passed over)."""
        self._stop_watching.set()
        if self._watching is not None:
            await self._watching
        for stage in sorted({child.role.stop_stage for child in self._children}):
            await asyncio.gather(
                *(child.stop() for child in self._children if child.role.stop_stage == stage)
            )
        if self._children:
            log.info("background_roles_stopped", roles=self.roles)

    async def _watch(self) -> None:
        while not self._stop_watching.is_set():
            for child in self._children:
                try:
                    await child.check(self._settings)
                except Exception:  # a role's bug: log it, keep the others supervised
                    log.exception("background_role_check_failed", role=child.role.name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_check_in_s()):
                    await self._stop_watching.wait()

    def _next_check_in_s(self) -> float:
        """The check interval, or less when a restart falls due sooner."""
        due = [c.restart_at for c in self._children if c.process is None and not c.stopping]
        if not due:
            return CHECK_INTERVAL_S
        return min(CHECK_INTERVAL_S, max(0.0, min(due) - time.monotonic()))


# Loaded here, in the parent: the child runs only an already loaded function between fork and
# exec (loading a library there, with other threads in the parent, could deadlock).
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int) -> None:
    """Between fork and exec: SIGTERM to the child when the thread that started it ends. The
    supervisor starts children from the event loop's thread, which lives as long as serve."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # it died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

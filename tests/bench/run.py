"""`make bench`: the benchmark of issue 6, against the real service.

Starts `python -m api serve` in its own process (embedded PostgreSQL with fsync on and
embedded NATS under .data/bench unless LEDGER_DATABASE_URL / LEDGER_NATS_URL are set; follower
and relay running), a fresh schema per run, waits for /health/ready, creates a tenant and drives
the service with `wrk` (Lua scripts in tests/bench/lua/) from separate processes. Each scenario
is measured next to a ceiling taken in the same run; medians of a few short runs are printed as
a table and written to docs/bench/results/<UTC date-time>.json.

Not collected by pytest: pyproject's testpaths list only unit, integration and e2e.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
LUA_DIR = BENCH_DIR / "lua"
RESULTS_DIR = ROOT / "docs" / "bench" / "results"

ACCOUNTS = 10_000  # scenario 1: pre-opened funded accounts
CONNECTIONS = 64  # scenarios 1, 2, 4
WRK_THREADS = 2  # one per core: the generator competes with the service on this machine
BATCH_SIZE = 1_000  # scenario 3: consumes per POST /v1/batch
BATCH_CONNECTIONS = 4
FUNDS = 10**12  # signup bonus of every account: never runs out during a run
PACED_CONNECTIONS = 20  # scenario 6: 20 connections, each waiting after every answer for a
PACED_TARGET_PER_S = 1_000  # delay calibrated so that together they send about 1,000/s
PACED_CALIBRATION_S = 4  # (short runs measure the answer time; the rate achieved is reported)
PACED_CALIBRATION_ROUNDS = 2
PACED_DELAY_MAX_MS = 100
SEED_EVENTS = 1_000_000  # scenario 4: events on the long-history account
PYTHON_SPEED_REPEATS = 15  # timings of python_speed_ms(), median taken
MEMORY_ACCOUNTS = 1_000_000  # scenario 7: distinct accounts touched before RSS is read
MEMORY_STEP_S = 30  # scenario 7: seconds per wrk run between RSS readings
MEMORY_CONNECTIONS = 64
EXPIRY_HOLDS = 10_000  # scenario 9: holds expiring within the same minute, one per account
EXPIRY_LEAD_S = 20  # the first expires this long after it is placed (all are placed by then)
EXPIRY_SPREAD_S = 60  # expiries spread over this many seconds, one per second in turn
EXPIRY_POLL_S = 0.02  # how often the event store is read for new release entries
EXPIRY_GRACE_S = 60  # how long after the last expiry the scenario waits for its entry
CORES = os.cpu_count() or 1  # what the service, its database, NATS and wrk share
SETTLE_CPU_SHARE = 0.15  # before a run, wait until the service uses less than this of a core
SETTLE_TIMEOUT_S = 60
READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


# ---------------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk not found: apt-get install -y wrk")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "make bench needs wrk (the HTTP load generator): install it, e.g. `apt-get install wrk` "
        "as root on Debian/Ubuntu, or build it from https://github.com/wg/wrk"
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(p) for p in (task / "children").read_text().split())
    except OSError:
        pass
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants: serve, its writer, follower and relay children."""
    tree, index = [pid], 0
    while index < len(tree):
        tree.extend(children_of(tree[index]))
        index += 1
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and its live descendants."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _role(pid: int, serve_pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"
    if pid == serve_pid:
        return "serve"
    if b"api.roles.writer_process" in argv:
        return "writer"
    if argv[1:3] == [b"-m", b"api"] and len(argv) > 3:
        return argv[3].decode(errors="replace")  # project | relay
    return {"postgres": "postgres", "nats-server": "nats"}.get(comm, "other")


def cpu_by_role(serve_pid: int) -> dict[str, float]:
    """CPU seconds so far of serve, its writer, follower, relay and NATS, and of every
    PostgreSQL process on the machine: read before and after a run, they say where the two
    cores went (what bounds the scenario), not only how fast it was. wrk is not counted: it
    has exited by the second reading."""
    wanted = set(process_tree(serve_pid))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    wanted.add(int(entry.name))
    totals: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in wanted:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            role = _role(pid, serve_pid)
            # utime and stime, and cutime and cstime: the CPU of children that have exited
            # (PostgreSQL's backends of connections a pool closed during the run).
            used = sum(int(value) for value in fields[11:15]) / tick
            totals[role] = totals.get(role, 0.0) + used
    return totals


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have exited and been reaped (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def settle(pid: int) -> float:
    """Waits until the service is idle (the writer, follower and relay have caught up with the
    last run), so that a run is not charged for the previous one's backlog. Returns seconds
    waited."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT_S:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if (cpu_seconds(pid) - before) / 0.5 < SETTLE_CPU_SHARE:
            break
    return time.monotonic() - started


def python_speed_ms() -> float:
    """This machine's speed at plain Python, read at the start of a run: the median time of
    `sum(range(10**6))` in ms. It puts absolute targets (consumes/s, events/s) of runs on
    different machines, or the same shared machine on different days, side by side."""
    timings = []
    for _ in range(PYTHON_SPEED_REPEATS):
        started = time.perf_counter()
        sum(range(10**6))
        timings.append((time.perf_counter() - started) * 1000)
    return round(median(timings), 2)


WRITER_METRICS = (
    "batches_committed",
    "commands_committed",
    "apply_seconds",
    "commit_seconds",
    "queued_seconds",
    "works_answered",
)


def writer_metrics(url: str) -> dict[str, float]:
    """The writer's counters from the service's GET /metrics (ledger_writer_*)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if (
            name.startswith("ledger_writer_")
            and name.removeprefix("ledger_writer_") in WRITER_METRICS
        ):
            values[name.removeprefix("ledger_writer_")] = float(value)
    return values


def writer_phases(before: dict[str, float], after: dict[str, float]) -> dict[str, float] | None:
    """What the writer's counters say of a run: its batches, their size, the time each took
    to apply and to store, and how long a work waited in the writer from being queued to
    being answered (mean): the part of a request's latency spent there."""
    delta = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in WRITER_METRICS}
    batches, works = delta["batches_committed"], delta["works_answered"]
    if batches <= 0 or works <= 0:
        return None
    return {
        "batches": int(batches),
        "commands_per_batch": round(delta["commands_committed"] / batches, 1),
        "apply_ms_per_batch": round(delta["apply_seconds"] / batches * 1e3, 2),
        "commit_ms_per_batch": round(delta["commit_seconds"] / batches * 1e3, 2),
        "in_writer_ms_per_work": round(delta["queued_seconds"] / works * 1e3, 2),
    }


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def service_rss_mib(pid: int) -> float | None:
    """Resident MiB of the API service: serve and its writer child (`api.roles.writer_process`). The
    follower and relay children are roles a deployment may run elsewhere: not counted."""
    total = rss_mib(pid)
    if total is None:
        return None
    for child in children_of(pid):
        with contextlib.suppress(OSError):
            if b"api.roles.writer_process" in Path(f"/proc/{child}/cmdline").read_bytes():
                total += rss_mib(child) or 0.0
    return total


class Service:
    """`python -m api serve` in its own process, as `make run` starts it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = int(env["LEDGER_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.database_url = ""
        self.nats_url = ""
        self.rss_mib_max = 0.0  # resident size of serve + its writer, sampled before each stop

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"\n--- serve started {dt.datetime.now(dt.UTC).isoformat()}\n".encode())
        out = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"the service exited with {self.process.returncode}: see {self.log_path}")
            text = self.log_path.read_text(errors="replace").rsplit("--- serve started", 1)[-1]
            db = re.search(r"^\s+database:\s+(\S+)", text, re.M)
            nats = re.search(r"^\s+nats:\s+(\S+)", text, re.M)
            if db and nats and self.ready():
                self.database_url, self.nats_url = db.group(1), nats.group(1)
                return
            time.sleep(0.3)
        self.stop()
        sys.exit(f"the service was not ready within {READY_TIMEOUT_S} s: see {self.log_path}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM: the service drains, then stops its embedded servers on exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.rss_mib_max = max(self.rss_mib_max, service_rss_mib(self.process.pid) or 0.0)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log("the service did not stop within 60 s: SIGKILL")
            self.process.kill()
            self.process.wait()


# ------------------------------------------------------------------------------- load (wrk)


def run_wrk(
    wrk: str,
    url: str,
    script: str,
    env: dict[str, str],
    *,
    connections: int,
    duration_s: float,
    threads: int = WRK_THREADS,
) -> dict[str, Any]:
    threads = min(threads, connections)
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    full_env = {**os.environ, "BENCH_LUA_DIR": str(LUA_DIR), **env}
    done = subprocess.run(command, env=full_env, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 2),
        "rps": raw["requests"] / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "non_2xx": raw["errors_status"],
        "errors": errors,
    }


def summarize(runs: list[dict[str, Any]], per_request: int = 1) -> dict[str, Any]:
    return {
        "per_s": median([r["rps"] * per_request for r in runs]),
        "p50_ms": median([r["p50_ms"] for r in runs]),
        "p99_ms": median([r["p99_ms"] for r in runs]),
        "errors": sum(r["errors"] for r in runs),
        "runs": runs,
    }


# --------------------------------------------------------------------------------- setup


def create_tenant(
    service: Service, admin_key: str, tenant_id: str = "bench", signup_bonus: int = FUNDS
) -> str:
    body = {
        "tenant_id": tenant_id,
        "name": tenant_id.title(),
        "settings": {"signup_bonus": signup_bonus},
    }
    answer = httpx.post(
        f"{service.url}/v1/tenants",
        json=body,
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["api_key"]["key"])


async def open_accounts(url: str, key: str, names: list[str], concurrency: int = 32) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for name in names:
        queue.put_nowait(name)
    headers = {"Authorization": f"Bearer {key}"}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            name = queue.get_nowait()
            for attempt in range(3):  # PUT is idempotent (200 when the account exists)
                try:
                    answer = await client.put(f"{url}/v1/accounts/{name}", json={}, headers=headers)
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        raise
            if answer.status_code not in (200, 201):
                raise RuntimeError(f"open {name}: {answer.status_code} {answer.text}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


def consume_once(url: str, key: str, account: str, idem: str) -> float:
    """One consumption; returns its latency in ms."""
    started = time.perf_counter()
    answer = httpx.post(
        f"{url}/v1/accounts/{account}/consumptions",
        json={"amount": 1, "operation": "BENCH"},
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem},
        timeout=60,
    )
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 201:
        raise RuntimeError(f"consume {account}: {answer.status_code} {answer.text}")
    return elapsed


# ------------------------------------------------------------------------------ scenarios


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.wrk = ensure_wrk()
        self.run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.schema = f"bench_{self.run_id.lower()}"
        self.admin_key = "lk_admin_bench_" + secrets.token_urlsafe(24)
        data_dir = os.environ.get("LEDGER_DATA_DIR") or str(ROOT / ".data" / "bench")
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "LEDGER_DATA_DIR": data_dir,
            "LEDGER_DB_SCHEMA": self.schema,
            "LEDGER_ADMIN_KEY": self.admin_key,
            "LEDGER_PORT": str(free_port()),
            "LEDGER_BENCH_ENDPOINTS": "yes",
            # The per-key rate limit (2,000/s by default) would be the ceiling otherwise; it is
            # a policy, not a durability setting.
            "LEDGER_RATE_LIMIT_PER_S": "1000000000",
            "LEDGER_RATE_LIMIT_BURST": "1000000000",
            "LEDGER_LOG_FORMAT": "json",
        }
        self.log_path = Path(data_dir) / f"serve-{self.run_id}.log"
        self.service = Service(self.env, self.log_path)
        self.key = ""
        self.results: dict[str, Any] = {}
        self.pg_handle: Any = None

    def wrk_env(self, **extra: str) -> dict[str, str]:
        return {
            "BENCH_KEY": self.key,
            "BENCH_RUN": f"{self.run_id}-{secrets.token_hex(3)}",
            **extra,
        }

    def load(
        self, script: str, connections: int, duration_s: float, per_request: int = 1, **env: str
    ) -> dict[str, Any]:
        """A wrk run with the cores each role used; `per_request`: commands per request."""
        assert self.service.process is not None
        settle(self.service.process.pid)
        writer_before = writer_metrics(self.service.url)
        before, started = cpu_by_role(self.service.process.pid), time.monotonic()
        children_before = children_cpu_seconds()
        run = run_wrk(
            self.wrk,
            self.service.url,
            script,
            self.wrk_env(**env),
            connections=connections,
            duration_s=duration_s,
        )
        after, wall = cpu_by_role(self.service.process.pid), time.monotonic() - started
        after["wrk"] = children_cpu_seconds() - children_before  # wrk has exited: it is reaped
        phases = writer_phases(writer_before, writer_metrics(self.service.url))
        # Cores each role used on average during the run.
        run["cpu_cores"] = {
            role: round((after[role] - before.get(role, 0.0)) / wall, 2)
            for role in sorted(after)
            if role != "gone" and after[role] - before.get(role, 0.0) > 0
        }
        # CPU per request by role, and the rate at which that CPU would fill every core: how
        # near the run came to what the machine can give at this cost per request.
        commands = max(run["requests"] * per_request, 1)
        per_command = {
            role: (after[role] - before.get(role, 0.0)) / commands * 1e6
            for role in run["cpu_cores"]
        }
        run["cpu_us_per_command"] = {role: round(us, 1) for role, us in per_command.items()}
        total_us = sum(per_command.values())
        run["cpu_bound_per_s"] = round(CORES / total_us * 1e6) if total_us else None
        log(
            f"{script} cores used: "
            + ", ".join(f"{role} {cores}" for role, cores in run["cpu_cores"].items())
            + f"; {total_us:,.0f} us of CPU per command in all, so {CORES} cores allow "
            f"{run['cpu_bound_per_s'] or 0:,}/s against {run['rps'] * per_request:,.0f}/s run"
        )
        if phases is not None:
            run["writer"] = phases
            log(
                f"{script} writer: {phases['batches']:,} batches of "
                f"{phases['commands_per_batch']:,} commands, "
                f"{phases['apply_ms_per_batch']} ms to apply and "
                f"{phases['commit_ms_per_batch']} ms to store each; a work spent "
                f"{phases['in_writer_ms_per_work']} ms in the writer (mean), "
                f"against a request's p50 of {run['p50_ms']:.1f} ms"
            )
        return run

    def start(self) -> None:
        log(f"starting the service (schema {self.schema}, log {self.log_path})")
        started = time.monotonic()
        self.service.start()
        log(f"ready in {time.monotonic() - started:.1f} s: {self.service.url}")
        if not os.environ.get("LEDGER_DATABASE_URL"):
            # Become a user of the embedded PostgreSQL too, so it outlives the service for the
            # rebuild (scenario 5) and stops when this process exits.
            from api.roles.embedded import start_postgres

            start_postgres(Path(self.env["LEDGER_DATA_DIR"]))
        self.env["LEDGER_DATABASE_URL"] = self.service.database_url

    def setup(self) -> None:
        self.key = create_tenant(self.service, self.admin_key)
        names = [f"acct-{n}" for n in range(ACCOUNTS)]
        names += ["hot-0", "history-0", "fresh-0", "fresh-1"]
        started = time.monotonic()
        asyncio.run(open_accounts(self.service.url, self.key, names))
        log(f"opened {len(names):,} funded accounts in {time.monotonic() - started:.1f} s")

    def scenario_1(self) -> None:
        runs, seconds = self.args.runs, self.args.duration
        log(f"scenario 1: warm-up {seconds / 2:g} s")
        self.load("consume.lua", CONNECTIONS, seconds / 2, BENCH_ACCOUNTS=str(ACCOUNTS))
        ceiling, subject = [], []
        for i in range(runs):
            ceiling.append(self.load("consume.lua", CONNECTIONS, seconds, BENCH_PATH="noop"))
            profiler = self.start_profile("1", seconds) if i == 0 else None
            subject.append(
                self.load("consume.lua", CONNECTIONS, seconds, BENCH_ACCOUNTS=str(ACCOUNTS))
            )
            self.finish_profile("1", profiler)
            log(
                f"scenario 1 run {i + 1}: consume {subject[-1]['rps']:,.0f}/s "
                f"noop {ceiling[-1]['rps']:,.0f}/s"
            )
        self.results["1_consume_10k_accounts"] = {
            "subject": summarize(subject),
            "ceiling": summarize(ceiling),
            "unit": "requests/s",
            "ceiling_is": "no-op POST /v1/bench/noop/{id}: same auth, same strict body decoding",
        }

    def scenario_2(self) -> None:
        runs, seconds = self.args.runs, self.args.duration
        ceiling, subject = [], []
        one = {"BENCH_ACCOUNTS": "1", "BENCH_ACCOUNT_PREFIX": "hot-"}
        for i in range(runs):
            ceiling.append(self.load("consume.lua", CONNECTIONS, seconds, BENCH_PATH="noop", **one))
            subject.append(self.load("consume.lua", CONNECTIONS, seconds, **one))
            log(
                f"scenario 2 run {i + 1}: consume {subject[-1]['rps']:,.0f}/s "
                f"noop {ceiling[-1]['rps']:,.0f}/s"
            )
        self.results["2_consume_one_hot_account"] = {
            "subject": summarize(subject),
            "ceiling": summarize(ceiling),
            "unit": "requests/s",
            "ceiling_is": "no-op POST /v1/bench/noop/hot-0",
        }

    def scenario_3(self) -> None:
        runs, seconds = self.args.runs, self.args.duration
        check = self.check_batch()
        subject, ceiling = [], []
        env = {"BENCH_ACCOUNTS": str(ACCOUNTS), "BENCH_BATCH": str(BATCH_SIZE)}
        for i in range(runs):
            profiler = self.start_profile("3", seconds) if i == 0 else None
            run = self.load("batch.lua", BATCH_CONNECTIONS, seconds, BATCH_SIZE, **env)
            self.finish_profile("3", profiler)
            subject.append(run)
            commits = max(run["requests"], BATCH_CONNECTIONS)
            ceiling.append(self.raw_insert(commits, BATCH_SIZE, BATCH_CONNECTIONS))
            log(
                f"scenario 3 run {i + 1}: batch {run['rps'] * BATCH_SIZE:,.0f} consumes/s "
                f"raw INSERT {ceiling[-1]['rps'] * BATCH_SIZE:,.0f} rows/s"
            )
        self.results["3_batch_of_1000_consumes"] = {
            "subject": summarize(subject, BATCH_SIZE),
            "ceiling": summarize(ceiling, BATCH_SIZE),
            "unit": "consumes/s (rows/s for the ceiling); latency per batch request",
            "ceiling_is": (
                f"psycopg: multi-row INSERT of {BATCH_SIZE} rows per commit into a scratch table "
                f"shaped like the event store, {BATCH_CONNECTIONS} connections, same number of "
                "commits as the batch run"
            ),
            "check": check,
        }

    def scenario_8(self) -> None:
        """The writer alone in its own process (tests/bench/writer_alone.py), no HTTP: what the
        ledger core does per consume, next to the raw INSERT of scenario 3."""
        runs, seconds = self.args.runs, self.args.duration
        assert self.service.process is not None
        batch, concurrent, ceiling = [], [], []
        for i in range(runs):
            settle(self.service.process.pid)
            done = subprocess.run(
                [
                    sys.executable,
                    str(BENCH_DIR / "writer_alone.py"),
                    self.service.database_url,
                    self.schema,
                    str(seconds),
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=ROOT,
            )
            line = next((x for x in done.stdout.splitlines() if x.startswith("WRITER_JSON ")), None)
            if done.returncode != 0 or line is None:
                raise RuntimeError(f"writer_alone failed: {done.stdout}\n{done.stderr[-2000:]}")
            result = json.loads(line.removeprefix("WRITER_JSON "))
            batch.append(result["batch"])
            concurrent.append(result["concurrent"])
            commits = max(result["batch"]["consumes"] // BATCH_SIZE, BATCH_CONNECTIONS)
            ceiling.append(self.raw_insert(commits, BATCH_SIZE, BATCH_CONNECTIONS))
            log(
                f"scenario 8 run {i + 1}: writer batches {batch[-1]['per_s']:,.0f} consumes/s "
                f"({batch[-1]['cpu_us_per_consume']:.0f} us CPU each), 64 submitters "
                f"{concurrent[-1]['per_s']:,.0f}/s, raw INSERT "
                f"{ceiling[-1]['rps'] * BATCH_SIZE:,.0f} rows/s"
            )

        def med(runs_: list[dict[str, float]], key: str) -> float:
            return median([r[key] for r in runs_])

        self.results["8_writer_alone"] = {
            "subject": {
                "per_s": med(batch, "per_s"),
                "p50_ms": med(batch, "p50_ms"),
                "p99_ms": med(batch, "p99_ms"),
                "cpu_us_per_consume": med(batch, "cpu_us_per_consume"),
            },
            "concurrent": {
                "per_s": med(concurrent, "per_s"),
                "p50_ms": med(concurrent, "p50_ms"),
                "p99_ms": med(concurrent, "p99_ms"),
                "cpu_us_per_consume": med(concurrent, "cpu_us_per_consume"),
            },
            "ceiling": summarize(ceiling, BATCH_SIZE),
            "unit": "consumes/s through Writer.submit_each(1,000) in a process of its own; "
            "latency per batch (concurrent: 64 tasks, one consume each, latency per consume)",
            "ceiling_is": "the raw INSERT of scenario 3",
        }

    def scenario_9(self) -> None:
        """Expiry lag: EXPIRY_HOLDS holds placed through /v1/batch, expiring over one minute;
        nobody touches their accounts again. For each, the time from its `expires_at` to its
        `release` entry's commit (seen by polling the event store every EXPIRY_POLL_S) and to
        the entry's `recorded_at` (the scheduler's writer's stamp, just before the commit)."""
        assert self.service.process is not None
        settle(self.service.process.pid)
        due = self.place_expiring_holds()
        log(f"scenario 9: {len(due):,} holds placed, expiring over {EXPIRY_SPREAD_S} s")
        seen = self.watch_releases(due, max(due.values()) + EXPIRY_GRACE_S)
        commit_lags = sorted((seen[h][0] - due[h]) * 1000 for h in seen)
        recorded_lags = sorted((seen[h][1] - due[h]) * 1000 for h in seen)

        def pct(values: list[float], p: float) -> float:
            return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")

        result = {
            "holds": len(due),
            "released": len(seen),
            "missing": len(due) - len(seen),
            "p50_ms": pct(commit_lags, 0.50),
            "p99_ms": pct(commit_lags, 0.99),
            "max_ms": commit_lags[-1] if commit_lags else float("nan"),
            "recorded_p50_ms": pct(recorded_lags, 0.50),
            "recorded_p99_ms": pct(recorded_lags, 0.99),
            "recorded_max_ms": recorded_lags[-1] if recorded_lags else float("nan"),
            "spread_s": EXPIRY_SPREAD_S,
            "measured": "from each hold's expires_at to the first read of the event store "
            f"(every {EXPIRY_POLL_S * 1000:.0f} ms) that holds its release entry; recorded_*: "
            "to the entry's recorded_at",
        }
        self.results["9_expiry_lag"] = result
        log(
            f"scenario 9: {len(seen):,} of {len(due):,} released; lag to commit p50 "
            f"{result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms"
        )

    def place_expiring_holds(self) -> dict[str, float]:
        """hold_id -> its expires_at (epoch seconds), EXPIRY_SPREAD_S apart at most."""
        due: dict[str, float] = {}
        headers = {"Authorization": f"Bearer {self.key}"}
        for start in range(0, EXPIRY_HOLDS, BATCH_SIZE):
            items = [
                {
                    "op": "hold",
                    "account_id": f"acct-{n % ACCOUNTS}",
                    "amount": 1,
                    "operation": "EXPIRY",
                    "expires_in_s": EXPIRY_LEAD_S + n % EXPIRY_SPREAD_S,
                }
                for n in range(start, min(start + BATCH_SIZE, EXPIRY_HOLDS))
            ]
            headers["Idempotency-Key"] = f"expiry-{self.run_id}-{start}"
            answer = httpx.post(
                f"{self.service.url}/v1/batch",
                json={"commands": items},
                headers=headers,
                timeout=120,
            )
            answer.raise_for_status()
            for result in answer.json()["results"]:
                if result["status"] != 201:
                    raise RuntimeError(f"scenario 9: a hold was refused: {result}")
                hold = result["hold"]
                due[hold["hold_id"]] = dt.datetime.fromisoformat(hold["expires_at"]).timestamp()
        return due

    def watch_releases(self, due: dict[str, float], until: float) -> dict[str, tuple[float, float]]:
        """hold_id -> (when its release entry was first seen committed, its recorded_at)."""
        events = sql.Identifier(self.schema, "ledger_events")
        query = sql.SQL(
            "SELECT notification_id, state FROM {} WHERE notification_id > %s AND topic = %s "
            "ORDER BY notification_id"
        ).format(events)
        seen: dict[str, tuple[float, float]] = {}
        last = 0
        with psycopg.connect(self.service.database_url, autocommit=True) as conn:
            while len(seen) < len(due) and time.time() < until:
                rows = conn.execute(query, (last, "ledger.account:Account.HoldExpired")).fetchall()
                observed = time.time()
                for notification_id, state in rows:
                    last = max(last, notification_id)
                    fields = json.loads(bytes(state))
                    if fields["hold_id"] in due:
                        recorded = dt.datetime.fromisoformat(fields["timestamp"]["_data_"])
                        seen[fields["hold_id"]] = (observed, recorded.timestamp())
                time.sleep(EXPIRY_POLL_S)
        return seen

    def check_batch(self) -> str:
        """One batch by hand: every command must answer 201, else the figure means nothing."""
        items = [
            {"op": "consume", "account_id": f"acct-{n}", "amount": 1, "operation": "BENCH"}
            for n in range(BATCH_SIZE)
        ]
        answer = httpx.post(
            f"{self.service.url}/v1/batch",
            json={"commands": items},
            headers={
                "Authorization": f"Bearer {self.key}",
                "Idempotency-Key": f"check-{self.run_id}",
            },
            timeout=60,
        )
        answer.raise_for_status()
        statuses = [r["status"] for r in answer.json()["results"]]
        bad = [s for s in statuses if s != 201]
        if bad:
            raise RuntimeError(f"batch check: {len(bad)} of {len(statuses)} not 201: {bad[:5]}")
        return f"{len(statuses)} of {len(statuses)} commands answered 201"

    def raw_insert(self, commits: int, rows: int, connections: int) -> dict[str, Any]:
        url = self.service.database_url
        table = sql.Identifier(self.schema, "bench_scratch")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (originator_id uuid NOT NULL, "
                    "originator_version bigint NOT NULL, topic text NOT NULL, state bytea, "
                    "notification_id bigserial UNIQUE, "
                    "PRIMARY KEY (originator_id, originator_version))"
                ).format(table)
            )
        row_sql = sql.SQL(", ").join(sql.SQL("(%s, %s, %s, %s)") for _ in range(rows))
        statement = (
            sql.SQL(
                "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES "
            ).format(table)
            + row_sql
        )
        state = os.urandom(300)  # about the size of a stored consumption event
        latencies: list[float] = []
        lock = threading.Lock()
        per_connection = [commits // connections] * connections
        for i in range(commits % connections):
            per_connection[i] += 1

        backend_seconds: list[float] = []  # each connection's server process, as it ends

        def work(count: int) -> None:
            import uuid

            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                backend = int(row[0]) if row else 0
                conn.commit()
                used = cpu_seconds(backend)
                for _ in range(count):
                    params: list[Any] = []
                    for _ in range(rows):
                        params += [uuid.uuid4(), 1, "bench:Consumed", state]
                    started = time.perf_counter()
                    conn.execute(statement, params, prepare=True)
                    conn.commit()
                    with lock:
                        latencies.append((time.perf_counter() - started) * 1000)
                used = cpu_seconds(backend) - used  # before the connection (and it) ends
                with lock:
                    backend_seconds.append(used)

        threads = [threading.Thread(target=work, args=(n,)) for n in per_connection]
        client_before = time.process_time()
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        client_seconds = time.process_time() - client_before
        latencies.sort()
        # What rows cost PostgreSQL at its best (a multi-row INSERT of bare rows, by the
        # connections' own server processes): a floor under what a consume, which writes
        # several rows, can cost it.
        cores = {
            "postgres": round(sum(backend_seconds) / seconds, 2),
            "client": round(client_seconds / seconds, 2),
        }
        log(f"raw INSERT cores used: postgres {cores['postgres']}, client {cores['client']}")
        return {
            "requests": commits,
            "seconds": round(seconds, 2),
            "rps": commits / seconds,
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "errors": 0,
            "cpu_cores": cores,
        }

    def scenario_6(self) -> None:
        seconds = max(self.args.duration * 1.5, 10)
        result = asyncio.run(self.nats_latency(seconds))
        self.results["6_commit_to_nats_latency"] = result
        log(
            f"scenario 6: {result['commands_per_s']:,.0f} commands/s, {result['received']:,} "
            f"received, p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms"
        )

    async def nats_latency(self, seconds: float) -> dict[str, Any]:
        import nats

        nc = await nats.connect(self.service.nats_url)
        js = nc.jetstream()
        latencies: list[float] = []

        backlog = 0

        async def got(msg: Any) -> None:
            nonlocal backlog
            received = time.time()
            entry = json.loads(msg.data)
            if entry.get("operation") == "PACED":
                recorded = dt.datetime.fromisoformat(entry["recorded_at"]).timestamp()
                latencies.append((received - recorded) * 1000)
            else:
                backlog += 1
            await msg.ack()

        sub = await js.subscribe("ledger.bench.>", cb=got, deliver_policy="new")
        # The relay may still be publishing earlier scenarios' entries: wait until it is quiet.
        started = time.monotonic()
        seen = -1
        while seen != backlog and time.monotonic() - started < SETTLE_TIMEOUT_S:
            seen = backlog
            await asyncio.sleep(1.0)
        drained_s = time.monotonic() - started
        assert self.service.process is not None
        await asyncio.to_thread(settle, self.service.process.pid)
        delay_ms = await asyncio.to_thread(self.paced_delay_ms)
        env = self.wrk_env(
            BENCH_ACCOUNTS=str(ACCOUNTS),
            BENCH_DELAY_MS=str(delay_ms),
            BENCH_OPERATION="PACED",
        )
        run = await asyncio.to_thread(
            run_wrk,
            self.wrk,
            self.service.url,
            "consume.lua",
            env,
            connections=PACED_CONNECTIONS,
            duration_s=seconds,
            threads=1,
        )
        deadline = time.monotonic() + 5
        while len(latencies) < run["requests"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await sub.unsubscribe()
        await nc.close()
        ordered = sorted(latencies)

        def pct(p: float) -> float:
            return (
                ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")
            )

        return {
            "commands_per_s": run["rps"],
            "commands": run["requests"],
            "received": len(ordered),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": ordered[-1] if ordered else float("nan"),
            "http_p50_ms": run["p50_ms"],
            "http_p99_ms": run["p99_ms"],
            "relay_backlog_before": {"entries": backlog, "drained_in_s": round(drained_s, 1)},
            "pacing": {
                "connections": PACED_CONNECTIONS,
                "delay_ms": delay_ms,
                "target_per_s": PACED_TARGET_PER_S,
            },
            "measured": "receive time in a nats-py JetStream subscriber minus the entry's "
            "recorded_at (stamped by the writer before the commit)",
        }

    def paced_delay_ms(self) -> int:
        """The delay after each answer that makes PACED_CONNECTIONS send PACED_TARGET_PER_S.
        With rate = C / (d + t), a short run at delay d measures the answer time t; two rounds,
        since t itself depends on the rate."""
        delay = 1000 * PACED_CONNECTIONS / PACED_TARGET_PER_S / 2
        for _ in range(PACED_CALIBRATION_ROUNDS):
            env = self.wrk_env(
                BENCH_ACCOUNTS=str(ACCOUNTS),
                BENCH_DELAY_MS=str(round(delay)),
                BENCH_OPERATION="CAL",
            )
            run = run_wrk(
                self.wrk,
                self.service.url,
                "consume.lua",
                env,
                connections=PACED_CONNECTIONS,
                duration_s=PACED_CALIBRATION_S,
                threads=1,
            )
            answer_ms = max(0.0, 1000 * PACED_CONNECTIONS / run["rps"] - round(delay))
            delay = min(
                PACED_DELAY_MAX_MS,
                max(0.0, 1000 * PACED_CONNECTIONS / PACED_TARGET_PER_S - answer_ms),
            )
            log(
                f"scenario 6: {run['rps']:,.0f}/s, answers take {answer_ms:.1f} ms: "
                f"delay {delay:.0f} ms"
            )
        return round(delay)

    def scenario_7(self) -> None:
        """Resident memory of the service after MEMORY_ACCOUNTS distinct accounts were touched
        (opened: each one passes through the writer's cache), read between wrk runs."""
        assert self.service.process is not None
        key = create_tenant(self.service, self.admin_key, "memory", signup_bonus=0)
        deadline = time.monotonic() + self.args.memory_seconds
        touched, readings = 0, []
        while touched < MEMORY_ACCOUNTS and time.monotonic() < deadline:
            env = self.wrk_env(BENCH_ACCOUNT_PREFIX="mem-")
            env["BENCH_KEY"] = key
            run = run_wrk(
                self.wrk,
                self.service.url,
                "open.lua",
                env,
                connections=MEMORY_CONNECTIONS,
                duration_s=MEMORY_STEP_S,
            )
            if run["non_2xx"] or run["errors"]:
                raise RuntimeError(f"scenario 7: {run['non_2xx']} non-2xx, {run['errors']} errors")
            touched += run["requests"]
            rss = service_rss_mib(self.service.process.pid)
            readings.append({"accounts_touched": touched, "rss_mib": rss})
            log(f"scenario 7: {touched:,} accounts touched, service RSS {rss:.0f} MiB")
        self.results["7_memory"] = {
            "accounts_touched": touched,
            "rss_mib_max": max(r["rss_mib"] or 0 for r in readings),
            "rss_mib_last": readings[-1]["rss_mib"],
            "readings": readings,
            "unit": "resident MiB of serve and its writer child (follower and relay children apart)",
        }

    def seed_history(self) -> int:
        """Consumes on history-0 through /v1/batch until it has --seed-events events (or for
        --seed-seconds at most); returns its version."""
        deadline = time.monotonic() + self.args.seed_seconds
        target = self.args.seed_events
        version = 0

        async def client(index: int) -> int:
            last = 0
            headers = {"Authorization": f"Bearer {self.key}"}
            items = [
                {"op": "consume", "account_id": "history-0", "amount": 1, "operation": "SEED"}
            ] * BATCH_SIZE
            async with httpx.AsyncClient(timeout=120) as http:
                n = 0
                while time.monotonic() < deadline and last < target:
                    n += 1
                    headers["Idempotency-Key"] = f"seed-{self.run_id}-{index}-{n}"
                    answer = await http.post(
                        f"{self.service.url}/v1/batch", json={"commands": items}, headers=headers
                    )
                    answer.raise_for_status()
                    for result in answer.json()["results"]:
                        if result["status"] != 201:
                            raise RuntimeError(f"seed: {result}")
                        last = max(last, result["entry"]["version"])
            return last

        async def both() -> int:
            return max(await asyncio.gather(client(0), client(1)))

        started = time.monotonic()
        version = asyncio.run(both())
        log(
            f"scenario 4: history-0 has {version:,} events of its own "
            f"(seeded in {time.monotonic() - started:.0f} s)"
        )
        return version

    def scenario_4(self) -> None:
        runs, seconds = self.args.runs, self.args.duration
        version = self.seed_history()
        log("scenario 4: restarting the service so that no account is cached")
        self.service.stop()
        self.service.start()
        cold_history = consume_once(
            self.service.url, self.key, "history-0", f"cold-{self.run_id}-h"
        )
        cold_fresh = consume_once(self.service.url, self.key, "fresh-0", f"cold-{self.run_id}-f")
        log(
            f"scenario 4: first consume after restart: history {cold_history:.1f} ms, fresh {cold_fresh:.1f} ms"
        )
        subject, ceiling = [], []
        for i in range(runs):
            ceiling.append(
                self.load(
                    "consume.lua",
                    CONNECTIONS,
                    seconds,
                    BENCH_ACCOUNTS="1",
                    BENCH_ACCOUNT_PREFIX="fresh-",
                )
            )
            subject.append(
                self.load(
                    "consume.lua",
                    CONNECTIONS,
                    seconds,
                    BENCH_ACCOUNTS="1",
                    BENCH_ACCOUNT_PREFIX="history-",
                )
            )
            log(
                f"scenario 4 run {i + 1}: history {subject[-1]['rps']:,.0f}/s "
                f"fresh {ceiling[-1]['rps']:,.0f}/s"
            )
        self.results["4_long_history_vs_fresh"] = {
            "subject": summarize(subject),
            "ceiling": summarize(ceiling),
            "unit": "requests/s on one account (64 connections)",
            "ceiling_is": "the same load on a fresh account (fresh-0)",
            "prior_events": version,
            "cold_first_consume_ms": {"history": cold_history, "fresh": cold_fresh},
        }

    def scenario_5(self) -> None:
        """`python -m api rebuild` with the service stopped (no follower racing it)."""
        self.service.stop()
        with psycopg.connect(self.service.database_url) as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(self.schema, "ledger_events")
                )
            ).fetchone()
        stored = int(row[0]) if row else 0
        env = {**self.env, "LEDGER_DATABASE_URL": self.service.database_url}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "api", "rebuild"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.monotonic() - started
        found = re.search(
            r"rebuilt: ([\d,]+) events in ([\d.]+) s \(([\d,]+) events/s\)", done.stdout
        )
        if done.returncode != 0 or not found:
            raise RuntimeError(
                f"rebuild failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        events = int(found.group(1).replace(",", ""))
        self.results["5_rebuild"] = {
            "events": events,
            "events_in_store": stored,
            "seconds": float(found.group(2)),
            "events_per_s": float(found.group(3).replace(",", "")),
            "wall_s_with_start": round(wall, 1),
        }
        log(f"scenario 5: rebuilt {events:,} events at {found.group(3)} events/s")

    # ------------------------------------------------------------------------- profile

    def start_profile(self, scenario: str, seconds: float) -> subprocess.Popen[bytes] | None:
        """py-spy on the service during the first run of the scenario named by --profile."""
        if self.args.profile != scenario:
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            log("py-spy not found: no profile (pip install py-spy)")
            return None
        assert self.service.process is not None
        out = RESULTS_DIR / f"{self.run_id}-profile-scenario{scenario}.txt"
        self.profile_path = out
        return subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(self.service.process.pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "100",
                "--format",
                "raw",
                "--threads",
                # Only the thread holding the GIL: a thread blocked in a socket read or waiting
                # for the GIL was counted as busy, and the shares of threads meant nothing.
                "--gil",
                "--subprocesses",  # the writer child (and the follower and relay) too
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish_profile(self, scenario: str, profiler: subprocess.Popen[bytes] | None) -> None:
        if profiler is None:
            return
        profiler.wait(timeout=60)
        self.results[f"profile_scenario{scenario}"] = str(self.profile_path.relative_to(ROOT))
        log(f"profile (collapsed stacks) in {self.profile_path}")


# ---------------------------------------------------------------------------------- report


def ratio(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b else "-"


def table(results: dict[str, Any]) -> str:
    rows = [("scenario", "subject", "p50 ms", "p99 ms", "ceiling", "ratio", "target")]
    targets = {
        "1_consume_10k_accounts": "≥50%, p99≤25ms",
        "2_consume_one_hot_account": "≥35%",
        "3_batch_of_1000_consumes": "≥20,000/s, ≥70%",
        "4_long_history_vs_fresh": "within 10%",
        "8_writer_alone": "(no target)",
    }
    for name, r in results.items():
        if name in targets:
            s, c = r["subject"], r["ceiling"]
            rows.append(
                (
                    name,
                    f"{s['per_s']:,.0f}/s",
                    f"{s['p50_ms']:.1f}",
                    f"{s['p99_ms']:.1f}",
                    f"{c['per_s']:,.0f}/s",
                    ratio(s["per_s"], c["per_s"]),
                    targets[name],
                )
            )
    if "5_rebuild" in results:
        r = results["5_rebuild"]
        rows.append(
            (
                "5_rebuild",
                f"{r['events_per_s']:,.0f} ev/s",
                "-",
                "-",
                f"{r['events']:,} ev",
                "-",
                "≥50,000 ev/s",
            )
        )
    if "7_memory" in results:
        r = results["7_memory"]
        rows.append(
            (
                "7_memory",
                f"{r['rss_mib_max']:,.0f} MiB",
                "-",
                "-",
                f"{r['accounts_touched']:,} acc",
                "-",
                "<512 MiB at 1M",
            )
        )
    if "6_commit_to_nats_latency" in results:
        r = results["6_commit_to_nats_latency"]
        rows.append(
            (
                "6_commit_to_nats",
                f"{r['commands_per_s']:,.0f} cmd/s",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                "-",
                "-",
                "p99≤50ms",
            )
        )
    if "9_expiry_lag" in results:
        r = results["9_expiry_lag"]
        rows.append(
            (
                "9_expiry_lag",
                f"{r['released']:,}/{r['holds']:,} released",
                f"{r['p50_ms']:.0f}",
                f"{r['p99_ms']:.0f}",
                f"max {r['max_ms']:,.0f} ms",
                "-",
                "p99≤1000ms",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (median)")
    parser.add_argument("--duration", type=float, default=8, help="seconds per wrk run")
    parser.add_argument(
        "--seed-events", type=int, default=SEED_EVENTS, help="scenario 4: events to seed"
    )
    parser.add_argument(
        "--seed-seconds", type=float, default=400, help="scenario 4: most seconds of seeding"
    )
    parser.add_argument(
        "--memory-seconds", type=float, default=420, help="scenario 7: most seconds of opening"
    )
    parser.add_argument(
        "--scenarios",
        default="1,2,3,8,6,9,7,4,5",
        help="which to run, in this order (4 and 5 last; 9: expiry lag)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="1",
        default="",
        help="py-spy on the service during the first run of this scenario (1 or 3; default 1)",
    )
    args = parser.parse_args()
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    started = time.monotonic()
    speed_ms = python_speed_ms()
    log(f"python speed: sum(range(10**6)) in {speed_ms} ms (median of {PYTHON_SPEED_REPEATS})")
    try:
        bench.start()
        bench.setup()
        for name in wanted:
            getattr(bench, f"scenario_{name}")()
    finally:
        bench.service.stop()
    service_rss = bench.service.rss_mib_max or None
    elapsed = time.monotonic() - started
    report = {
        "run_id": bench.run_id,
        "command": "make bench " + " ".join(sys.argv[1:]),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "wrk, the service, PostgreSQL and NATS share the same cores",
            "python_speed_ms": speed_ms,
        },
        "settings": {
            "runs": args.runs,
            "duration_s": args.duration,
            "connections": CONNECTIONS,
            "wrk_threads": WRK_THREADS,
            "accounts": ACCOUNTS,
            "schema": bench.schema,
            "database": "external" if os.environ.get("LEDGER_DATABASE_URL") else "embedded",
        },
        "service_rss_mib_max_at_stop": service_rss,
        "elapsed_s": round(elapsed, 1),
        "scenarios": bench.results,
    }
    out = RESULTS_DIR / f"{bench.run_id}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print(table(bench.results))
    print()
    if service_rss:
        print(f"service RSS before stopping (largest): {service_rss:.0f} MiB")
    print(f"medians of {args.runs} runs of {args.duration:g} s; total {elapsed:.0f} s")
    print(f"python speed: sum(range(10**6)) in {speed_ms} ms")
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

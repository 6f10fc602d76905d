"""`ledger serve` with LEDGER_BACKGROUND=process (the default) runs the follower (`ledger project`),
the relay (`ledger relay`) and the scheduler (`ledger schedule`) as supervised child processes,
and the writer as a child of its own (`api.roles.writer_process`, "write" below). Real processes, a real PostgreSQL,
a real NATS server; nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from api.roles.embedded import free_port
from events.subjects import entry_subject
from tests.conftest import TEST_DATA_DIR
from tests.e2e.conftest import ADMIN, ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "ada@example.com"
# Deadlines of the waits below; a wait is never the assertion itself.
READY_TIMEOUT_S = 20.0
CHILD_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 25.0
POLL_S = 0.05


class Serve:
    """A `python -m api serve` process and the JSON log lines it and its children write
    (the children inherit serve's stderr, so one pipe carries every role's lines)."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict):
                    with self._lock:
                        self._lines.append(line)

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                line
                for line in self._lines
                if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
            ]

    def started(self, role: str) -> list[int]:
        """Pids of every `role` child the supervisor started, in order."""
        return [line["pid"] for line in self.logged("background_role_started", role=role)]

    def children(self) -> dict[int, str]:
        """pid -> role of serve's live children, read from /proc: `python -m api` roles by their
        sub-command, the writer as "write"."""
        found: dict[int, str] = {}
        for pid in _children(self.process.pid):
            argv = _argv(pid)
            if _alive(pid) and argv[1:3] == ["-m", "api"]:
                found[pid] = argv[3]
            elif _alive(pid) and argv[1:3] == ["-m", "api.roles.writer_process"]:
                found[pid] = "write"
        return found

    def writer_pids(self) -> list[int]:
        """Pids of every writer child serve started, in order."""
        return [line["pid"] for line in self.logged("writer_process_started")]


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                found.update(int(p) for p in (task / "children").read_text().split())
    return found


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _alive(pid: int) -> bool:
    """Still running: a zombie has finished and only waits for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def eventually(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """The first truthy value of `predicate` (sync or async), polled until a deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(POLL_S)


# Issue 16 added the webhook deliverer and the auto top-up watcher to serve's children.
MONEY_ROLES = ("project", "relay", "schedule", "webhooks", "topups")
ALL_CHILDREN = ["project", "relay", "schedule", "topups", "webhooks", "write"]


@pytest.fixture
async def serve(
    database_url: str, schema: str, nats_url: str, stream_name: str
) -> AsyncIterator[Serve]:
    """`serve` with default settings on a free port, ready; stopped and cleaned up after."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")},
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_DB_SCHEMA": schema,
        "LEDGER_NATS_URL": nats_url,
        "LEDGER_ADMIN_KEY": ADMIN_KEY,
        "LEDGER_PORT": str(port),
        "LEDGER_STREAM_NAME": stream_name,
        "LEDGER_LOG_FORMAT": "json",
        "LEDGER_DATA_DIR": str(TEST_DATA_DIR / f"serve-{secrets.token_hex(4)}"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "api", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Serve(process, f"http://127.0.0.1:{port}")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=2) as client:

            async def ready() -> bool:
                assert process.poll() is None, f"serve exited with {process.returncode}"
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get("/health/ready")).status_code == 200
                return False

            await eventually(ready, READY_TIMEOUT_S, "/health/ready")
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Whatever serve left behind, and only the roles it started.
        for line in [
            *server.logged("background_role_started"),
            *server.logged("writer_process_started"),
        ]:
            pid = line["pid"]
            if _alive(pid) and _argv(pid)[1] == "-m" and _argv(pid)[2].startswith("api."):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        nc = await nats.connect(nats_url)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream_name)
        await nc.close()


async def funded_account(client: httpx.AsyncClient, grant: int) -> tuple[str, dict[str, str]]:
    """A new tenant (made with the admin key) and its account ACCOUNT holding `grant` credits."""
    tenant_id = "t-" + secrets.token_hex(4)
    created = await client.post(
        "/v1/tenants",
        json={"tenant_id": tenant_id, "name": tenant_id, "settings": {}},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['api_key']['key']}"}
    opened = await client.put(f"/v1/accounts/{ACCOUNT}", json={}, headers=headers)
    assert opened.status_code == 201, opened.text
    granted = await client.post(
        f"/v1/accounts/{ACCOUNT}/grants",
        json={"amount": grant, "reason": "fund"},
        headers=headers,
    )
    assert granted.status_code == 201, granted.text
    return tenant_id, headers


async def consume(client: httpx.AsyncClient, headers: dict[str, str], amount: int) -> int:
    """Consumes `amount` over HTTP; the entry's position."""
    response = await client.post(
        f"/v1/accounts/{ACCOUNT}/consumptions",
        json={"amount": amount, "operation": "IMAGE_GENERATION"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["position"])


async def read_model_entry(
    client: httpx.AsyncClient, headers: dict[str, str], position: int
) -> dict[str, Any]:
    """The entry at `position` as the read models hold it, asked for with `min_position`. The
    API waits up to 5 s and answers 503 when the follower is further behind (a child that is
    still starting): the read is retried until a deadline."""

    async def read() -> httpx.Response | None:
        response = await client.get(
            f"/v1/accounts/{ACCOUNT}/entries",
            params={"min_position": position, "after": position - 1, "limit": 1},
            headers=headers,
            timeout=10,
        )
        return None if response.status_code == 503 else response

    response = await eventually(read, CHILD_TIMEOUT_S, f"the read models at {position}")
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["position"] for item in items] == [position]
    entry: dict[str, Any] = items[0]
    return entry


async def nats_entry(nats_url: str, stream_name: str, subject: str) -> Any:
    """The first message of `subject` in the JetStream stream, through a subscription."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()

        async def stream_exists() -> bool:  # the relay creates it when it connects
            try:
                await js.stream_info(stream_name)
            except NotFoundError:
                return False
            return True

        await eventually(stream_exists, CHILD_TIMEOUT_S, f"stream {stream_name}")
        subscription = await js.subscribe(
            subject, stream=stream_name, deliver_policy=DeliverPolicy.ALL
        )
        try:
            return await subscription.next_msg(timeout=CHILD_TIMEOUT_S)
        finally:
            await subscription.unsubscribe()
    finally:
        await nc.close()


async def test_serve_starts_one_project_child_and_one_relay_child_and_a_consume_reaches_the_read_model_and_nats(
    serve: Serve, nats_url: str, stream_name: str
) -> None:
    await eventually(lambda: all(serve.started(role) for role in MONEY_ROLES), 5, "roles")
    project, relay = serve.started("project"), serve.started("relay")
    schedule = serve.started("schedule")
    assert len(project) == 1 and len(relay) == 1 and len(schedule) == 1
    [writer] = serve.writer_pids()
    [webhooks], [topups] = serve.started("webhooks"), serve.started("topups")
    assert serve.children() == {
        project[0]: "project",
        relay[0]: "relay",
        schedule[0]: "schedule",
        writer: "write",
        webhooks: "webhooks",
        topups: "topups",
    }

    async with httpx.AsyncClient(base_url=serve.url, timeout=10) as client:
        tenant_id, headers = await funded_account(client, grant=100)
        position = await consume(client, headers, 30)
        entry = await read_model_entry(client, headers, position)
    assert (entry["type"], entry["amount"], entry["balance"]) == ("consume", -30, 70)

    message = await nats_entry(nats_url, stream_name, entry_subject(tenant_id, ACCOUNT, "consume"))
    assert int(message.headers["Nats-Msg-Id"]) == position
    payload = json.loads(message.data)
    assert (payload["tenant_id"], payload["position"], payload["amount"]) == (
        tenant_id,
        position,
        -30,
    )


async def test_serve_hands_each_child_its_settings_on_a_pipe_never_on_the_command_line(
    serve: Serve, database_url: str
) -> None:
    children = await eventually(
        lambda: len(serve.children()) == 6 and serve.children(), CHILD_TIMEOUT_S, "six children"
    )
    serve_stdin = os.readlink(f"/proc/{serve.process.pid}/fd/0")
    for pid in children:
        command_line = " ".join(_argv(pid))
        assert ADMIN_KEY not in command_line and database_url not in command_line
        stdin = os.readlink(f"/proc/{pid}/fd/0")
        assert stdin.startswith("pipe:") and stdin != serve_stdin


async def test_a_killed_project_child_is_started_again_and_later_consumes_reach_the_read_model(
    serve: Serve,
) -> None:
    [killed] = await eventually(lambda: serve.started("project"), 5, "the project child")
    async with httpx.AsyncClient(base_url=serve.url, timeout=10) as client:
        _, headers = await funded_account(client, grant=100)
        await read_model_entry(client, headers, await consume(client, headers, 1))

        os.kill(killed, signal.SIGKILL)
        exited = await eventually(
            lambda: serve.logged("background_role_exited", role="project", pid=killed),
            CHILD_TIMEOUT_S,
            "background_role_exited",
        )
        assert exited[0]["returncode"] == -signal.SIGKILL
        started = await eventually(
            lambda: serve.started("project")[1:], CHILD_TIMEOUT_S, "a new project child"
        )
        assert started[0] != killed and not _alive(killed)
        roles = await eventually(
            lambda: sorted(serve.children().values()) == ALL_CHILDREN and serve.children(),
            CHILD_TIMEOUT_S,
            "one project, relay, schedule, webhooks, topups and writer child",
        )
        assert roles == {
            started[0]: "project",
            serve.started("relay")[0]: "relay",
            serve.started("schedule")[0]: "schedule",
            serve.writer_pids()[0]: "write",
            serve.started("webhooks")[0]: "webhooks",
            serve.started("topups")[0]: "topups",
        }

        for amount in (2, 3):
            position = await consume(client, headers, amount)
            entry = await read_model_entry(client, headers, position)
            assert (entry["type"], entry["amount"]) == ("consume", -amount)
    assert serve.started("project") == [killed, started[0]]  # restarted once, no more


async def test_sigterm_to_serve_stops_its_children_and_serve_exits_0(serve: Serve) -> None:
    await eventually(lambda: len(serve.children()) == 6, CHILD_TIMEOUT_S, "all six children")
    children = serve.children()
    assert sorted(children.values()) == ALL_CHILDREN

    serve.process.send_signal(signal.SIGTERM)
    try:
        returncode = await asyncio.to_thread(serve.process.wait, SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve still running {SHUTDOWN_TIMEOUT_S} s after SIGTERM")
    assert returncode == 0
    assert [pid for pid in children if _alive(pid)] == []
    await eventually(lambda: serve.logged("background_roles_stopped"), 5, "the last log line")
    assert serve.logged("background_role_killed") == []  # each stopped on SIGTERM, in time
    assert serve.logged("background_role_exited") == []  # none was restarted on the way out
    assert serve.logged("writer_process_exited") == []  # the writer stopped when asked, not died
    assert serve.logged("writer_process_killed") == []
    assert serve.logged("writer_process_stopped")[0]["returncode"] == 0

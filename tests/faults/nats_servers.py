"""nats-servers of the test's own: one JetStream server, or a three-node JetStream cluster.

Each node keeps its client port, route port and store across a stop and a start, so the
service's URL stays valid and the stream's files survive. `stop(kill=True)` is SIGKILL: the
node vanishes mid-write, as in a crash or a lost machine.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from api.roles.embedded import free_port, nats_server_binary

# How long a node may take to answer /healthz (JetStream ready, cluster formed) after start.
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
CLUSTER_SIZE = 3


class NatsNode:
    """One nats-server process with JetStream; part of a cluster when given routes."""

    def __init__(self, store: Path, name: str, cluster_name: str | None = None) -> None:
        self.store = store
        self.name = name
        self.cluster_name = cluster_name
        self.port = free_port()
        self.monitor_port = free_port()
        self.route_port = free_port() if cluster_name else None
        self.routes: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.log = store.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def route_url(self) -> str:
        return f"nats://127.0.0.1:{self.route_port}"

    def command(self) -> list[str]:
        args = [
            nats_server_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "-js",
            "-sd",
            str(self.store),
            "--server_name",
            self.name,
        ]
        if self.cluster_name:
            args += ["--cluster_name", self.cluster_name, "--cluster", self.route_url]
            args += ["--routes", ",".join(self.routes)]
        return args

    def launch(self) -> None:
        """Starts the process without waiting (a cluster's nodes wait for each other)."""
        assert self.process is None, f"{self.name} is running"
        self.store.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=log)

    def healthy(self) -> bool:
        """JetStream on this node answers (for a cluster: the node is current with it)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=1
            ) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.healthy():
            assert self.process is not None and self.process.poll() is None, (
                f"nats-server {self.name} exited: see {self.log}"
            )
            assert time.monotonic() < deadline, f"nats-server {self.name} not healthy in time"
            time.sleep(POLL_S)

    def start(self) -> None:
        self.launch()
        self.wait_healthy()

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop(kill=True)
        shutil.rmtree(self.store, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.log.unlink()


class NatsCluster:
    """Three JetStream nodes with routes to each other; a stream there may have 3 replicas."""

    def __init__(self, root: Path, name: str = "faults") -> None:
        self.nodes = [
            NatsNode(root / f"n{index}", f"n{index}", cluster_name=name)
            for index in range(1, CLUSTER_SIZE + 1)
        ]
        for node in self.nodes:
            node.routes = [other.route_url for other in self.nodes if other is not node]

    def start(self) -> None:
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_healthy()

    def node(self, name: str) -> NatsNode:
        [found] = [node for node in self.nodes if node.name == name]
        return found

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()

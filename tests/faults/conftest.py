"""Fixtures of the fault suite: servers each test owns and may break, a deployment on them.

Nothing here touches the machine's own PostgreSQL or NATS: every test starts a PostgreSQL
cluster (pgserver's binaries, a free port) and nats-server(s) of its own, and ends only the
processes it started. The figures of every test are printed at the end of the run.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.deployment import Deployment
from tests.faults.figures import FIGURES_DIR, Figures
from tests.faults.nats_servers import NatsCluster, NatsNode
from tests.faults.postgres import PrivatePostgres, init_template

_RECORDED: list[Figures] = []


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ledger-faults-"))
    try:
        yield init_template(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres(postgres_template: Path) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(postgres_template)
    try:
        server.start()
        server.create_database()
        yield server
    finally:
        server.remove()


@pytest.fixture
def test_directory(request: pytest.FixtureRequest) -> Path:
    """Logs, replay files and the embedded data directory of one test, under .data/faults/."""
    path = FIGURES_DIR / "runs" / request.node.name
    shutil.rmtree(path, ignore_errors=True)  # the last run's only
    path.mkdir(parents=True)
    return path


@pytest.fixture
def nats_server(test_directory: Path) -> Iterator[NatsNode]:
    node = NatsNode(test_directory / "nats", "n1")
    try:
        node.start()
        yield node
    finally:
        node.remove()


@pytest.fixture
def nats_cluster(test_directory: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(test_directory / "nats-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def deployment_of(
    postgres: PrivatePostgres, test_directory: Path
) -> Iterator[Callable[..., Deployment]]:
    """Makes the test's deployment on its PostgreSQL, with the NATS URLs it gives; in a
    database of its own when named (two deployments in one database share its advisory
    locks: one follower and one relay for both)."""
    made: list[Deployment] = []

    def make(nats_urls: list[str], database: str | None = None, **settings: str) -> Deployment:
        url = postgres.create_database(database) if database else postgres.url
        directory = test_directory / database if database else test_directory
        directory.mkdir(exist_ok=True)
        deployment = Deployment(url, nats_urls, directory, settings)
        made.append(deployment)
        return deployment

    try:
        yield make
    finally:
        for deployment in made:
            deployment.remove()


@pytest.fixture
def figures_named(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Figures]]:
    """Makes the figures of one part of the test (a test with two deployments has two)."""
    made: list[Figures] = []

    def make(part: str) -> Figures:
        recorded = Figures(f"{request.node.name}{part}")
        made.append(recorded)
        return recorded

    yield make
    for recorded in made:
        if recorded.values:  # also when the test stopped before concluding
            recorded.write()
            _RECORDED.append(recorded)


@pytest.fixture
def figures(figures_named: Callable[[str], Figures]) -> Figures:
    return figures_named("")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RECORDED:
        return
    terminalreporter.section("fault suite figures")
    for recorded in _RECORDED:
        terminalreporter.write_line(recorded.line())
        for rule in recorded.broken:
            terminalreporter.write_line(f"    broken: {rule}")

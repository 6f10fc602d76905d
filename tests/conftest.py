"""Shared fixtures. Integration tests get their own database per run and a schema per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

TEST_DATA_DIR = Path(__file__).resolve().parent.parent / ".data" / "test"


@pytest.fixture(scope="session")
def database_server_url() -> str:
    """LEDGER_TEST_DATABASE_URL when set, else an embedded PostgreSQL under .data/test."""
    url = os.environ.get("LEDGER_TEST_DATABASE_URL")
    if url:
        return url
    from api.roles.embedded import start_postgres

    return start_postgres(TEST_DATA_DIR)


@pytest.fixture(scope="session")
def database_url(database_server_url: str) -> Iterator[str]:
    from tests.databases import create_database, drop_database

    dbname = f"ledger_test_{os.getpid()}_{secrets.token_hex(4)}"
    url = create_database(database_server_url, dbname)
    yield url
    drop_database(database_server_url, dbname)


@pytest.fixture
def schema(database_url: str) -> str:
    from api.roles.database import ensure_schema

    name = f"t_{secrets.token_hex(6)}"
    ensure_schema(database_url, name)
    return name


@pytest.fixture
def ledger(database_url: str, schema: str) -> Iterator[object]:
    from ledger.store.application import Ledger

    app = Ledger(database_url, schema=schema)
    yield app
    app.close()


@pytest.fixture
async def writer(ledger: object) -> AsyncIterator[object]:
    from ledger.writer.writer import Writer

    instance = Writer(ledger)  # type: ignore[arg-type]
    instance.start()
    yield instance
    await instance.stop()


@pytest.fixture
def nats_url() -> Iterator[str]:
    """LEDGER_TEST_NATS_URL when set, else a NATS of this test's own (an embedded nats-server,
    started in milliseconds): streams of different tests share the subjects `ledger.>`, which
    JetStream allows only once per server."""
    url = os.environ.get("LEDGER_TEST_NATS_URL")
    if url:
        yield url
        return
    from tests.nats_server import NatsServer

    server = NatsServer(TEST_DATA_DIR / f"nats-{os.getpid()}-{secrets.token_hex(4)}")
    server.start()
    yield server.url
    server.remove()


@pytest.fixture
def stream_name() -> str:
    return f"LEDGER_TEST_{secrets.token_hex(4).upper()}"

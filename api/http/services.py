"""What the routes need, built once by create_app's lifespan and kept on app.state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper
from litestar import Request
from litestar.datastructures import State

from api.http.auth import Authenticator
from api.http.key_usage import KeyUsage
from api.http.metrics import Metrics
from api.roles.writer_process import WriterProcess
from api.settings import Settings
from ledger.store.application import Ledger
from ledger.writer.writer import Writer
from projections.queries import ReadModels


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    writer: Writer | WriterProcess
    auth: Authenticator
    key_usage: KeyUsage
    metrics: Metrics
    mapper: Mapper[UUID]
    read_models: ReadModels | None = None  # None until the asyncpg pool is up
    nats: Any = None  # a nats-py client when LEDGER_NATS_URL (or the embedded NATS) is set

    async def store_position(self) -> int:
        """The event store's last position (what a complete read model must reach)."""
        return await asyncio.to_thread(self.ledger.max_position)


def services(state: State) -> Services:
    found: Services = state["services"]
    return found


def services_of(request: Request[Any, Any, Any]) -> Services:
    return services(request.app.state)

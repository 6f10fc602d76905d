"""What the routes need, built once by create_app's lifespan (api/roles/runtime.py), kept on
app.state and given to each route by dependency injection (api/http/dependencies.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper

from api.http.auth import Authenticator
from api.http.key_usage import KeyUsage
from api.http.metrics import Metrics
from api.http.payment_store import PaymentStore
from api.http.stream_tokens import StreamTokens
from api.http.webhook_endpoints import WebhookEndpoints
from api.settings import Settings
from ledger.store.application import Ledger
from ledger.writer.submitting import Submitting
from projections.due_times import ExpiryReads
from projections.queries import ReadModels


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    writer: Submitting  # the writer's thread, or the writer process
    auth: Authenticator
    key_usage: KeyUsage
    metrics: Metrics
    mapper: Mapper[UUID]
    read_models: ReadModels | None = None  # None until the asyncpg pool is up
    expiry_reads: ExpiryReads | None = None  # the read rule of docs/adr/0007, on the same pool
    nats: Any = None  # a nats-py client when LEDGER_NATS_URL (or the embedded NATS) is set
    payments: PaymentStore | None = None  # webhook secrets and the payment inbox (issue 16)
    webhooks: WebhookEndpoints | None = None  # outbound webhook endpoints (issue 16)
    stream_tokens: StreamTokens = field(init=False)  # signed with settings.signing_secret

    def __post_init__(self) -> None:
        self.stream_tokens = StreamTokens(self.settings.signing_secret)

    async def store_position(self) -> int:
        """The event store's last position (what a complete read model must reach)."""
        return await asyncio.to_thread(self.ledger.max_position)

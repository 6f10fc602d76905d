"""What a handler may ask of the batch it runs in (the writer's BatchSession; a dict in the
unit tests' fake): get → decide → save, on aggregates that are saved together."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from ledger.commands import Envelope
from ledger.outcome import Outcome
from ledger.store.stored_results import StoredResult
from ledger.tenants.tenant import Tenant

T = TypeVar("T")


class UnitOfWork(Protocol):
    now: datetime

    def get(self, cls: type[T], aggregate_id: UUID, *, fresh: bool = False) -> T | None:
        """The aggregate, or None. `fresh`: also what other writers committed since caching."""

    def add(self, aggregate: Any) -> None:
        """Saves the aggregate's new events with the batch."""

    def result(self, result_id: UUID) -> StoredResult | None:
        """The answer stored under an idempotency key or payment_ref, or None."""

    def remember(self, kind: str, key: str, envelope: Envelope[Any], outcome: Outcome) -> None:
        """Stores the command's answer under (tenant, kind, key) with the batch: a second
        one under the same key can never commit (ADR 0002)."""

    def replay(self, stored: StoredResult) -> Outcome:
        """A stored answer, as it was first given."""

    def account_event(self, account_uuid: UUID, version: int) -> Any:
        """The account's stored event of that version, or None."""

    def tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant, re-read at least every TENANT_CACHE_TTL_S."""

    def checkpoint(self) -> None:
        """What the command did so far stands whatever follows (an expiry sweep)."""

"""The aggregates batches share: accounts and tenants in one bounded LRU, the records of
refunded consumptions and of holds in a smaller one."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from uuid import UUID

from ledger.accounts.account import Account
from ledger.tenants.api_keys import ApiKeyIndex
from ledger.tenants.tenant import Tenant

# Consumption and hold records kept in memory: most are never read again.
RECORDS_CACHE_SIZE_MAX = 20_000


class LRU:
    """A bounded least-recently-used map of aggregates by id, with each one's load time."""

    def __init__(self, size_max: int) -> None:
        self.size_max = size_max
        self.items: OrderedDict[UUID, tuple[Any, float]] = OrderedDict()

    def get(self, aggregate_id: UUID) -> tuple[Any, float] | None:
        item = self.items.get(aggregate_id)
        if item is not None:
            self.items.move_to_end(aggregate_id)
        return item

    def put(self, aggregate: Any, loaded_at: float) -> None:
        self.items[aggregate.id] = (aggregate, loaded_at)
        self.items.move_to_end(aggregate.id)
        while len(self.items) > self.size_max:
            self.items.popitem(last=False)


class AggregateCache:
    """Accounts and tenants in one bounded LRU; the records of refunded consumptions and of
    holds in a smaller one, so a stream of new holds never pushes accounts out."""

    def __init__(self, size_max: int, records_size_max: int = RECORDS_CACHE_SIZE_MAX) -> None:
        self._main = LRU(size_max)
        self._records = LRU(records_size_max)

    def __len__(self) -> int:
        return len(self._main.items) + len(self._records.items)

    def get(self, aggregate_id: UUID) -> tuple[Any, float] | None:
        return self._main.get(aggregate_id) or self._records.get(aggregate_id)

    def put(self, aggregate: Any, loaded_at: float) -> None:
        lru = self._main if isinstance(aggregate, Account | Tenant | ApiKeyIndex) else self._records
        lru.put(aggregate, loaded_at)

    def evict(self, aggregate_id: UUID) -> None:
        self._main.items.pop(aggregate_id, None)
        self._records.items.pop(aggregate_id, None)

    def clear(self) -> None:
        self._main.items.clear()
        self._records.items.clear()

"""What routes that read the read models share: waiting for a position, waiting for what has
expired by now to be recorded (docs/adr/0007), the account check, and the page of entries
they answer."""

from __future__ import annotations

from datetime import datetime

import msgspec

from api.http.problems import ApiError
from api.http.services import Services
from ledger.accounts.commands import GetAccount
from ledger.accounts.views import Entry
from ledger.commands import Envelope
from ledger.ids import check_account_id
from projections.queries import ReadModels


class EntryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Entry]
    next_after: int | None


def read_models(services: Services) -> ReadModels:
    if services.read_models is None:
        raise ApiError("unavailable", "the read models are not configured on this replica")
    return services.read_models


async def wait_for(services: Services, min_position: int | None) -> None:
    """Returns once the read models hold `min_position`. A position past the event store's last
    one was never in a command's answer: a bad request (400) at once, not a 503 after a wait."""
    if min_position and min_position > await services.store_position():
        raise ApiError(
            "validation_error", f"min_position {min_position} is past the ledger's last position"
        )
    await read_models(services).wait_for(min_position)


async def expiries_settled(
    services: Services, tenant_id: str, account_id: str | None = None
) -> datetime:
    """The read's time (the database's clock), once everything of the account (or the
    tenant) due by then is recorded and in the read models: a read never shows credits past
    their expiry as there. 503 when the scheduler is too far behind (READ_EXPIRY_WAIT_MAX_S)."""
    if services.expiry_reads is None:
        raise ApiError("unavailable", "the read models are not configured on this replica")
    return await services.expiry_reads.settled(tenant_id, account_id)


async def known_account(services: Services, tenant_id: str, account_id: str) -> None:
    """404 unless the account exists (the read models may lag: the writer has the last word)."""
    check_account_id(account_id)
    if not await read_models(services).account_known(tenant_id, account_id):
        query = Envelope(tenant_id=tenant_id, command=GetAccount(account_id=account_id))
        await services.writer.submit(query)

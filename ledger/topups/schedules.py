"""What falls due in the auto top-up area (docs/adr/0007, 0008): the retry of an open request.

One `Schedule` of the registry, `topup_retry`, one due item per account (its key is the
account id: one request is open at a time, and the purchase that closes it names no topup_id):
- a `topup_requested` entry (the Account's `TopUpRequested`, attempt n) makes the account's
  retry due RETRY_DELAYS_S after it, for attempt n + 1 of the same topup_id (the item's
  `detail`, `<attempt>:<topup_id>`); after the last request (attempt TOPUP_ATTEMPTS_MAX) the
  item is the give-up, whose command abandons the request;
- a purchase credited to the account (`CreditsPurchased`) clears it: the purchase handler
  closes whatever request is open.

The scheduler sends `RetryTopUp` under the item's deterministic key (`due_key`): asked once
per attempt however many schedulers send it. A request abandoned has no event of the account
(`TopUpRecord.Abandoned` names no tenant): its item is the give-up's own, done once that
command has committed. The retry of a request already closed or asked again finds nothing to
do and records nothing (`closed`, `open`), which is done too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from ledger.accounts.account_events import CreditsPurchased, TopUpRequested
from ledger.registry import DueChange, DueItem, Schedule
from ledger.topups.commands import RetryTopUp
from ledger.topups.record import TOPUP_ATTEMPTS_MAX

TOPUP_RETRY = "topup_retry"
# From a request to its retry, by attempt: 5 min after the first, 15 min after the second,
# 1 h after the third and after the last (TOPUP_ATTEMPTS_MAX = 4), which is then abandoned.
RETRY_DELAYS_S: tuple[float, ...] = (300, 900, 3_600)


def retry_delay(attempt: int) -> timedelta:
    """How long after request `attempt` its retry (or the give-up) is due."""
    return timedelta(seconds=RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S)) - 1])


def _retry_changes(event: Any) -> Iterator[DueChange]:
    tenant_id, account_id = event.tenant_id, event.account_id
    if isinstance(event, CreditsPurchased):
        yield DueChange(TOPUP_RETRY, account_id, tenant_id, account_id, None)
        return
    metadata = event.metadata
    topup_id, attempt = metadata.get("topup_id"), metadata.get("attempt")
    if not isinstance(topup_id, str) or not isinstance(attempt, int):
        return  # not a request this area made: nothing to retry
    if not 1 <= attempt <= TOPUP_ATTEMPTS_MAX:
        return
    due_at = event.timestamp + retry_delay(attempt)
    detail = f"{attempt + 1}:{topup_id}"
    yield DueChange(TOPUP_RETRY, account_id, tenant_id, account_id, due_at, detail)


def _retry(item: DueItem) -> RetryTopUp:
    attempt, topup_id = item.detail.split(":", 1)
    return RetryTopUp(account_id=item.account_id, topup_id=topup_id, attempt=int(attempt))


SCHEDULES = (
    Schedule(
        kind=TOPUP_RETRY,
        events=(TopUpRequested, CreditsPurchased),
        changes=_retry_changes,
        command=_retry,
        reads_wait=False,
    ),
)

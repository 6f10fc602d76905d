"""POST /v1/batch: up to BATCH_COMMANDS_MAX commands; each on its own, or all-or-nothing."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, post
from litestar.params import JSONBody

from api.http import wire
from api.http.accounts import CONSUME, SECURITY, WRITE, IdempotencyHeader
from api.http.problems import ApiError, problem_of, responses
from api.http.services import services_of
from ledger import commands as c
from ledger.accounts.handlers import Outcome
from ledger.accounts.views import Entry, HoldView
from ledger.errors import LedgerError
from ledger.limits import IDEMPOTENCY_KEY_LENGTH_MAX

# '<header>#<index>' must fit the 255 characters of a key (index < 1000: '#999').
BATCH_KEY_LENGTH_MAX = IDEMPOTENCY_KEY_LENGTH_MAX - 4

SCOPE_OF_OP = {
    "grant": WRITE,
    "purchase": WRITE,
    "adjust": WRITE,
    "consume": CONSUME,
    "refund": CONSUME,
    "hold": CONSUME,
    "capture": CONSUME,
    "release": CONSUME,
}

COMMAND_OF_ITEM: dict[type[Any], type[c.AccountCommand]] = {
    wire.BatchGrant: c.GrantCredits,
    wire.BatchPurchase: c.PurchaseCredits,
    wire.BatchConsume: c.ConsumeCredits,
    wire.BatchRefund: c.RefundConsumption,
    wire.BatchHold: c.PlaceHold,
    wire.BatchCapture: c.CaptureHold,
    wire.BatchRelease: c.ReleaseHold,
    wire.BatchAdjust: c.AdjustBalance,
}


def to_command(item: Any, tenant_id: str, batch_key: str | None, index: int) -> c.AccountCommand:
    fields = msgspec.structs.asdict(item)
    if fields["idempotency_key"] is None and batch_key is not None:
        fields["idempotency_key"] = f"{batch_key}#{index}"
    return COMMAND_OF_ITEM[type(item)](tenant_id=tenant_id, **fields)


def result_of(outcome: Outcome | BaseException) -> wire.BatchResult:
    if isinstance(outcome, LedgerError):
        error = problem_of(outcome)
        return wire.BatchResult(status=error.status, error=error)
    assert isinstance(outcome, Outcome)
    status = 201 if outcome.created else 200
    if isinstance(outcome.value, HoldView):
        return wire.BatchResult(status=status, hold=outcome.value, replayed=outcome.replayed)
    assert isinstance(outcome.value, Entry)
    return wire.BatchResult(status=status, entry=outcome.value, replayed=outcome.replayed)


@post(
    "/v1/batch",
    status_code=200,
    summary="Many commands in one request; atomic: all or nothing",
    description=(
        "Each command may carry its own idempotency_key. An Idempotency-Key header gives every "
        "command without one the key '<header>#<index>'."
    ),
    responses=responses("forbidden", "not_found", "conflict", "insufficient_credits"),
    security=SECURITY,
)
async def run_batch(
    request: Request[Any, Any, Any],
    data: JSONBody[wire.BatchBody],
    idempotency_key: IdempotencyHeader,
) -> wire.BatchAnswer:
    services = services_of(request)
    principal = await services.auth.authenticate(request)
    data = await wire.strict_body(request, wire.BatchBody)
    if principal.is_admin:
        raise ApiError("forbidden", "the operator's key manages tenants only; use a tenant key")
    needed = {SCOPE_OF_OP[type(item).__struct_config__.tag] for item in data.commands}  # type: ignore[attr-defined]
    missing = sorted(needed - principal.scopes)
    if missing:
        raise ApiError("forbidden", f"the API key lacks the scope {', '.join(missing)}")
    if idempotency_key is not None and len(idempotency_key) > BATCH_KEY_LENGTH_MAX:
        raise ApiError(
            "validation_error",
            f"a batch's Idempotency-Key may be at most {BATCH_KEY_LENGTH_MAX} characters: "
            "each command's key is '<header>#<index>', at most 255",
        )
    commands = [
        to_command(item, principal.tenant(), idempotency_key, index)
        for index, item in enumerate(data.commands)
    ]
    if data.atomic:
        outcomes: list[Outcome | BaseException] = list(
            await services.writer.submit_atomic(commands)
        )
    else:
        outcomes = list(await services.writer.submit_each(commands))
    return wire.BatchAnswer(results=[result_of(outcome) for outcome in outcomes])

"""POST /v1/batch: up to BATCH_COMMANDS_MAX commands; each on its own, or all-or-nothing.

A batch item is the command itself with its `op` tag (the registry's batch commands), its
`account_id` and optionally its own `idempotency_key`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

import msgspec
from litestar import post
from litestar.params import JSONBody
from msgspec import Meta

from api.http.body import body_of
from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import tenant_key
from api.http.parameters import SECURITY, IdempotencyHeader
from api.http.problems import ApiError, Problem, problem_of, responses
from ledger.accounts.views import Entry, HoldView
from ledger.areas import REGISTRY
from ledger.commands import AccountCommand
from ledger.errors import LedgerError
from ledger.limits import IDEMPOTENCY_KEY_LENGTH_MAX
from ledger.outcome import Outcome

# Commands one POST /v1/batch may carry.
BATCH_COMMANDS_MAX = 1_000
# '<header>#<index>' must fit the 255 characters of a key (index < 1000: '#999').
BATCH_KEY_LENGTH_MAX = IDEMPOTENCY_KEY_LENGTH_MAX - 4

BATCH_SPECS = REGISTRY.batch_specs()
SCOPE_OF_OP = {spec.op: spec.scope for spec in BATCH_SPECS}
if TYPE_CHECKING:
    BatchCommand = AccountCommand
else:  # the registry's batch commands, tagged by op
    BatchCommand = Union[tuple(spec.command for spec in BATCH_SPECS)]  # noqa: UP007 - built from the registry


class BatchBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    commands: Annotated[list[BatchCommand], Meta(min_length=1, max_length=BATCH_COMMANDS_MAX)]
    atomic: bool = False


class BatchResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    status: int
    entry: Entry | None = None
    hold: HoldView | None = None
    error: Problem | None = None
    replayed: bool = False


class BatchAnswer(msgspec.Struct, frozen=True, kw_only=True):
    results: list[BatchResult]


def keyed(item: AccountCommand, batch_key: str | None, index: int) -> AccountCommand:
    if item.idempotency_key is None and batch_key is not None:
        return msgspec.structs.replace(item, idempotency_key=f"{batch_key}#{index}")
    return item


def result_of(outcome: Outcome | BaseException) -> BatchResult:
    if isinstance(outcome, LedgerError):
        error = problem_of(outcome)
        return BatchResult(status=error.status, error=error)
    assert isinstance(outcome, Outcome)
    status = 201 if outcome.created else 200
    if isinstance(outcome.value, HoldView):
        return BatchResult(status=status, hold=outcome.value, replayed=outcome.replayed)
    assert isinstance(outcome.value, Entry)
    return BatchResult(status=status, entry=outcome.value, replayed=outcome.replayed)


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
    guards=[tenant_key(None)],
    dto=body_of(BatchBody),
    return_dto=None,
    tags=["accounts"],
)
async def run_batch(
    principal: PrincipalDep,
    services: ServicesDep,
    data: JSONBody[BatchBody],
    idempotency_key: IdempotencyHeader,
) -> BatchAnswer:
    needed = {SCOPE_OF_OP[str(item.__struct_config__.tag)] for item in data.commands}
    missing = sorted(str(scope) for scope in needed - principal.scopes)
    if missing:
        raise ApiError("forbidden", f"the API key lacks the scope {', '.join(missing)}")
    if idempotency_key is not None and len(idempotency_key) > BATCH_KEY_LENGTH_MAX:
        raise ApiError(
            "validation_error",
            f"a batch's Idempotency-Key may be at most {BATCH_KEY_LENGTH_MAX} characters: "
            "each command's key is '<header>#<index>', at most 255",
        )
    envelopes = [
        principal.envelope(keyed(item, idempotency_key, index))
        for index, item in enumerate(data.commands)
    ]
    outcomes: list[Any]
    if data.atomic:
        outcomes = list(await services.writer.submit_atomic(envelopes))
    else:
        outcomes = list(await services.writer.submit_each(envelopes))
    return BatchAnswer(results=[result_of(outcome) for outcome in outcomes])

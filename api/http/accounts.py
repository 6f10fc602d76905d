"""Accounts and their commands (tenant key): open, read, grant, purchase, consume, refund,
holds, adjustments. Every command goes through the group-commit writer, by `run`.

Each route's `data` parameter is there for the OpenAPI document; `run` decodes the body itself,
strictly (see wire.decode_strictly)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, Parameter

from api.http import wire
from api.http.problems import responses
from api.http.services import services_of
from ledger import commands as c
from ledger.accounts.handlers import Outcome
from ledger.accounts.views import AccountView, Entry, HoldView
from ledger.limits import ACCOUNT_ID_LENGTH_MAX, IDEMPOTENCY_KEY_LENGTH_MAX

AccountIdParam = Annotated[
    str,
    Parameter(
        description="The client's account id", min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX
    ),
]
HoldIdParam = Annotated[str, Parameter(min_length=1, max_length=64)]
IdempotencyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description="Same key, same request: the stored answer again (Idempotent-Replayed: true).",
        required=False,
    ),
]

WRITE = "accounts:write"
CONSUME = "credits:consume"
READ = "accounts:read"
SECURITY = [{"bearer": []}, {"apiKey": []}]
COMMAND_ERRORS = (
    "forbidden",
    "not_found",
    "conflict",
    "idempotency_key_reused",
    "idempotency_key_in_use",
)


# Bodies a request may leave out entirely (their every field has a default).
OPTIONAL_BODIES: frozenset[type[msgspec.Struct]] = frozenset({wire.CaptureBody})


def answer(outcome: Outcome) -> Response[Any]:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return Response(outcome.value, status_code=201 if outcome.created else 200, headers=headers)


async def run(
    request: Request[Any, Any, Any],
    scope: str,
    command_type: type[c.AccountCommand],
    body_type: type[msgspec.Struct] | None,
    **ids: Any,
) -> Response[Any]:
    """The one path of every account command: scope, strict body, command, writer, answer.

    Body fields are named as the command's (as in /v1/batch), so the command is built from the
    body as it is. An empty body is allowed only where the body is optional (capture)."""
    tenant_id = await tenant_of(request, scope)
    body = await request.body()
    fields: dict[str, Any] = {}
    if body_type is not None and (body or body_type not in OPTIONAL_BODIES):
        fields = msgspec.structs.asdict(wire.decode_strictly(body, body_type))
    command = command_type(tenant_id=tenant_id, **ids, **fields)
    return answer(await services_of(request).writer.submit(command))


async def tenant_of(request: Request[Any, Any, Any], scope: str) -> str:
    principal = await services_of(request).auth.tenant(request, scope)
    return principal.tenant()


@put(
    "/v1/accounts/{account_id:str}",
    status_code=201,
    summary="Open an account (the signup bonus is granted exactly once)",
    responses={
        **responses("forbidden", "not_found", "idempotency_key_reused", "idempotency_key_in_use"),
        # API.md: 200 when the account already exists (nothing is granted again).
        200: ResponseSpec(AccountView, description="The account already exists"),
    },
    security=SECURITY,
)
async def open_account(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    data: JSONBody[wire.AccountPut],
    idempotency_key: IdempotencyHeader,
) -> Response[AccountView]:
    return await run(
        request,
        WRITE,
        c.OpenAccount,
        wire.AccountPut,
        account_id=account_id,
        idempotency_key=idempotency_key,
    )


@get(
    "/v1/accounts/{account_id:str}",
    summary="Read an account: reflects every command already answered",
    responses=responses("forbidden", "not_found"),
    security=SECURITY,
)
async def read_account(request: Request[Any, Any, Any], account_id: AccountIdParam) -> AccountView:
    tenant_id = await tenant_of(request, READ)
    outcome = await services_of(request).writer.submit(
        c.GetAccount(tenant_id=tenant_id, account_id=account_id)
    )
    assert isinstance(outcome.value, AccountView)
    return outcome.value


@get(
    "/v1/accounts/{account_id:str}/holds/{hold_id:str}",
    summary="Read a hold",
    responses=responses("forbidden", "not_found"),
    security=SECURITY,
)
async def read_hold(
    request: Request[Any, Any, Any], account_id: AccountIdParam, hold_id: HoldIdParam
) -> HoldView:
    tenant_id = await tenant_of(request, READ)
    query = c.GetHold(tenant_id=tenant_id, account_id=account_id, hold_id=hold_id)
    outcome = await services_of(request).writer.submit(query)
    assert isinstance(outcome.value, HoldView)
    return outcome.value


@post(
    "/v1/accounts/{account_id:str}/grants",
    summary="Grant credits (a new lot)",
    responses=responses(*COMMAND_ERRORS),
    security=SECURITY,
)
async def grant(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    data: JSONBody[wire.GrantBody],
    idempotency_key: IdempotencyHeader,
) -> Response[Entry]:
    return await run(
        request,
        WRITE,
        c.GrantCredits,
        wire.GrantBody,
        account_id=account_id,
        idempotency_key=idempotency_key,
    )


@post(
    "/v1/accounts/{account_id:str}/purchases",
    summary="Credit a purchase; a repeated payment_ref is never credited twice",
    responses=responses(*COMMAND_ERRORS),
    security=SECURITY,
)
async def purchase(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    data: JSONBody[wire.PurchaseBody],
    idempotency_key: IdempotencyHeader,
) -> Response[Entry]:
    return await run(
        request,
        WRITE,
        c.PurchaseCredits,
        wire.PurchaseBody,
        account_id=account_id,
        idempotency_key=idempotency_key,
    )


@post(
    "/v1/accounts/{account_id:str}/consumptions",
    summary="Consume credits (burn-down: priority, earliest expiry, oldest)",
    responses=responses(*COMMAND_ERRORS, "insufficient_credits"),
    security=SECURITY,
)
async def consume(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    data: JSONBody[wire.ConsumeBody],
    idempotency_key: IdempotencyHeader,
) -> Response[Entry]:
    return await run(
        request,
        CONSUME,
        c.ConsumeCredits,
        wire.ConsumeBody,
        account_id=account_id,
        idempotency_key=idempotency_key,
    )


@post(
    "/v1/accounts/{account_id:str}/refunds",
    summary="Refund a consumption (never more than is still refundable)",
    responses=responses(*COMMAND_ERRORS),
    security=SECURITY,
)
async def refund(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    data: JSONBody[wire.RefundBody],
    idempotency_key: IdempotencyHeader,
) -> Response[Entry]:
    return await run(
        request,
        CONSUME,
        c.RefundConsumption,
        wire.RefundBody,
        account_id=account_id,
        idempotency_key=idempotency_key,
    )


@post(
    "/v1/accounts/{account_id:str}/holds",
    summary="Reserve credits for a later capture",
    responses=responses(*COMMAND_ERRORS, "insufficient_credits"),
    security=SECURITY,
)
async def place_hold(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    data: JSONBody[wire.HoldBody],
    idempotency_key: IdempotencyHeader,
) -> Response[HoldView]:
    return await run(
        request,
        CONSUME,
        c.PlaceHold,
        wire.HoldBody,
        account_id=account_id,
        idempotency_key=idempotency_key,
    )


@post(
    "/v1/accounts/{account_id:str}/holds/{hold_id:str}/capture",
    summary="Capture at most what is held; the rest is released",
    responses=responses(*COMMAND_ERRORS),
    security=SECURITY,
)
async def capture_hold(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    hold_id: HoldIdParam,
    idempotency_key: IdempotencyHeader,
    data: JSONBody[wire.CaptureBody | None] = None,
) -> Response[Entry]:
    return await run(
        request,
        CONSUME,
        c.CaptureHold,
        wire.CaptureBody,
        account_id=account_id,
        hold_id=hold_id,
        idempotency_key=idempotency_key,
    )


@post(
    "/v1/accounts/{account_id:str}/holds/{hold_id:str}/release",
    status_code=200,
    summary="Release a hold",
    responses=responses(*COMMAND_ERRORS),
    security=SECURITY,
)
async def release_hold(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    hold_id: HoldIdParam,
    idempotency_key: IdempotencyHeader,
) -> Response[Entry]:
    return await run(
        request,
        CONSUME,
        c.ReleaseHold,
        None,
        account_id=account_id,
        hold_id=hold_id,
        idempotency_key=idempotency_key,
    )


@post(
    "/v1/accounts/{account_id:str}/adjustments",
    summary="Correct a balance (signed; may not go below -overdraft)",
    responses=responses(*COMMAND_ERRORS, "insufficient_credits"),
    security=SECURITY,
)
async def adjust(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    data: JSONBody[wire.AdjustBody],
    idempotency_key: IdempotencyHeader,
) -> Response[Entry]:
    return await run(
        request,
        WRITE,
        c.AdjustBalance,
        wire.AdjustBody,
        account_id=account_id,
        idempotency_key=idempotency_key,
    )


ROUTES = [
    open_account,
    read_account,
    read_hold,
    grant,
    purchase,
    consume,
    refund,
    place_hold,
    capture_hold,
    release_hold,
    adjust,
]

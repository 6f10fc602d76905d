"""The benchmark's ceiling (issue 6): a no-op POST with the same auth and body as a consumption.

Registered only when `bench_endpoints` is on (LEDGER_BENCH_ENDPOINTS=yes). It authenticates and
decodes exactly as POST /v1/accounts/{id}/consumptions does (the same guard, the same strict
body), then answers 201 without the writer, so `make bench` can tell the cost of the HTTP stack
from the cost of the write path.
"""

from __future__ import annotations

import msgspec
from litestar import Response, post
from litestar.params import JSONBody

from api.http.body import body_of
from api.http.command_routes import command_of
from api.http.guards import tenant_key
from api.http.parameters import SECURITY, AccountIdParam, IdempotencyHeader
from ledger.accounts.commands import ConsumeCredits
from ledger.areas import REGISTRY
from ledger.tenants.api_keys import CREDITS_CONSUME


class NoopAnswer(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    amount: int


@post(
    "/v1/bench/noop/{account_id:str}",
    summary="Benchmark ceiling: auth and strict decoding of a consumption, no write",
    security=SECURITY,
    include_in_schema=False,
    guards=[tenant_key(CREDITS_CONSUME)],
    dto=body_of(ConsumeCredits, excluded=("account_id", "idempotency_key")),
    return_dto=None,
)
async def noop_consume(
    account_id: AccountIdParam, data: JSONBody[ConsumeCredits], idempotency_key: IdempotencyHeader
) -> Response[NoopAnswer]:
    spec = REGISTRY.specs[ConsumeCredits]
    command = command_of(spec, data, {"account_id": account_id}, idempotency_key)
    assert isinstance(command, ConsumeCredits)
    return Response(NoopAnswer(account_id=account_id, amount=command.amount), status_code=201)


ROUTES = [noop_consume]

"""The benchmark's ceiling (issue 6): a no-op POST with the same auth and body as a consumption.

Registered only when `bench_endpoints` is on (LEDGER_BENCH_ENDPOINTS=yes). It authenticates and
decodes exactly as POST /v1/accounts/{id}/consumptions does, then answers 201 without the writer,
so `make bench` can tell the cost of the HTTP stack from the cost of the write path.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.params import JSONBody

from api.http import wire
from api.http.accounts import CONSUME, SECURITY, AccountIdParam, IdempotencyHeader, tenant_of


class NoopAnswer(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    amount: int


@post(
    "/v1/bench/noop/{account_id:str}",
    summary="Benchmark ceiling: auth and strict decoding of a consumption, no write",
    security=SECURITY,
    include_in_schema=False,
)
async def noop_consume(
    request: Request[Any, Any, Any],
    account_id: AccountIdParam,
    data: JSONBody[wire.ConsumeBody],
    idempotency_key: IdempotencyHeader,
) -> Response[NoopAnswer]:
    await tenant_of(request, CONSUME)
    body = await wire.strict_body(request, wire.ConsumeBody)
    return Response(NoopAnswer(account_id=account_id, amount=body.amount), status_code=201)


ROUTES = [noop_consume]

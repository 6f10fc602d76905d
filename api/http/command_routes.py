"""The routes of the registry's commands (ledger/registry.py): one per command with a Route.

Every such route has one shape: a guard for the command's scope, the path's parameters filling
the command's fields of the same names, the body (when it has one) decoded once, strictly,
into the command itself, the Idempotency-Key header as its key, then the writer, then the
answer. A new command of that shape needs nothing here: its area's Route is enough.

This module does not use `from __future__ import annotations`: each handler's signature is
built from the command's types at run time, and Litestar reads it as it is.
"""

import inspect
import re
from typing import Any, Optional, cast

import msgspec
from litestar import Response
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.types import AnyCallable

from api.http.auth import Principal
from api.http.body import body_of
from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import tenant_key
from api.http.parameters import SECURITY, AccountIdParam, HoldIdParam, IdempotencyHeader
from api.http.problems import ApiError, responses
from api.http.services import Services
from ledger.commands import Command
from ledger.outcome import Outcome
from ledger.registry import CommandSpec, Registry

PATH_PARAMETER = re.compile(r"{(\w+):\w+}")
# How each path parameter a command route may have is declared (bounds, OpenAPI).
PATH_PARAMETER_TYPES: dict[str, Any] = {"account_id": AccountIdParam, "hold_id": HoldIdParam}


def answer(outcome: Outcome) -> Response[Any]:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return Response(outcome.value, status_code=201 if outcome.created else 200, headers=headers)


def command_of(
    spec: CommandSpec, data: Command | None, path: dict[str, str], key: str | None
) -> Command:
    """The command from the decoded body (None: no body, every field at its default), the path
    and the header. The body may not name what the path or the header gives."""
    if data is None:
        command: Command = spec.command(**path)
        return msgspec.structs.replace(command, idempotency_key=key)
    for name in path:
        if getattr(data, name):
            raise ApiError(
                "validation_error", f"{name} is given by the path; leave it out of the body"
            )
    refuse_key_in_body(data)
    return msgspec.structs.replace(data, **path, idempotency_key=key)


def refuse_key_in_body(data: Command) -> None:
    """A command's `idempotency_key` field is a batch item's; a route takes the header."""
    if data.idempotency_key is not None:
        raise ApiError("validation_error", "send the idempotency key as the Idempotency-Key header")


def command_route(spec: CommandSpec, tag: str) -> HTTPRouteHandler:
    route = spec.route
    assert route is not None, spec.op
    path_names = PATH_PARAMETER.findall(route.path)

    async def handle(**kwargs: Any) -> Response[Any]:
        principal: Principal = kwargs["principal"]
        services: Services = kwargs["services"]
        path = {name: kwargs[name] for name in path_names}
        command = command_of(spec, kwargs.get("data"), path, kwargs["idempotency_key"])
        outcome = await services.writer.submit(principal.envelope(command))
        return answer(outcome)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("principal", keyword, annotation=PrincipalDep),
        inspect.Parameter("services", keyword, annotation=ServicesDep),
        inspect.Parameter("idempotency_key", keyword, annotation=IdempotencyHeader),
        *(inspect.Parameter(n, keyword, annotation=PATH_PARAMETER_TYPES[n]) for n in path_names),
    ]
    dto: Any = None
    excluded = (*path_names, "idempotency_key")
    body: Any = spec.command  # a type known at run time only
    if route.body == "required":
        parameters.append(inspect.Parameter("data", keyword, annotation=cast(Any, JSONBody)[body]))
        dto = body_of(spec.command, excluded=excluded)
    elif route.body == "optional":
        optional = cast(Any, JSONBody)[Optional[body]]  # noqa: UP045 - built at run time
        parameters.append(inspect.Parameter("data", keyword, annotation=optional, default=None))
        dto = body_of(spec.command, excluded=excluded, optional=True)
    returns = cast(Any, Response)[spec.answer]
    handle.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    handle.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
    handle.__name__ = handle.__qualname__ = spec.op
    specs = responses(*route.errors)
    for status, description in route.also.items():
        specs[status] = ResponseSpec(spec.answer, description=description)
    fn: AnyCallable = handle
    return HTTPRouteHandler(
        route.path,
        http_method=route.method,
        status_code=route.status,
        summary=route.summary,
        description=route.description or spec.command.__doc__,
        responses=specs,
        security=SECURITY,
        guards=[tenant_key(spec.scope)],
        dto=dto,
        return_dto=None,
        name=spec.op,
        tags=[tag],
    )(fn)


def command_routes(registry: Registry) -> list[HTTPRouteHandler]:
    """The routes of the registry's commands, each tagged with its area's name."""
    return [command_route(spec, area.name) for area, spec in registry.routed()]

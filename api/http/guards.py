"""Who may call a route: Litestar guards that authenticate the caller's key, check its scope,
and leave the Principal for the route (api/http/dependencies.py gives it to the handler).

They run before the body is read: an unauthenticated or unauthorised caller is answered 401 or
403 and its body is never decoded.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from api.http.auth import Principal
from api.http.services import Services

PRINCIPAL = "principal"


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The caller of a connection, authenticated once and kept in its scope."""
    services: Services = connection.app.state["services"]
    principal = await services.auth.authenticate(connection)
    connection.scope.setdefault("state", {})[PRINCIPAL] = principal
    return principal


def tenant_key(scope: str | None) -> Guard:
    """A tenant's key with `scope` (None: any tenant key; the route checks scopes itself)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        (await authenticated(connection)).require_tenant(scope)

    return guard


async def operator_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The platform operator's key."""
    (await authenticated(connection)).require_operator()


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The caller a guard authenticated."""
    principal: Principal = connection.scope["state"][PRINCIPAL]
    return principal

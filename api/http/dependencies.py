"""What routes are given (Litestar dependency injection): the service's objects and the caller."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from api.http.auth import Principal
from api.http.guards import principal_of
from api.http.services import Services


def provide_services(state: State) -> Services:
    found: Services = state["services"]
    return found


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return principal_of(request)


DEPENDENCIES = {
    "services": Provide(provide_services, sync_to_thread=False),
    "principal": Provide(provide_principal, sync_to_thread=False),
}

# What a route's parameters are typed with to be given them.
PrincipalDep = NamedDependency[Principal]
ServicesDep = NamedDependency[Services]

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


def provide_principal(request: Request[Any, Any, Any], services: Services) -> Principal:
    """The caller the route's guard authenticated. It takes `services`, which it does not
    use, so that Litestar resolves the two one after the other: two dependencies at one level
    cost an anyio task group per request, about 50 µs of a consume's 330 in `make bench`
    (docs/BENCHMARKS.md, "The re-layout of issue 13")."""
    del services
    return principal_of(request)


DEPENDENCIES = {
    "services": Provide(provide_services, sync_to_thread=False),
    "principal": Provide(provide_principal, sync_to_thread=False),
}

# What a route's parameters are typed with to be given them.
PrincipalDep = NamedDependency[Principal]
ServicesDep = NamedDependency[Services]

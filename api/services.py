"""What the routes need, built once by create_app's lifespan and kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import State

from api.auth import Authenticator
from api.key_usage import KeyUsage
from api.metrics import Metrics
from api.settings import Settings
from ledger.application import Ledger
from ledger.writer import Writer


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    writer: Writer
    auth: Authenticator
    key_usage: KeyUsage
    metrics: Metrics
    nats: Any = None  # a nats-py client when LEDGER_NATS_URL (or the embedded NATS) is set


def services(state: State) -> Services:
    found: Services = state["services"]
    return found


def services_of(request: Request[Any, Any, Any]) -> Services:
    return services(request.app.state)

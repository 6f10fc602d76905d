"""The OpenAPI document tells the truth. Schemathesis reads the app's own GET /schema/openapi.json
and sends every operation valid (positive) and invalid (negative) requests, in-process over ASGI
inside the real lifespan on PostgreSQL. Every answer must be documented: no 5xx, a documented
status code and content type, and a body that matches the documented schema.

Operations under /v1/tenants run with the operator's key (they answer 403 to any other), all
others with a real tenant key. Valid requests go half of the time to ids that exist (a funded
account, an active hold, the tenant, a spare key), so the 200/201 bodies are checked too.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.http.app import create_app
from api.settings import Settings
from tests.e2e.conftest import ADMIN

# No 5xx, and every answer documented: its status code, its content type and its body.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Generated requests per operation in the fuzzing phase (positive and negative together); the
# examples and coverage phases add their own deterministic cases (boundaries, missing fields,
# wrong types). About 30 s for the whole file on a laptop.
MAX_EXAMPLES = 100
# A live event stream never ends: it is read this long, then judged on what it sent (0.2 s was
# once too short for the headers of a cold first call on a busy machine).
STREAM_READ_S = 0.5
FUNDS = 10 * 10**15  # credits on the known account: any one generated amount (<= 10^15) fits


@dataclass
class Contract:
    """The app under test, its tenant's key and ids that exist, by path parameter name."""

    schema: Any
    tenant_headers: dict[str, str]
    known: dict[str, str] = field(default_factory=dict)

    def headers_for(self, path: str) -> dict[str, str]:
        """The operator's key for /v1/tenants (it manages tenants only), a tenant key elsewhere."""
        return ADMIN if path.startswith("/v1/tenants") else self.tenant_headers


def is_event_stream(operation: Any) -> bool:
    responses = operation.definition.raw.get("responses", {})
    return any("text/event-stream" in answer.get("content", {}) for answer in responses.values())


def post(client: Any, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


def set_up_tenant(client: Any) -> tuple[dict[str, str], dict[str, str]]:
    """A tenant with a funded account, an active hold and a spare key: (headers, known ids)."""
    tenant_id = "t-" + secrets.token_hex(4)
    tenant_settings = {"purchase_rates": {"USD": "100"}}
    tenant = post(
        client,
        "/v1/tenants",
        {"tenant_id": tenant_id, "name": tenant_id, "settings": tenant_settings},
        ADMIN,
    )
    headers = {"Authorization": f"Bearer {tenant['api_key']['key']}"}
    # The only key id the fuzzer may revoke: never the key the test runs with.
    spare = post(client, "/v1/api-keys", {"scopes": ["accounts:read"]}, headers)
    account_id = "acct-" + secrets.token_hex(4)
    response = client.put(f"/v1/accounts/{account_id}", json={}, headers=headers)
    assert response.status_code == 201, response.text
    for _ in range(FUNDS // 10**15):
        post(
            client,
            f"/v1/accounts/{account_id}/grants",
            {"amount": 10**15, "reason": "fund"},
            headers,
        )
    hold = post(
        client, f"/v1/accounts/{account_id}/holds", {"amount": 5, "operation": "op"}, headers
    )
    known = {
        "tenant_id": tenant_id,
        "account_id": account_id,
        "hold_id": hold["hold_id"],
        "key_id": spare["key_id"],
    }
    return headers, known


@pytest.fixture
def contract(app_settings: Settings, request: pytest.FixtureRequest) -> Iterator[Contract]:
    # Schemathesis' from_fixture reads and sets `node._nodeid`, which pytest 9.2 no longer has.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    app = create_app(app_settings)
    try:
        # Loading the document starts the app's lifespan; Schemathesis keeps it running, in one
        # event loop, for every later request to this app until shutdown_lifespans().
        schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
        schema.config.generation.update(
            modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            # Requests carry real keys (see headers_for), not generated credentials (always 401).
            with_security_parameters=False,
        )
        with asgi.get_client(app) as client:
            headers, known = set_up_tenant(client)
        contract = Contract(schema=schema, tenant_headers=headers, known=known)

        @schema.hook
        def flatmap_case(context: Any, case: schemathesis.Case) -> st.SearchStrategy[Any]:
            """A valid request goes to ids that exist half of the time, else to generated ones."""
            names = [name for name in case.path_parameters if name in contract.known]
            meta = case.meta
            if not names or meta is None or meta.generation.mode != GenerationMode.POSITIVE:
                return st.just(case)
            existing = case.derive(keep_auth=True)
            existing.path_parameters.update({name: contract.known[name] for name in names})
            return st.sampled_from([case, existing])

        yield contract
    finally:
        asgi.shutdown_lifespans()


@pytest.fixture
def api_schema(contract: Contract) -> Any:
    return contract.schema


schema = schemathesis.pytest.from_fixture("api_schema")


# Every operation runs inside this one test: its time grows with the API (about 5 min for the
# 53 operations of issue 16 on a busy 2-core machine), so it gets more than the default 300 s.
@pytest.mark.timeout(900)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented(case: schemathesis.Case, contract: Contract) -> None:
    extra: dict[str, Any] = {"timeout": STREAM_READ_S} if is_event_stream(case.operation) else {}
    case.call_and_validate(headers=contract.headers_for(case.path), checks=CHECKS, **extra)

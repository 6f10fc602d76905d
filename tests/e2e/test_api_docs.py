"""docs/api.md tells the truth about the app: its routes are the app's, and the app's are its.

The reference is read by a strict parser:
- a route is a row of a table whose header is `| route | scope | answers | errors |`; its first
  cell is one backticked `METHOD /path` (`WS` for a WebSocket), its answers cell names at least
  one backticked status (`201`), its errors cell is `—` or backticked `NNN code` pairs;
- every backticked `NNN code` anywhere in the page (`402 insufficient_credits`) is an error
  code with its status;
- the error table is the one headed `| status | code | when |`;
- a limit is a row of the table headed `| limit | value | constant | answer |`: the first
  backticked number of its value cell (`1,000`, `10^15`, `0.5`) is the value of the constant it
  names (`ledger.limits.LOTS_PER_ACCOUNT_MAX`), or `—` when no constant holds it.
A row that does not parse fails the test that reads it, naming its line.

The app answers its OpenAPI document at /schema/openapi.json; Litestar leaves out of it the
/schema routes themselves and WebSocket routes, so documented ones of those are checked against
the app directly (a /schema route must answer 200, a WS route must be one of the app's).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.routes import WebSocketRoute
from litestar.testing import AsyncTestClient

from api.http.problems import STATUS_OF_CODE
from ledger.tenants.api_keys import SCOPES

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "api.md"

ROUTE_HEADER = ["route", "scope", "answers", "errors"]
ERROR_HEADER = ["status", "code", "when"]
LIMIT_HEADER = ["limit", "value", "constant", "answer"]
# Scope cells that name no scope of ledger.tenants.api_keys.SCOPES.
SCOPE_WORDS = {"operator", "none", "the scopes of its commands"}
NOTHING = "—"

ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE|WS) (/[^`\s]*)`")
STATUS = re.compile(r"`(\d{3})`")
ERROR = re.compile(r"`(\d{3}) ([a-z][a-z_]*)`")
BACKTICKED = re.compile(r"`([^`]+)`")
NUMBER = re.compile(r"(\d[\d,]*(?:\.\d+)?)(?:\^(\d+))?")
# Litestar writes `{account_id:str}` in its routes and `{account_id}` in the OpenAPI document.
PATH_PARAMETER_TYPE = re.compile(r"\{(\w+):\w+\}")
OPENAPI_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
WEBSOCKET = "WS"
SCHEMA_PREFIX = "/schema"


@dataclass(frozen=True)
class Row:
    line: int
    cells: list[str]


@dataclass(frozen=True)
class DocumentedRoute:
    method: str
    path: str
    line: int
    statuses: frozenset[int]  # success and error statuses the row names
    errors: tuple[tuple[int, str], ...]

    @property
    def name(self) -> str:
        return f"{self.method} {self.path} (docs/api.md line {self.line})"


def reference_text() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def cells_of(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def tables(text: str) -> Iterator[tuple[list[str], list[Row]]]:
    """(header, rows) of each Markdown table; a row with another cell count fails."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith("|"):
            index += 1
            continue
        header = cells_of(lines[index])
        rows: list[Row] = []
        index += 2  # the header and its |---| line
        while index < len(lines) and lines[index].startswith("|"):
            cells = cells_of(lines[index])
            if len(cells) != len(header):
                pytest.fail(f"docs/api.md line {index + 1}: {len(cells)} cells, not {len(header)}")
            rows.append(Row(index + 1, cells))
            index += 1
        yield header, rows


def rows_of(header: list[str], text: str) -> list[Row]:
    """The rows of every table with this header; at least one such table must exist."""
    found = [rows for table_header, rows in tables(text) if table_header == header]
    assert found, f"docs/api.md has no table headed {' | '.join(header)}"
    return [row for rows in found for row in rows]


def route_of(row: Row) -> DocumentedRoute:
    route_cell, scope_cell, answers_cell, errors_cell = row.cells
    where = f"docs/api.md line {row.line}"
    route = ROUTE.fullmatch(route_cell)
    if route is None:
        pytest.fail(f"{where}: the route cell {route_cell!r} is not a backticked `METHOD /path`")
    scopes = BACKTICKED.findall(scope_cell)
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or (not scopes and scope_cell not in SCOPE_WORDS):
        pytest.fail(f"{where}: the scope cell {scope_cell!r} names no scope of {SCOPES}")
    answers = [int(status) for status in STATUS.findall(answers_cell)]
    if not answers:
        pytest.fail(f"{where}: the answers cell names no backticked status")
    errors: list[tuple[int, str]] = []
    if errors_cell != NOTHING:
        for item in errors_cell.split(","):
            error = ERROR.fullmatch(item.strip())
            if error is None:
                pytest.fail(f"{where}: {item.strip()!r} is not a backticked `NNN code`")
            errors.append((int(error[1]), error[2]))
    return DocumentedRoute(
        method=route[1],
        path=route[2],
        line=row.line,
        statuses=frozenset(answers + [status for status, _ in errors]),
        errors=tuple(errors),
    )


def documented_routes(text: str) -> list[DocumentedRoute]:
    return [route_of(row) for row in rows_of(ROUTE_HEADER, text)]


def http_routes(routes: list[DocumentedRoute]) -> list[DocumentedRoute]:
    """The documented routes the OpenAPI document must hold (not WebSocket, not /schema)."""
    return [
        route
        for route in routes
        if route.method != WEBSOCKET and not route.path.startswith(SCHEMA_PREFIX)
    ]


def operations(openapi: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The OpenAPI document's operations by (METHOD, path), /schema excluded."""
    return {
        (method.upper(), path): operation
        for path, item in openapi["paths"].items()
        if not path.startswith(SCHEMA_PREFIX)
        for method, operation in item.items()
        if method in OPENAPI_METHODS
    }


def number_of(cell: str, where: str) -> float:
    tokens = BACKTICKED.findall(cell)
    match = NUMBER.fullmatch(tokens[0]) if tokens else None
    if match is None:
        pytest.fail(f"{where}: the value cell {cell!r} starts with no backticked number")
    base = float(match[1].replace(",", ""))
    return base ** int(match[2]) if match[2] else base


def constant_value(dotted: str, where: str) -> float:
    """The named constant as a number: a timedelta in days, a collection by its length."""
    module_name, _, name = dotted.rpartition(".")
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        pytest.fail(f"{where}: {dotted} is not a constant of the code")
    if isinstance(value, timedelta):
        return float(value.days)
    if isinstance(value, tuple | list | set | frozenset | dict):
        return float(len(value))
    return float(value)


@pytest.fixture
async def openapi(client: AsyncTestClient[Any]) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


# ------------------------------------------------------------------ routes


async def test_every_documented_route_is_an_operation_of_the_openapi_document(
    openapi: dict[str, Any],
) -> None:
    known = operations(openapi)
    missing = [
        route.name
        for route in http_routes(documented_routes(reference_text()))
        if (route.method, route.path) not in known
    ]
    assert not missing, f"documented but not in the OpenAPI document: {missing}"


async def test_every_operation_of_the_openapi_document_is_documented(
    openapi: dict[str, Any],
) -> None:
    documented = {(route.method, route.path) for route in documented_routes(reference_text())}
    undocumented = sorted(
        f"{method} {path}"
        for method, path in operations(openapi)
        if (method, path) not in documented
    )
    assert not undocumented, f"in the OpenAPI document but not in docs/api.md: {undocumented}"


async def test_every_status_a_route_row_names_is_one_its_openapi_operation_answers(
    openapi: dict[str, Any],
) -> None:
    known = operations(openapi)
    wrong = []
    for route in http_routes(documented_routes(reference_text())):
        operation = known.get((route.method, route.path))
        if operation is None:
            continue  # test_every_documented_route_is_an_operation_of_the_openapi_document
        listed = {int(status) for status in operation["responses"]}
        wrong += [f"{route.name}: {status}" for status in sorted(route.statuses - listed)]
    assert not wrong, f"statuses the OpenAPI document does not list for the route: {wrong}"


async def test_the_websocket_routes_documented_are_exactly_the_apps(
    client: AsyncTestClient[Any], openapi: dict[str, Any]
) -> None:
    """Litestar leaves WebSocket routes out of the OpenAPI document: the app's own routes say."""
    documented = {
        route.path for route in documented_routes(reference_text()) if route.method == WEBSOCKET
    }
    served = {
        PATH_PARAMETER_TYPE.sub(r"{\1}", route.path)
        for route in client.app.routes
        if isinstance(route, WebSocketRoute)
    }
    assert "/v1/ws" in served
    assert documented == served
    assert not served & set(openapi["paths"]), "a WebSocket route is in the OpenAPI document now"


async def test_every_documented_schema_route_is_served(client: AsyncTestClient[Any]) -> None:
    """The /schema routes are not in the OpenAPI document they serve: each is fetched."""
    schema_routes = [
        route
        for route in documented_routes(reference_text())
        if route.path.startswith(SCHEMA_PREFIX)
    ]
    assert schema_routes, "docs/api.md documents no /schema route"
    for route in schema_routes:
        assert route.method == "GET", route.name
        response = await client.get(route.path)
        assert response.status_code == 200, route.name


def test_each_route_is_documented_once() -> None:
    routes = documented_routes(reference_text())
    seen: dict[tuple[str, str], int] = {}
    twice = []
    for route in routes:
        first = seen.setdefault((route.method, route.path), route.line)
        if first != route.line:
            twice.append(f"{route.name}, first at line {first}")
    assert not twice, f"routes documented more than once: {twice}"


# ------------------------------------------------------------------ errors


def test_every_error_code_named_is_one_the_app_answers_with_that_status() -> None:
    named = [(int(status), code) for status, code in ERROR.findall(reference_text())]
    assert named, "docs/api.md names no backticked `NNN code`"
    wrong = sorted(
        {f"{status} {code}" for status, code in named if STATUS_OF_CODE.get(code) != status}
    )
    assert not wrong, f"not codes of api.http.problems.STATUS_OF_CODE with that status: {wrong}"


def test_the_error_table_lists_every_code_the_app_answers_with_its_status() -> None:
    documented: dict[str, int] = {}
    for row in rows_of(ERROR_HEADER, reference_text()):
        status, code = STATUS.fullmatch(row.cells[0]), re.fullmatch(r"`([a-z_]+)`", row.cells[1])
        if status is None or code is None:
            pytest.fail(f"docs/api.md line {row.line}: not `NNN` | `code` | text")
        assert code[1] not in documented, f"docs/api.md line {row.line}: {code[1]} twice"
        documented[code[1]] = int(status[1])
    assert documented == STATUS_OF_CODE


# ------------------------------------------------------------------ limits


def test_every_limit_that_names_a_constant_has_that_constants_value() -> None:
    checked = 0
    for row in rows_of(LIMIT_HEADER, reference_text()):
        where = f"docs/api.md line {row.line}"
        _, value_cell, constant_cell, _ = row.cells
        documented = number_of(value_cell, where)
        if constant_cell == NOTHING:
            continue
        constant = BACKTICKED.fullmatch(constant_cell)
        if constant is None:
            pytest.fail(f"{where}: the constant cell {constant_cell!r} is not `module.NAME` or —")
        actual = constant_value(constant[1], where)
        assert documented == actual, f"{where}: documents {documented}, {constant[1]} is {actual}"
        checked += 1
    assert checked, "no limit of docs/api.md names a constant"

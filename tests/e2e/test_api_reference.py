"""/schema works with no internet, groups operations by tag, describes every operation and
field, and shows examples that are real: each decodes, strictly, into the struct it stands for
(issue 17)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from api.http.api_docs import ASSETS_PATH, TAGS
from api.http.api_examples import EXAMPLES

Client = AsyncTestClient[Any]
SOURCES = re.compile(r"""(?:src|href)=['"]([^'"]+)['"]""")


@pytest.fixture
async def document(client: Client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


def as_sent(value: Any) -> Any:
    """What the API sends for `value`, decoded (through JSON: `msgspec.to_builtins` has no form
    for a `msgspec.Raw`, such as the payment inbox's payload)."""
    return msgspec.json.decode(msgspec.json.encode(value))


def ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_the_docs_page_loads_every_asset_from_the_app_itself(
    client: Client, path: str
) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    sources = SOURCES.findall(page.text)
    assert len(sources) >= 3, sources  # the script, its preset, the stylesheet
    for source in sources:
        assert source.startswith(ASSETS_PATH + "/"), f"{source} is not served by the app"
        asset = await client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 100, source


async def test_every_operation_has_a_known_tag_a_summary_and_a_description(
    document: dict[str, Any],
) -> None:
    names = {tag.name for tag in TAGS}
    assert [tag["name"] for tag in document["tags"]] == [tag.name for tag in TAGS]
    used = set()
    for method, path, operation in operations(document):
        where = f"{method} {path}"
        assert operation.get("tags") and set(operation["tags"]) <= names, where
        used.update(operation["tags"])
        assert operation.get("summary"), where
        assert operation.get("description"), where
    assert used == names  # no tag is left empty


async def test_every_field_of_every_schema_is_described(document: dict[str, Any]) -> None:
    undescribed = [
        f"{name}.{field}"
        for name, component in document["components"]["schemas"].items()
        for field, schema in (component.get("properties") or {}).items()
        if not schema.get("description")
    ]
    assert undescribed == []


async def test_every_request_body_and_answer_has_an_example(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    missing = []
    for method, path, operation in operations(document):
        bodies = [operation.get("requestBody", {}).get("content", {}).get("application/json")]
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                bodies.append(response.get("content", {}).get("application/json"))
        for body in bodies:
            name = ref_name((body or {}).get("schema", {}))
            if name is not None and not schemas[name].get("examples"):
                missing.append(f"{method} {path}: {name}")
    assert missing == []


async def test_each_example_decodes_strictly_into_its_struct(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name, instance in EXAMPLES.items():
        assert name in schemas, f"{name} is not a schema of the document"
        (example,) = schemas[name]["examples"]
        decoded = msgspec.json.decode(
            msgspec.json.encode(example), type=type(instance), strict=True
        )
        expected = as_sent(instance)
        again = as_sent(decoded)
        if isinstance(expected, dict):
            # a body's example leaves out what the path or a header gives
            assert {k: v for k, v in expected.items() if k in example} == example
            assert {k: v for k, v in again.items() if k in example} == example
        else:
            assert again == expected


async def test_an_example_breaking_its_struct_would_be_refused() -> None:
    grant = msgspec.to_builtins(EXAMPLES["GrantCreditsBody"])
    grant["amount"] = "500"  # a string is not an amount
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(grant), type=type(EXAMPLES["GrantCreditsBody"]))

"""The API's browsable documentation at /schema, working with no internet (issue 17): Swagger UI
from the `swagger-ui-py` package in the lock file, served by the app itself under
/schema/assets, operations grouped by tag with each tag described."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from litestar import Litestar, Router
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.static_files import create_static_files_router

from api.http.api_descriptions import BY_COMPONENT, FIELDS, OPERATIONS
from api.http.api_examples import EXAMPLES, example_of

ASSETS_PATH = "/schema/assets"


def swagger_ui_directory() -> Path:
    """Swagger UI's built files, as the package ships them (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None and spec.submodule_search_locations, "swagger-ui-py is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "static"


# The order Swagger UI shows them in; every operation's tag is one of these
# (tests/e2e/test_api_reference.py).
TAGS = [
    Tag(
        name="tenants",
        description="The platform operator's routes: tenants, their keys, recharges.",
    ),
    Tag(name="api-keys", description="A tenant's own API keys (scope keys:manage)."),
    Tag(name="accounts", description="Open accounts, move credits, read them as committed."),
    Tag(name="pricing", description="The price book (versions of conversion rules) and quotes."),
    Tag(
        name="payments",
        description="Stripe's webhooks, verified and kept in an inbox; their signing secrets.",
    ),
    Tag(
        name="topups",
        description="Auto top-up: ask for a purchase when an account's available falls too low.",
    ),
    Tag(name="reports", description="Usage, history and the audit replay, from the read models."),
    Tag(
        name="streams",
        description="Live entries over SSE and WebSocket, and browser tokens for them.",
    ),
    Tag(
        name="webhooks",
        description="Outbound webhooks: a tenant's endpoints, their deliveries and redeliveries.",
    ),
    Tag(name="operations", description="Health, readiness and metrics."),
]


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Credits ledger",
        version="1.0.0",
        description=(
            "Prepaid credits: grants, purchases, consumption, refunds, holds, expiry. "
            "docs/api.md is the full reference; every route here is described there."
        ),
        path="/schema",
        tags=TAGS,
        use_handler_docstrings=True,
        render_plugins=[
            SwaggerRenderPlugin(
                path=["/", "/swagger"],
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
            )
        ],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", description="An API key"),
                "apiKey": SecurityScheme(
                    type="apiKey",
                    name="X-API-Key",
                    security_scheme_in="header",
                    description="An API key, for clients that cannot send Authorization",
                ),
            }
        ),
    )


def assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH, directories=[swagger_ui_directory()], name="api_docs_assets"
    )


def describe(app: Litestar) -> None:
    """On start-up: the OpenAPI document, once built, gets what the handlers' docstrings and
    the structs' `Meta` leave out: a description for every field and operation
    (api/http/api_descriptions.py; a `Component.field` there also replaces what a shared
    type's `Meta` says), an example for every body and answer (api/http/api_examples.py),
    and a tag for the operational routes."""
    plugin = app.plugins.get(OpenAPIPlugin)
    document = plugin.provide_openapi_schema()
    for name, component in document.get("components", {}).get("schemas", {}).items():
        properties = component.get("properties") or {}
        for field_name, field in properties.items():
            # The component's own words first (they say what a shared type's `Meta` cannot:
            # a capture's amount, a reversal's), then the field's `Meta`, then the name's.
            described = BY_COMPONENT.get(f"{name}.{field_name}")
            if described is None and "description" not in field:
                described = FIELDS.get(field_name)
            if described is not None:
                field["description"] = described
        if name in EXAMPLES:
            component["examples"] = [example_of(name, properties)]
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if not operation.get("description"):
                found = OPERATIONS.get(f"{method.upper()} {path}")
                if found is not None:
                    operation["description"] = found
            if not operation.get("tags"):
                operation["tags"] = ["operations"]

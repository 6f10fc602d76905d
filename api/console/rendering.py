"""Pages as HTML: the Jinja2 templates of this package, autoescaped, with the headers every
console page carries (a strict Content-Security-Policy: scripts, styles and images from the
app itself only, so an injected tag could run nothing)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from litestar import Response

STATIC_PATH = "/console/static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def credits(value: int | None) -> str:
    """12345 → "12,345"; signed where it is a change."""
    return "—" if value is None else f"{value:,}"


def signed(value: int) -> str:
    return f"+{value:,}" if value > 0 else f"{value:,}"


def when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def short(value: str | None, length: int = 8) -> str:
    if not value:
        return "—"
    return value if len(value) <= length else value[:length] + "…"


environment = Environment(
    loader=PackageLoader("api.console", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(credits=credits, signed=signed, when=when, short=short)
environment.globals.update(static=STATIC_PATH)


def page(
    template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> Response[str]:
    context.setdefault("me", None)
    context.setdefault("notice", None)
    context.setdefault("error", None)
    context.setdefault("section", "")
    html = environment.get_template(template).render(**context)
    return Response(
        html,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )

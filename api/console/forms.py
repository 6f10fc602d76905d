"""What the console's pages share: who may see a page, form fields turned into commands (with
the wire's own checks), redirects with a notice, and the audit record of each action."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

import msgspec
import structlog
from litestar.params import QueryParameter
from litestar.response import Redirect

from api.console.sessions import Me
from api.console.store import Action, store_of
from api.http.problems import ApiError
from api.http.services import Services
from ledger.errors import NotFoundError

log = structlog.get_logger("api.console")

T = TypeVar("T")
ID_PREFIX = re.compile(r"^[a-z0-9-]{0,63}$")
# Form fields read at most this long (the API's own bounds are checked by the command).
FIELD_LENGTH_MAX = 4_096

# The query parameters of the console's pages (a bad one is a 400 page).
QueryText = Annotated[str | None, QueryParameter(required=False, max_length=1_024)]
QueryPosition = Annotated[int | None, QueryParameter(required=False, ge=0, le=2**62)]
QueryFlag = Annotated[bool, QueryParameter(required=False)]

# What a page says after an action (the query carries the name, never the text).
NOTICES = {
    "created": "Tenant created.",
    "settings": "Settings saved.",
    "disabled": "Tenant disabled: its keys answer 401 now.",
    "enabled": "Tenant enabled: its keys work again.",
    "revoked": "Key revoked: it answers 401 from now on.",
    "recharged": "Recharge recorded as the operator's.",
    "opened": "Account opened.",
    "granted": "Credits granted.",
    "adjusted": "Balance adjusted.",
    "refunded": "Consumption refunded.",
    "signed_out": "Signed out.",
    "ended": "Your session ended (signed out, or the key was revoked or expired, or the "
    "tenant disabled). Sign in again.",
}


def notice_of(name: str | None) -> str | None:
    return NOTICES.get(name or "")


def redirect(path: str, notice: str | None = None) -> Redirect:
    assert notice is None or notice in NOTICES, notice
    target = path + (f"?{urlencode({'notice': notice})}" if notice else "")
    return Redirect(target, status_code=303)


def path_of(*parts: str) -> str:
    """A console path with each id percent-encoded (account ids may hold `/`, `?`, `#`)."""
    return "/console/" + "/".join(quote(part, safe="") for part in parts)


def require_operator(me: Me) -> None:
    if not me.operator:
        raise ApiError("forbidden", "this page is the platform operator's")


def operator_or_not_found(me: Me) -> None:
    """A tenant's session asking for a tenant's page: as if there were none (never 403)."""
    if not me.operator:
        raise NotFoundError("tenant not found")


def require_scope(me: Me, scope: str) -> None:
    if me.operator:
        raise ApiError("forbidden", "the operator's key manages tenants; sign in with a tenant key")
    if scope not in me.principal.scopes:
        raise ApiError("forbidden", f"your API key lacks the scope {scope}")


def id_prefix(value: str | None, name: str) -> str:
    if value is None or value == "":
        return ""
    if not ID_PREFIX.fullmatch(value):
        raise ApiError("validation_error", f"{name} takes lower-case letters, digits and '-'")
    return value


def text_field(fields: dict[str, str], name: str) -> str:
    return fields.get(name, "").strip()[:FIELD_LENGTH_MAX]


def int_field(fields: dict[str, str], name: str, *, required: bool = True) -> int | None:
    raw = text_field(fields, name).replace(",", "").replace("_", "")
    if not raw:
        if required:
            raise ApiError("validation_error", f"{name} is required")
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError("validation_error", f"{name} must be a whole number") from None


def command(cls: type[T], **fields: Any) -> T:
    """The command built as the wire decodes it: every bound of its fields checked."""
    try:
        return msgspec.convert(fields, cls)
    except msgspec.ValidationError as error:
        raise ApiError("validation_error", str(error)) from None


def new_idempotency_key() -> str:
    """Given to a confirmation form: confirming twice applies the command once."""
    return "console-" + secrets.token_urlsafe(16)


async def record(
    services: Services,
    me: Me,
    tenant_id: str,
    action: str,
    *,
    account_id: str | None = None,
    position: int | None = None,
    detail: str = "",
) -> None:
    """Writes who did what through the console (after the command committed)."""
    store = await store_of(services).ready()
    await store.record(
        Action(
            at=datetime.now(tz=UTC),
            tenant_id=tenant_id,
            actor=me.actor,
            key_id=me.principal.key_id,
            action=action,
            account_id=account_id,
            position=position,
            detail=detail[:FIELD_LENGTH_MAX],
        )
    )
    log.info("console_action", tenant_id=tenant_id, action=action, actor=me.actor)

"""Signing in to the console with an API key, the session cookie, and CSRF tokens.

- Sign-in takes a key (the operator's or a tenant's) and checks it with the app's own
  Authenticator. The browser then holds only a random session token in an `HttpOnly`,
  `SameSite=Strict` cookie (`Secure` over HTTPS) scoped to /console, for at most
  SESSION_TTL_S; the server keeps the token's SHA-256 and the key's (api/console/store.py).
- Every request checks the key again through the Authenticator (its cache lives
  AUTH_CACHE_TTL_S): a revoked or expired key, or a disabled tenant, ends its sessions within
  that time. Signing out deletes the session's row: the cookie is worthless from then on.
- Every form carries a CSRF token, an HMAC of the session token under the signing secret,
  checked on every POST; the sign-in form, before there is a session, a random value also set
  as a cookie (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog
from litestar import Request

from api.console.store import ConsoleStore, Session, store_of
from api.http.auth import Principal
from api.http.problems import ApiError
from api.http.services import Services
from ledger.commands import Command, Envelope
from ledger.tenants.api_keys import hash_api_key

log = structlog.get_logger("api.console.sessions")

COOKIE = "ledger_console"
SIGN_IN_COOKIE = "ledger_console_sign_in"
COOKIE_PATH = "/console"
# A session ends this long after sign-in, used or not: a key left signed in on a shared
# machine works at most a working day.
SESSION_TTL_S = 8 * 3600
# The sign-in form's double-submit value lives this long.
SIGN_IN_TTL_S = 3600
SESSION_TOKEN_BYTES = 32
CSRF_PURPOSE = b"console-csrf"


class SignInRequired(Exception):
    """No session, or one that ended: the browser is sent to the sign-in page."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.reason = reason


@dataclass(frozen=True)
class Me:
    """Who is signed in: the key's principal (its tenant and scopes), and the session."""

    principal: Principal
    session_id: str  # the first hex digits of the token's hash: names a session in logs
    csrf: str

    @property
    def operator(self) -> bool:
        return self.principal.is_admin

    @property
    def tenant_id(self) -> str | None:
        return self.principal.tenant_id

    @property
    def actor(self) -> str:
        """What the envelope's `actor` says: the console, the key (or the operator), the session."""
        who = "operator" if self.operator else self.principal.key_id
        return f"console:{who}:{self.session_id}"

    def can(self, scope: str) -> bool:
        return not self.operator and scope in self.principal.scopes

    def envelope(self, command: Command) -> Envelope[Command]:
        return msgspec.structs.replace(self.principal.envelope(command), actor=self.actor)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_of(services: Services, token: str) -> str:
    secret = (services.settings.signing_secret or "").encode() or _PROCESS_SECRET
    return hmac.new(secret, CSRF_PURPOSE + token.encode(), hashlib.sha256).hexdigest()


_PROCESS_SECRET = secrets.token_bytes(32)  # without a signing secret: valid on this process


def secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


def cookie_header(request: Request[Any, Any, Any], name: str, value: str, max_age: int) -> str:
    parts = [
        f"{name}={value}",
        f"Path={COOKIE_PATH}",
        f"Max-Age={max_age}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure(request):
        parts.append("Secure")
    return "; ".join(parts)


async def sign_in(services: Services, request: Request[Any, Any, Any], key: str) -> str:
    """Checks the key as the API would and opens a session; returns the session token.
    ApiError (the problem the API would answer) when the key does not sign in."""
    principal = await services.auth.authenticate_key(key)
    store = await store_of(services).ready()
    now = datetime.now(tz=UTC)
    await store.forget_expired(now)
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    await store.add_session(
        Session(
            token_hash=token_hash(token),
            key_hash=hash_api_key(key),
            operator=principal.is_admin,
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            created_at=now,
            expires_at=now + timedelta(seconds=SESSION_TTL_S),
        )
    )
    log.info("console_signed_in", tenant_id=principal.tenant_id, key_id=principal.key_id)
    return token


async def signed_in(services: Services, request: Request[Any, Any, Any]) -> Me:
    """The session's principal, its key checked again; SignInRequired when there is none."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 2 * SESSION_TOKEN_BYTES:
        raise SignInRequired()
    store = await store_of(services).ready()
    hashed = token_hash(token)
    session = await store.session(hashed, datetime.now(tz=UTC))
    if session is None:
        raise SignInRequired("your session ended; sign in again")
    try:
        principal = await principal_of_session(services, session)
    except ApiError as error:
        await store.end_session(hashed)
        log.info("console_session_ended", reason=error.detail, key_id=session.key_id)
        raise SignInRequired(f"signed out: {error.detail}") from None
    return Me(principal=principal, session_id=hashed[:12], csrf=csrf_of(services, token))


async def principal_of_session(services: Services, session: Session) -> Principal:
    """The session's key, checked as on every API request (revoked, expired, disabled)."""
    auth = services.auth
    if session.operator:
        if not hmac.compare_digest(session.key_hash, hash_api_key(auth.admin_key)):
            raise ApiError("unauthorized", "the operator's key changed")
        return Principal(is_admin=True, tenant_id=None, key_id=None, scopes=frozenset())
    return await auth.principal_of_hash(session.key_hash)


async def sign_out(services: Services, request: Request[Any, Any, Any]) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        store: ConsoleStore = await store_of(services).ready()
        await store.end_session(token_hash(token))


async def check_csrf(services: Services, request: Request[Any, Any, Any], me: Me) -> dict[str, str]:
    """The form's fields, once its CSRF token is the session's; ApiError `forbidden` if not."""
    form = await request.form()
    fields = {name: str(value) for name, value in form.items()}
    if not hmac.compare_digest(fields.get("csrf", "").encode(), me.csrf.encode()):
        log.warning("console_csrf_refused", path=request.url.path)
        raise ApiError(
            "forbidden", "the form is stale or was not sent by this console; reload and try again"
        )
    return fields

"""`ledger serve`: the HTTP API with its writer, and (by default) the follower, the relay and
the scheduler.

With no LEDGER_DATABASE_URL / LEDGER_NATS_URL it starts embedded servers under the data
directory; they stop when this process exits, after everything else.
"""

from __future__ import annotations

import secrets
import signal
import sys

import msgspec

from api.http.app import create_app
from api.roles.database import ensure_schema
from api.roles.embedded import database_url, nats_url
from api.roles.garbage_collector import tune_collector
from api.settings import Settings
from ledger.store.sealed import new_secret_key

# Seconds uvicorn gives in-flight requests to finish on shutdown (the writer drains after).
GRACEFUL_SHUTDOWN_S = 30


def admin_key(settings: Settings) -> str:
    """LEDGER_ADMIN_KEY, else one generated once and kept in the data directory (mode 0600)."""
    if settings.admin_key:
        return settings.admin_key
    path = settings.data_dir / "admin_key"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = "lk_admin_" + secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def signing_secret(settings: Settings) -> str:
    """LEDGER_SIGNING_SECRET, else one generated once and kept in the data directory (mode
    0600): it signs stream tokens and the console's CSRF tokens, and is never in the store."""
    if settings.signing_secret:
        return settings.signing_secret
    path = settings.data_dir / "signing_secret"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


def secret_key(settings: Settings) -> str:
    """LEDGER_SECRET_KEY, else a Fernet key generated once and kept in the data directory
    (mode 0600), like the admin key: webhook secrets sealed with it stay readable across
    restarts."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = new_secret_key()
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def resolve_settings(settings: Settings) -> Settings:
    """What serve runs with: its servers' URLs (embedded ones started), its admin key and,
    with LEDGER_BACKGROUND=process, its roles as children of the app's supervisor."""
    url = database_url(settings)
    ensure_schema(url, settings.schema)
    resolved = msgspec.structs.replace(
        settings,
        database_url=url,
        nats_url=nats_url(settings),
        admin_key=admin_key(settings),
        signing_secret=signing_secret(settings),
        secret_key=secret_key(settings),
    )
    if settings.background != "process":
        return resolved
    roles = (
        ("project", settings.run_follower),
        ("relay", settings.run_relay),
        ("schedule", settings.run_scheduler),
        ("webhooks", settings.run_webhooks),
        ("topups", settings.run_topups),
    )
    child_roles = tuple(role for role, on in roles if on)
    return msgspec.structs.replace(
        resolved,
        writer_process=True,
        child_roles=child_roles,
        run_follower=False,
        run_relay=False,
        run_scheduler=False,
        run_webhooks=False,
        run_topups=False,
    )


def serve(settings: Settings) -> None:
    """Runs until SIGINT or SIGTERM, then stops in order: the HTTP server stops accepting and
    finishes the requests in flight; the app's lifespan stops the writer, which answers every
    command it accepted, then the follower and the relay, which store their positions
    (api/roles/runtime.py); last, at exit, the embedded servers."""
    import uvicorn  # noqa: PLC0415 - only the serve role needs it

    resolved = resolve_settings(settings)
    print(f"credits ledger on http://{settings.host}:{settings.port}", flush=True)
    print(f"  admin key: {resolved.admin_key}", flush=True)
    print(f"  database:  {resolved.database_url}", flush=True)
    print(f"  nats:      {resolved.nats_url}", flush=True)
    print(f"  API docs:  http://{settings.host}:{settings.port}/schema", flush=True)
    print(f"  console:   http://{settings.host}:{settings.port}/console", flush=True)
    app = create_app(resolved)
    tune_collector()
    # uvicorn re-raises the signal it stopped on; exit through Python so the embedded servers'
    # atexit handlers stop them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )

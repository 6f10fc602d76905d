"""`ledger serve`: the HTTP API with its writer, and (by default) the follower and the relay.

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
from api.roles.supervisor import Supervisor
from api.settings import Settings
from ledger.store.application import Ledger

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


def serve(settings: Settings) -> None:
    import uvicorn  # noqa: PLC0415 - only the serve role needs it

    url = database_url(settings)
    ensure_schema(url, settings.schema)
    nats = nats_url(settings)
    resolved = msgspec.structs.replace(
        settings, database_url=url, nats_url=nats, admin_key=admin_key(settings)
    )
    print(f"credits ledger on http://{settings.host}:{settings.port}", flush=True)
    print(f"  admin key: {resolved.admin_key}", flush=True)
    print(f"  database:  {url}", flush=True)
    print(f"  nats:      {nats}", flush=True)
    print(f"  API docs:  http://{settings.host}:{settings.port}/schema", flush=True)
    supervisor = None
    if settings.background == "process":
        roles = [
            role
            for role, on in (("project", settings.run_follower), ("relay", settings.run_relay))
            if on
        ]
        # The event store before the children, which read it from their first step. The
        # read models' and the relay's tables each role creates itself: projections.schema's
        # DDL lock keeps them from racing.
        Ledger(url, settings.schema).close()
        supervisor = Supervisor(roles, resolved)
        resolved = msgspec.structs.replace(
            resolved, writer_process=True, run_follower=False, run_relay=False
        )
    app = create_app(resolved)
    tune_collector()
    # uvicorn re-raises the signal it stopped on; exit through Python so the embedded servers'
    # atexit handlers stop them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if supervisor is not None:
            supervisor.start()
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()  # before the embedded NATS and PostgreSQL stop

"""Settings: one frozen struct, read from the LEDGER_* environment once, then passed down.

The top process reads them (`settings_from_env`, in the CLI's main); a child process gets its
parent's, resolved, as one encoded struct (`encode_settings` / `decode_settings`, handed over
by api/roles/child_settings.py), and never reads the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_PORT = 8000


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    database_url: str | None = None  # None: an embedded PostgreSQL under data_dir
    nats_url: str | None = None  # None: an embedded NATS under data_dir
    admin_key: str | None = None  # None: `make run` generates one and prints it
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = Path(".data")
    schema: str = "public"
    log_format: str = "auto"  # json | console | auto (console on a TTY)
    log_level: str = "info"
    rate_limit_per_s: float = 2_000.0  # requests per second per API key, sustained
    rate_limit_burst: int = 4_000  # requests per API key at once
    # `ledger serve` runs the writer, the follower, the relay and the scheduler as its child
    # processes (process) or as a thread and tasks of its own (inline). create_app() alone
    # runs the follower, the relay and the scheduler inline when asked to (run_follower,
    # run_relay, run_scheduler).
    background: str = "process"
    # Set by `ledger serve` with LEDGER_BACKGROUND=process, never read from the environment:
    # the group-commit writer runs in a child process (api/roles/writer_process.py), not a
    # thread, and these `ledger` sub-commands run as children too, all under the app's
    # supervisor (api/roles/supervisor.py).
    writer_process: bool = False
    child_roles: tuple[str, ...] = ()
    run_follower: bool = True  # project the read models in this process (`ledger project` alone)
    follower_batch_size: int = 2_000  # events per read-model transaction
    run_relay: bool = True  # publish entries to NATS from this process (`ledger relay` alone)
    run_scheduler: bool = True  # act on due times from this process (`ledger schedule` alone)
    stream_name: str = "LEDGER"  # the JetStream stream
    bench_endpoints: bool = False  # api/bench.py: the no-op ceiling of `make bench`
    # Reliability and isolation (issue 18; docs/reliability.md, docs/api.md "Configuration").
    # LEDGER_NATS_URL may name several servers of one cluster, comma-separated: the relay and
    # the live streams connect to any and follow the cluster's membership.
    # The first token of every subject (two deployments on one NATS: one prefix each).
    nats_subject_prefix: str = "ledger"
    # Nats-Msg-Id is `<namespace>:<position>`: a deployment's ids never collide with another's
    # on the same stream. None: the subject prefix.
    nats_message_id_namespace: str | None = None
    nats_duplicate_window_s: float = 120.0  # the stream's duplicate window
    nats_stream_replicas: int = 1  # the stream's replicas (3 on a three-node cluster)
    # Signs stream tokens and the console's CSRF tokens (issue 17); the same on every replica.
    # None: `make run` generates one into data_dir; create_app alone makes one per process.
    signing_secret: str | None = None
    # Money in and news out (issue 16). The Fernet key(s) sealing webhook secrets (None:
    # `ledger serve` generates one into data_dir/secret_key; without one the webhook routes
    # answer 503 and no deliverer runs).
    secret_key: str | None = None
    run_webhooks: bool = True  # deliver outbound webhooks from this process (`ledger webhooks`)
    webhooks_allow_http: bool = False  # endpoints may be http:// (else https:// only)
    webhooks_allow_private: bool = False  # endpoints may resolve to private/loopback addresses
    run_topups: bool = True  # watch for auto top-up crossings from this process (`ledger topups`)


BACKGROUND_MODES = ("process", "inline")
# The stream's replicas: JetStream allows 1 to 5.
STREAM_REPLICAS_MAX = 5
SUBJECT_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def nats_servers(nats_url: str) -> list[str]:
    """LEDGER_NATS_URL's servers: one URL, or several separated by commas."""
    return [url.strip() for url in nats_url.split(",") if url.strip()]


def subject_prefix(value: str) -> str:
    if SUBJECT_PREFIX_PATTERN.fullmatch(value) is None:
        raise ValueError(
            "LEDGER_NATS_SUBJECT_PREFIX must be one subject token: 1-64 letters, digits, _ or -"
        )
    return value


def message_id_namespace(value: str | None) -> str | None:
    if value is not None and SUBJECT_PREFIX_PATTERN.fullmatch(value) is None:
        raise ValueError("LEDGER_NATS_MESSAGE_ID_NAMESPACE must be 1-64 letters, digits, _ or -")
    return value


def stream_replicas(value: str | None) -> int:
    replicas = int(value or 1)
    if not 1 <= replicas <= STREAM_REPLICAS_MAX:
        raise ValueError(f"LEDGER_NATS_STREAM_REPLICAS must be from 1 to {STREAM_REPLICAS_MAX}")
    return replicas


def duplicate_window_s(value: str | None) -> float:
    window = float(value or 120.0)
    if not window > 0:
        raise ValueError("LEDGER_NATS_DUPLICATE_WINDOW_S must be a positive number of seconds")
    return window


def background(value: str) -> str:
    if value not in BACKGROUND_MODES:
        raise ValueError(f"LEDGER_BACKGROUND must be one of {', '.join(BACKGROUND_MODES)}")
    return value


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(f"LEDGER_{name}")
        return value if value else None

    port = get("PORT")
    return Settings(
        database_url=get("DATABASE_URL"),
        nats_url=get("NATS_URL"),
        admin_key=get("ADMIN_KEY"),
        host=get("HOST") or "127.0.0.1",
        port=int(port) if port else DEFAULT_PORT,
        data_dir=Path(get("DATA_DIR") or ".data"),
        schema=get("DB_SCHEMA") or "public",
        log_format=get("LOG_FORMAT") or "auto",
        log_level=get("LOG_LEVEL") or "info",
        rate_limit_per_s=float(get("RATE_LIMIT_PER_S") or 2_000),
        rate_limit_burst=int(get("RATE_LIMIT_BURST") or 4_000),
        background=background(get("BACKGROUND") or "process"),
        run_follower=(get("RUN_FOLLOWER") or "yes").lower() in ("1", "yes", "true", "on"),
        follower_batch_size=int(get("FOLLOWER_BATCH_SIZE") or 2_000),
        run_relay=(get("RUN_RELAY") or "yes").lower() in ("1", "yes", "true", "on"),
        run_scheduler=(get("RUN_SCHEDULER") or "yes").lower() in ("1", "yes", "true", "on"),
        stream_name=get("STREAM_NAME") or "LEDGER",
        bench_endpoints=(get("BENCH_ENDPOINTS") or "no").lower() in ("1", "yes", "true", "on"),
        nats_subject_prefix=subject_prefix(get("NATS_SUBJECT_PREFIX") or "ledger"),
        nats_message_id_namespace=message_id_namespace(get("NATS_MESSAGE_ID_NAMESPACE")),
        nats_duplicate_window_s=duplicate_window_s(get("NATS_DUPLICATE_WINDOW_S")),
        nats_stream_replicas=stream_replicas(get("NATS_STREAM_REPLICAS")),
        signing_secret=get("SIGNING_SECRET"),
        secret_key=get("SECRET_KEY"),
        run_webhooks=_flag(get("RUN_WEBHOOKS"), default=True),
        webhooks_allow_http=_flag(get("WEBHOOKS_ALLOW_HTTP"), default=False),
        webhooks_allow_private=_flag(get("WEBHOOKS_ALLOW_PRIVATE"), default=False),
        run_topups=_flag(get("RUN_TOPUPS"), default=True),
    )


def _flag(value: str | None, *, default: bool) -> bool:
    if value is None:
        return default
    return value.lower() in ("1", "yes", "true", "on")


def _encode_path(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(f"a setting of type {type(value).__name__} cannot be encoded")


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"a setting of type {kind.__name__} cannot be decoded")


_encoder = msgspec.json.Encoder(enc_hook=_encode_path)
_decoder = msgspec.json.Decoder(Settings, dec_hook=_decode_path)


def encode_settings(settings: Settings) -> bytes:
    """Every field, the data directory as a string: what a child decodes back."""
    return _encoder.encode(settings)


def decode_settings(encoded: bytes) -> Settings:
    """Raises msgspec.DecodeError (a ValidationError on an unknown field or a wrong type)."""
    return _decoder.decode(encoded)

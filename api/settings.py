"""Settings: one frozen struct, read from the LEDGER_* environment once, then passed down.

The top process reads them (`settings_from_env`, in the CLI's main); a child process gets its
parent's, resolved, as one encoded struct (`encode_settings` / `decode_settings`, handed over
by api/roles/child_settings.py), and never reads the environment.
"""

from __future__ import annotations

import os
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


BACKGROUND_MODES = ("process", "inline")


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
    )


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

"""Settings reach a child process as one encoded struct: what it decodes is what was encoded."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from api.settings import Settings, decode_settings, encode_settings


def test_settings_decode_to_exactly_what_was_encoded_the_data_directory_included() -> None:
    settings = Settings(
        database_url="postgresql://ledger:secret@db/ledger",
        nats_url="nats://nats:4222",
        admin_key="lk_admin_x",
        port=9000,
        data_dir=Path("/var/lib/ledger"),
        schema="tenant_a",
        log_format="json",
        log_level="debug",
        rate_limit_per_s=12.5,
        run_relay=False,
    )
    decoded = decode_settings(encode_settings(settings))
    assert decoded == settings
    assert isinstance(decoded.data_dir, Path)


def test_encoded_settings_with_a_field_this_version_does_not_know_are_refused() -> None:
    encoded = encode_settings(Settings())[:-1] + b',"colour":"blue"}'
    with pytest.raises(msgspec.ValidationError, match="colour"):
        decode_settings(encoded)


def test_the_nats_isolation_settings_are_read_and_bad_ones_refused() -> None:
    from api.settings import nats_servers, settings_from_env

    settings = settings_from_env(
        {
            "LEDGER_NATS_URL": "nats://a:4222, nats://b:4222,nats://c:4222",
            "LEDGER_NATS_SUBJECT_PREFIX": "billing-eu",
            "LEDGER_NATS_MESSAGE_ID_NAMESPACE": "eu_1",
            "LEDGER_NATS_DUPLICATE_WINDOW_S": "1.5",
            "LEDGER_NATS_STREAM_REPLICAS": "3",
        }
    )
    assert settings.nats_url is not None
    assert nats_servers(settings.nats_url) == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert (settings.nats_subject_prefix, settings.nats_message_id_namespace) == (
        "billing-eu",
        "eu_1",
    )
    assert (settings.nats_duplicate_window_s, settings.nats_stream_replicas) == (1.5, 3)
    defaults = settings_from_env({})
    assert (defaults.nats_subject_prefix, defaults.nats_message_id_namespace) == ("ledger", None)
    assert (defaults.nats_duplicate_window_s, defaults.nats_stream_replicas) == (120.0, 1)
    for name, value in (
        ("NATS_SUBJECT_PREFIX", "a.b"),
        ("NATS_SUBJECT_PREFIX", "ledger.>"),
        ("NATS_MESSAGE_ID_NAMESPACE", "x:y"),
        ("NATS_STREAM_REPLICAS", "6"),
        ("NATS_STREAM_REPLICAS", "0"),
        ("NATS_DUPLICATE_WINDOW_S", "0"),
    ):
        with pytest.raises(ValueError, match=f"LEDGER_{name}"):
            settings_from_env({f"LEDGER_{name}": value})

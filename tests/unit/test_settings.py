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

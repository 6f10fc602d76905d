"""Stream tokens are signed, expire, and are worthless under another server's secret."""

from __future__ import annotations

import pytest

from api.http.problems import ApiError
from api.http.stream_tokens import StreamTokens


def test_a_token_carries_its_tenant_key_and_account() -> None:
    tokens = StreamTokens("secret")
    made = tokens.issue("acme", "key-1", "ada", 60)
    payload = tokens.verify(made.token)
    assert (payload.t, payload.k, payload.a) == ("acme", "key-1", "ada")


def test_an_expired_token_is_refused() -> None:
    tokens = StreamTokens("secret")
    with pytest.raises(ApiError, match="expired"):
        tokens.verify(tokens.issue("acme", "key-1", None, -1).token)


def test_a_token_of_another_secret_or_changed_is_refused() -> None:
    token = StreamTokens("one").issue("acme", "key-1", None, 60).token
    with pytest.raises(ApiError, match="not valid"):
        StreamTokens("two").verify(token)
    signed, _, signature = token.rpartition(".")
    prefix, _, payload = signed.partition(".")
    with pytest.raises(ApiError):
        StreamTokens("one").verify(f"{prefix}.{payload}x.{signature}")
    with pytest.raises(ApiError, match="malformed"):
        StreamTokens("one").verify("x" * 2000)

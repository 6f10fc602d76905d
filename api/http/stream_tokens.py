"""Stream tokens: what a browser (or an editor plug-in) holds instead of an API key to open
`/v1/stream` or `/v1/ws` (issue 17).

`POST /v1/stream-tokens` signs `{tenant, key, account?, expiry}` with the server's signing
secret (HMAC-SHA256; `LEDGER_SIGNING_SECRET`, generated into the data directory by `make run`,
never in the event store). A token is short-lived and limited to its tenant and, when it names
one, to one account. It is not stored: a stream checks its signature and expiry, then that the
key it was made with is still valid and its tenant still enabled, when it opens
(api/http/stream_access.py: the route and that check).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import structlog

from api.http.problems import ApiError
from ledger.limits import ACCOUNT_ID_LENGTH_MAX

log = structlog.get_logger("api.http.stream_tokens")

TOKEN_PREFIX = "lst1"  # noqa: S105 - a format marker, not a secret
# How long a token may live: long enough to open a stream, short enough that one copied out
# of a page is soon worthless. A stream opened with it stays open past its expiry.
STREAM_TOKEN_TTL_S_DEFAULT = 300
STREAM_TOKEN_TTL_S_MAX = 3_600
# A token is at most this long (a tenant id, a key id, an account id of 128 characters).
STREAM_TOKEN_LENGTH_MAX = 1_024
# Derivations of the signing secret, one per use, so a token of one kind is never another's.
STREAM_TOKEN_PURPOSE = b"stream-token"

_payload_encoder = msgspec.json.Encoder()


class Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    t: str  # tenant
    k: str  # the key it was made with
    e: int  # expiry, Unix seconds
    a: str | None = None  # the one account, if limited to one


_payload_decoder = msgspec.json.Decoder(Payload)


class StreamTokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_id: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=ACCOUNT_ID_LENGTH_MAX,
                description="Limit the token to this account (a key with accounts:read may "
                "ask for one; a tenant-wide token needs reports:read)",
            ),
        ]
        | None
    ) = None
    ttl_s: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=STREAM_TOKEN_TTL_S_MAX,
            description="Seconds the token may be used to open a stream",
        ),
    ] = STREAM_TOKEN_TTL_S_DEFAULT


class StreamToken(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    token: Annotated[
        str,
        msgspec.Meta(
            description="Pass as `?token=` or the WebSocket subprotocol `ledger.token.<token>`"
        ),
    ]
    tenant_id: Annotated[str, msgspec.Meta(description="The tenant whose entries it streams")]
    expires_at: Annotated[datetime, msgspec.Meta(description="After this it opens no stream")]
    account_id: Annotated[
        str | None, msgspec.Meta(description="The one account it streams, when limited")
    ] = None


@dataclass(frozen=True)
class StreamAccess:
    """Who a stream is for: a tenant, and maybe only one of its accounts."""

    tenant_id: str
    account_id: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    def __init__(self, secret: str | None) -> None:
        if secret is None:
            log.warning(
                "signing_secret_per_process",
                detail="LEDGER_SIGNING_SECRET is not set: stream tokens work on this process only",
            )
            secret = secrets.token_urlsafe(32)
        self._key = hmac.new(secret.encode(), STREAM_TOKEN_PURPOSE, hashlib.sha256).digest()

    def _signature(self, signed: str) -> str:
        return _b64(hmac.new(self._key, signed.encode(), hashlib.sha256).digest())

    def issue(self, tenant_id: str, key_id: str, account_id: str | None, ttl_s: int) -> StreamToken:
        expires = int(time.time()) + ttl_s
        payload = Payload(t=tenant_id, k=key_id, e=expires, a=account_id)
        signed = f"{TOKEN_PREFIX}.{_b64(_payload_encoder.encode(payload))}"
        return StreamToken(
            token=f"{signed}.{self._signature(signed)}",
            tenant_id=tenant_id,
            account_id=account_id,
            expires_at=datetime.fromtimestamp(expires, tz=UTC),
        )

    def verify(self, token: str) -> Payload:
        """The token's payload; ApiError `unauthorized` unless it is ours and not expired."""
        if len(token) > STREAM_TOKEN_LENGTH_MAX:
            raise ApiError("unauthorized", "the stream token is malformed")
        signed, _, signature = token.rpartition(".")
        prefix, _, encoded = signed.partition(".")
        if prefix != TOKEN_PREFIX or not hmac.compare_digest(
            signature.encode(), self._signature(signed).encode()
        ):
            raise ApiError("unauthorized", "the stream token is not valid")
        try:
            payload = _payload_decoder.decode(_unb64(encoded))
        except (msgspec.DecodeError, ValueError):
            raise ApiError("unauthorized", "the stream token is malformed") from None
        if payload.e <= time.time():
            raise ApiError("unauthorized", "the stream token has expired; ask for a new one")
        return payload

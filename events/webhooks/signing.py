"""Standard Webhooks signatures (standardwebhooks.com): `webhook-signature: v1,<base64>`, the
HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<body>` keyed by the endpoint's secret, which
is `whsec_` and the base64 of its random bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix every secret has, not a secret
# Random bytes of an endpoint's signing secret (the spec asks for 24 to 64).
SECRET_BYTES = 32


def new_endpoint_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }

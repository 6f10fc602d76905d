"""The `Stripe-Signature` header: `t=<unix time>,v1=<hex>[,v1=<hex>...][,v0=...]`, where each
`v1` is HMAC-SHA256 over `<t>.<the raw body>` keyed by an endpoint's signing secret.

A payload verifies when its timestamp is within TOLERANCE_S of now (either way: an old
delivery replayed, or a clock far ahead) and some `v1` matches some secret of the tenant (two
or more during a rotation: Stripe signs with each, and the tenant keeps both until the old one
is retired). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac

# Stripe's own default tolerance (stripe.Webhook.DEFAULT_TOLERANCE).
TOLERANCE_S = 300
# A header longer than this is not Stripe's (a few signatures of 64 hex digits each).
SIGNATURE_HEADER_LENGTH_MAX = 2_048
SIGNATURES_MAX = 8


class SignatureError(Exception):
    pass


def signature(secret: str, timestamp: int, payload: bytes) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, payload: bytes) -> str:
    """The header Stripe would send (for tests and for a tenant's own tooling)."""
    return f"t={timestamp},v1={signature(secret, timestamp, payload)}"


def verify(payload: bytes, header: str | None, secrets: list[str], now: float) -> int:
    """The header's timestamp, once it verifies; SignatureError otherwise."""
    if not header:
        raise SignatureError("no Stripe-Signature header")
    if len(header) > SIGNATURE_HEADER_LENGTH_MAX:
        raise SignatureError("the Stripe-Signature header is too long")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("the Stripe-Signature header has no timestamp or no v1 signature")
    if len(candidates) > SIGNATURES_MAX:
        raise SignatureError("the Stripe-Signature header has too many signatures")
    if abs(now - timestamp) > TOLERANCE_S:
        raise SignatureError(f"the signature's timestamp is more than {TOLERANCE_S} s from now")
    if not secrets:
        raise SignatureError("no webhook secret is configured for this tenant")
    for secret in secrets:
        expected = signature(secret, timestamp, payload)
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return timestamp
    raise SignatureError("no signature matches a secret of this tenant")

"""Our Stripe-Signature check agrees with Stripe's own verifier (the `stripe` package): what it
signs, ours accepts, and what ours signs, it accepts; both refuse a changed body, a wrong
secret and a stale timestamp. Several v1 signatures and several secrets (a rotation) verify."""

from __future__ import annotations

import time

import pytest
import stripe

from ledger.payments.stripe_signature import TOLERANCE_S, SignatureError, sign, verify

PAYLOAD = b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {}}}'
SECRET, OLD_SECRET = "whsec_new_0123456789abcdef", "whsec_old_0123456789abcdef"


def test_a_header_signed_by_stripe_verifies_and_ours_verifies_with_stripe() -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(PAYLOAD.decode(), SECRET, now)
    assert verify(PAYLOAD, header, [SECRET], now) == now
    ours = sign(SECRET, now, PAYLOAD)
    assert ours == header
    assert stripe.WebhookSignature.verify_header(PAYLOAD, ours, SECRET, tolerance=TOLERANCE_S)
    event = stripe.Webhook.construct_event(PAYLOAD, ours, SECRET, tolerance=TOLERANCE_S)
    assert event["id"] == "evt_1"


def test_during_a_rotation_any_v1_signature_by_any_secret_verifies() -> None:
    now = int(time.time())
    old = stripe.WebhookSignature._compute_signature(f"{now}.{PAYLOAD.decode()}", OLD_SECRET)
    new = stripe.WebhookSignature._compute_signature(f"{now}.{PAYLOAD.decode()}", SECRET)
    header = f"t={now},v1={old},v1={new},v0=deadbeef"
    assert stripe.WebhookSignature.verify_header(PAYLOAD, header, SECRET, tolerance=TOLERANCE_S)
    assert verify(PAYLOAD, header, [SECRET], now) == now
    assert verify(PAYLOAD, header, [OLD_SECRET], now) == now
    only_old = f"t={now},v1={old}"
    assert verify(PAYLOAD, only_old, [SECRET, OLD_SECRET], now) == now
    with pytest.raises(SignatureError):
        verify(PAYLOAD, only_old, [SECRET], now)


@pytest.mark.parametrize(
    "payload, secret, age_s",
    [
        (PAYLOAD + b" ", SECRET, 0),  # the body changed
        (PAYLOAD, "whsec_wrong", 0),  # another endpoint's secret
        (PAYLOAD, SECRET, TOLERANCE_S + 1),  # a replay, after the tolerance
    ],
)
def test_both_verifiers_refuse_what_was_not_signed_now_with_the_secret(
    payload: bytes, secret: str, age_s: int
) -> None:
    now = int(time.time())
    header = sign(SECRET, now - age_s, PAYLOAD)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=TOLERANCE_S)
    with pytest.raises(SignatureError):
        verify(payload, header, [secret], now)


@pytest.mark.parametrize("header", [None, "", "t=abc,v1=00", "v1=00", "t=1"])
def test_a_missing_or_malformed_header_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify(PAYLOAD, header, [SECRET], time.time())


def test_a_timestamp_far_ahead_is_refused_too() -> None:
    now = int(time.time())
    with pytest.raises(SignatureError):
        verify(PAYLOAD, sign(SECRET, now + TOLERANCE_S + 1, PAYLOAD), [SECRET], now)

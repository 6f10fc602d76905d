"""The rules of API keys (docs/api.md, "Tenants and API keys"): only active keys count toward
the limit, a rotation makes a successor and ends the key after a grace period, and a tenant's
state stays bounded however many keys come and go. Through the real handlers, on the
in-memory ledger (its clock set to the wall clock: a key's end is judged by both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.errors import (
    ApiKeyNotActiveError,
    ApiKeyNotFoundError,
    InvalidCommandError,
    LimitExceededError,
)
from ledger.ids import tenant_aggregate_id
from ledger.limits import (
    API_KEY_ROTATION_GRACE_S_DEFAULT,
    API_KEY_ROTATION_GRACE_S_MAX,
    API_KEYS_ENDED_KEPT,
    API_KEYS_PER_TENANT_MAX,
)
from ledger.tenants.tenant import Tenant
from tests import envelopes as c
from tests.unit.fakes import InMemoryLedger

T = "acme"


def ready() -> tuple[InMemoryLedger, str]:
    """A tenant, and the id of its first key."""
    ledger = InMemoryLedger(now=datetime.now(UTC))
    first = ledger.run(c.CreateTenant(tenant_id=T, name="Acme")).value.api_key
    return ledger, first.key_id


def tenant(ledger: InMemoryLedger) -> Tenant:
    return ledger.get(tenant_aggregate_id(T))


def create(ledger: InMemoryLedger, **fields: Any) -> Any:
    fields.setdefault("scopes", ["accounts:read"])
    return ledger.run(c.CreateApiKey(tenant_id=T, **fields)).value


def rotate(ledger: InMemoryLedger, key_id: str, **fields: Any) -> Any:
    return ledger.run(c.RotateApiKey(tenant_id=T, key_id=key_id, **fields))


def revoke(ledger: InMemoryLedger, key_id: str) -> None:
    ledger.run(c.RevokeApiKey(tenant_id=T, key_id=key_id))


# ------------------------------------------------------------------ the limit


def fill_to_the_limit(ledger: InMemoryLedger) -> list[str]:
    return [create(ledger).key_id for _ in range(API_KEYS_PER_TENANT_MAX - 1)]


def test_only_active_keys_count_toward_the_key_limit() -> None:
    ledger, _ = ready()
    keys = fill_to_the_limit(ledger)
    with pytest.raises(LimitExceededError):
        create(ledger)
    revoke(ledger, keys[0])
    create(ledger, expires_at=ledger.now + timedelta(minutes=1))
    with pytest.raises(LimitExceededError):
        create(ledger)
    ledger.now += timedelta(minutes=2)  # the last key expired
    assert create(ledger).key


def test_a_rotation_at_the_key_limit_succeeds_and_the_key_in_its_grace_does_not_count() -> None:
    ledger, first = ready()
    fill_to_the_limit(ledger)
    successor = rotate(ledger, first).value
    assert successor.key
    with pytest.raises(LimitExceededError):
        create(ledger)


# ------------------------------------------------------------------ rotation


def test_a_rotation_issues_a_successor_with_the_keys_scopes_name_and_expiry() -> None:
    ledger, _ = ready()
    expires_at = ledger.now + timedelta(days=90)
    old = create(
        ledger, name="billing", scopes=["credits:consume", "reports:read"], expires_at=expires_at
    )
    outcome = rotate(ledger, old.key_id, grace_s=600)
    successor = outcome.value
    assert outcome.created
    assert successor.key and successor.key != old.key  # the secret, shown once
    assert (successor.name, successor.scopes, successor.expires_at) == (
        "billing",
        ["credits:consume", "reports:read"],
        expires_at,
    )
    assert successor.predecessor_key_id == old.key_id
    rotated = tenant(ledger).api_keys[old.key_id]
    assert rotated.expires_at == ledger.now + timedelta(seconds=600)
    assert rotated.successor_key_id == successor.key_id
    assert rotated.is_active(ledger.now + timedelta(seconds=599))
    assert not rotated.is_active(ledger.now + timedelta(seconds=600))
    recorded = [e for e in ledger.events if e.originator_id == tenant(ledger).id]
    assert [type(e).__name__ for e in recorded[-2:]] == ["ApiKeyCreated", "ApiKeyRotated"]


def test_a_rotation_has_a_default_grace_and_never_lengthens_a_keys_life() -> None:
    ledger, first = ready()
    rotate(ledger, first)
    assert tenant(ledger).api_keys[first].expires_at == ledger.now + timedelta(
        seconds=API_KEY_ROTATION_GRACE_S_DEFAULT
    )
    soon = create(ledger, expires_at=ledger.now + timedelta(minutes=5))
    rotate(ledger, soon.key_id, grace_s=API_KEY_ROTATION_GRACE_S_MAX)
    assert tenant(ledger).api_keys[soon.key_id].expires_at == soon.expires_at


def test_a_grace_of_zero_ends_the_rotated_key_now() -> None:
    ledger, first = ready()
    rotate(ledger, first, grace_s=0)
    assert not tenant(ledger).api_keys[first].is_active(ledger.now)


def test_a_grace_period_is_at_most_a_day() -> None:
    ledger, first = ready()
    for grace_s in (-1, API_KEY_ROTATION_GRACE_S_MAX + 1):
        with pytest.raises(InvalidCommandError):
            rotate(ledger, first, grace_s=grace_s)
    assert tenant(ledger).api_keys[first].successor_key_id is None


def test_only_a_working_key_not_rotated_yet_can_be_rotated() -> None:
    ledger, first = ready()
    successor = rotate(ledger, first).value
    with pytest.raises(ApiKeyNotActiveError):
        rotate(ledger, first)  # rotate its successor instead
    assert rotate(ledger, successor.key_id).value.predecessor_key_id == successor.key_id
    spare = create(ledger)
    revoke(ledger, spare.key_id)
    with pytest.raises(ApiKeyNotActiveError):
        rotate(ledger, spare.key_id)
    with pytest.raises(ApiKeyNotFoundError):
        rotate(ledger, "no-such-key")


def test_a_rotation_with_an_idempotency_key_is_applied_once() -> None:
    ledger, first = ready()
    once = rotate(ledger, first, idempotency_key="rotate-1")
    again = rotate(ledger, first, idempotency_key="rotate-1")
    assert again.replayed and again.value.key_id == once.value.key_id
    assert again.value.key is None  # the secret is never written down
    assert sum(type(e).__name__ == "ApiKeyRotated" for e in ledger.events) == 1


# ------------------------------------------------------------------ bounded state


def test_rotations_without_end_keep_the_tenants_state_bounded() -> None:
    ledger, key_id = ready()
    for _ in range(3 * API_KEYS_ENDED_KEPT):
        key_id = rotate(ledger, key_id, grace_s=0).value.key_id
    keys = tenant(ledger).api_keys
    assert len(keys) == API_KEYS_ENDED_KEPT + 1  # the working key and the latest ended ones
    assert keys[key_id].is_active(ledger.now)
    newest_ended = keys[key_id].predecessor_key_id
    assert newest_ended in keys
    assert create(ledger).key


def test_revoking_a_key_the_tenant_no_longer_keeps_answers_not_found() -> None:
    ledger, _ = ready()
    oldest = create(ledger).key_id
    revoke(ledger, oldest)
    for _ in range(API_KEYS_ENDED_KEPT):
        revoke(ledger, create(ledger).key_id)
    assert oldest not in tenant(ledger).api_keys
    with pytest.raises(ApiKeyNotFoundError):
        revoke(ledger, oldest)

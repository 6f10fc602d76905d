"""What a hold's credits paid for (docs/api.md, "Holds"): a hold names its operation, resource,
user_id and metadata; its capture's entry carries them, with the capture's own on top, so
usage by user or resource counts estimate-then-charge like a consumption."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.accounts.account import Account
from ledger.errors import InvalidCommandError
from ledger.ids import account_aggregate_id
from ledger.limits import METADATA_KEYS_MAX
from tests import envelopes as c
from tests.unit.fakes import InMemoryLedger

T = "acme"
A = "ada"


def ready() -> InMemoryLedger:
    ledger = InMemoryLedger()
    ledger.run(c.CreateTenant(tenant_id=T, name="Acme"))
    ledger.run(c.OpenAccount(tenant_id=T, account_id=A))
    ledger.run(c.GrantCredits(tenant_id=T, account_id=A, amount=1_000, reason="x"))
    return ledger


def place(ledger: InMemoryLedger, **fields: Any) -> Any:
    command = c.PlaceHold(tenant_id=T, account_id=A, amount=50, operation="VIDEO_RENDER", **fields)
    return ledger.run(command).value


def capture(ledger: InMemoryLedger, hold_id: str, **fields: Any) -> Any:
    return ledger.run(c.CaptureHold(tenant_id=T, account_id=A, hold_id=hold_id, **fields)).value


def test_a_hold_and_its_entry_carry_its_resource_user_id_and_metadata() -> None:
    ledger = ready()
    hold = place(ledger, resource="model-x", user_id="u-1", metadata={"job": "j-9"})
    assert (hold.resource, hold.user_id, hold.metadata) == ("model-x", "u-1", {"job": "j-9"})
    read = ledger.run(c.GetHold(tenant_id=T, account_id=A, hold_id=hold.hold_id)).value
    assert read == hold
    event = next(e for e in ledger.events if isinstance(e, Account.HoldPlaced))
    assert (event.resource, event.user_id, event.metadata) == ("model-x", "u-1", {"job": "j-9"})


def test_a_capture_entry_carries_the_holds_operation_resource_user_id_and_metadata() -> None:
    ledger = ready()
    hold = place(ledger, resource="model-x", user_id="u-1", metadata={"job": "j-9"})
    entry = capture(ledger, hold.hold_id, amount=35)
    assert (entry.type, entry.amount) == ("capture", -35)
    assert (entry.operation, entry.resource, entry.user_id, entry.metadata) == (
        "VIDEO_RENDER",
        "model-x",
        "u-1",
        {"job": "j-9"},
    )


def test_a_captures_own_fields_replace_the_holds_and_its_metadata_keys_are_added() -> None:
    ledger = ready()
    hold = place(ledger, resource="model-x", user_id="u-1", metadata={"job": "j-9", "est": 50})
    entry = capture(
        ledger,
        hold.hold_id,
        operation="VIDEO_RENDER_HD",
        resource="model-y",
        metadata={"est": 35, "frames": 120},
    )
    assert (entry.operation, entry.resource, entry.user_id) == (
        "VIDEO_RENDER_HD",
        "model-y",
        "u-1",  # not given: the hold's
    )
    assert entry.metadata == {"job": "j-9", "est": 35, "frames": 120}
    read = ledger.run(c.GetHold(tenant_id=T, account_id=A, hold_id=hold.hold_id)).value
    assert (read.operation, read.metadata) == ("VIDEO_RENDER", {"job": "j-9", "est": 50})


def test_a_refund_of_a_capture_counts_under_the_operation_its_entry_names() -> None:
    ledger = ready()
    hold = place(ledger)
    entry = capture(ledger, hold.hold_id, operation="VIDEO_RENDER_HD")
    refunded = ledger.run(
        c.RefundConsumption(
            tenant_id=T, account_id=A, consumption_id=entry.consumption_id, reason="failed"
        )
    ).value
    assert (refunded.operation, refunded.amount) == ("VIDEO_RENDER_HD", 50)


def test_a_capture_whose_metadata_with_the_holds_passes_the_limit_is_refused() -> None:
    ledger = ready()
    half = METADATA_KEYS_MAX // 2 + 1
    hold = place(ledger, metadata={f"h{i}": i for i in range(half)})
    version = ledger.get(account_aggregate_id(T, A)).version
    with pytest.raises(InvalidCommandError, match="the hold's metadata with the capture's"):
        capture(ledger, hold.hold_id, metadata={f"c{i}": i for i in range(half)})
    assert ledger.get(account_aggregate_id(T, A)).version == version
    assert capture(ledger, hold.hold_id, metadata={"h0": "again"}).metadata["h0"] == "again"


def test_a_captures_own_fields_are_checked_like_a_consumptions() -> None:
    ledger = ready()
    hold = place(ledger)
    for fields in ({"operation": " "}, {"user_id": "a\nb"}, {"metadata": {"x": 1.5}}):
        with pytest.raises(InvalidCommandError):
            capture(ledger, hold.hold_id, **fields)


def test_new_hold_and_capture_fields_at_their_defaults_keep_the_old_fingerprint() -> None:
    plain = c.CaptureHold(tenant_id=T, account_id=A, hold_id="h", amount=5)
    assert c.fingerprint(plain) == c.fingerprint(
        c.CaptureHold(tenant_id=T, account_id=A, hold_id="h", amount=5, metadata={})
    )
    assert c.fingerprint(plain) != c.fingerprint(c.changed(plain, user_id="u"))
    hold = c.PlaceHold(tenant_id=T, account_id=A, amount=5, operation="op")
    assert c.fingerprint(hold) != c.fingerprint(c.changed(hold, resource="r"))

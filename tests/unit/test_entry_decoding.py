"""The follower's fast decoder hands what it does not know to the library's mapper (no I/O:
stored rows made by hand). That it decodes every real account event as the mapper does is
tests/integration/test_projections.py's, over events the writer stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

from ledger.accounts.stored_entries import decode_entries, entries_of_rows
from ledger.store.transcoder import new_mapper
from projections.changes import Changes


def test_what_the_fast_decoder_does_not_know_goes_through_the_library_mapper() -> None:
    """An older class version (upcast by the library), metadata holding a value the
    transcoder turns into an object and a key the class does not declare are decoded by the
    mapper, so the result is the same."""
    account = uuid4()
    state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-02T03:04:05.000006+00:00"},
        "tenant_id": "t",
        "account_id": "a",
        "amount": -3,
        "balance": 7,
        "held": 0,
        "consumption_id": "c.2",
        "operation": "op",
        "resource": None,
        "user_id": None,
        "metadata": {"when": {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"}},
        "draws": [],
    }
    topic = "ledger.account:Account.CreditsConsumed"
    version_1 = (1, account, 2, topic, json.dumps(state).encode())
    tagged = (2, account, 3, topic, json.dumps({**state, "class_version": 2}).encode())
    plain = {**state, "metadata": {"k": 1}, "drawn_lots": None, "class_version": 2}
    fast = (3, account, 4, topic, json.dumps(plain).encode())
    undeclared = (4, account, 5, topic, json.dumps({**plain, "reason": ""}).encode())
    rows = [version_1, tagged, fast, undeclared]
    assert entries_of_rows(new_mapper(), rows) == decode_entries(new_mapper(), rows)
    by_rows, by_mapper = Changes(), Changes()
    by_rows.add_rows(new_mapper(), rows)
    for tenant_id, decoded in decode_entries(new_mapper(), rows):
        by_mapper.add(tenant_id, decoded)
    assert by_rows == by_mapper
    entry = entries_of_rows(new_mapper(), [tagged])[0][1]
    assert entry.metadata == {"when": datetime(2026, 1, 1, tzinfo=UTC)}


def test_captures_and_holds_stored_before_they_named_users_decode_as_they_did() -> None:
    """A capture of class version 2 and a hold of version 1 (before issue 14) go through the
    mapper's upcasts and make the entries they always made; version 3 and 2 rows, with the
    new fields, decode on the fast path to the same entries as the mapper's."""
    account = uuid4()
    common = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-02T03:04:05+00:00"},
        "tenant_id": "t",
        "account_id": "a",
        "hold_id": "h",
    }
    capture_v2 = {
        **common,
        "amount": -3,
        "balance": 7,
        "held": 0,
        "hold_amount": 5,
        "consumption_id": "c.3",
        "operation": "render",
        "draws": [],
        "drawn_lots": None,
        "class_version": 2,
    }
    capture_v3 = {
        **capture_v2,
        "class_version": 3,
        "resource": "m",
        "user_id": "u",
        "metadata": {"job": 1},
    }
    hold_v1 = {
        **common,
        "amount": 0,
        "balance": 10,
        "held": 5,
        "operation": "render",
        "hold_amount": 5,
        "expires_at": {"_type_": "datetime_iso", "_data_": "2026-01-02T04:04:05+00:00"},
        "metadata": {},
        "reservations": [],
    }
    hold_v2 = {**hold_v1, "class_version": 2, "resource": "m", "user_id": "u"}
    captured, placed = "ledger.account:Account.HoldCaptured", "ledger.account:Account.HoldPlaced"
    rows = [
        (1, account, 2, placed, json.dumps(hold_v1).encode()),
        (2, account, 3, captured, json.dumps(capture_v2).encode()),
        (3, account, 4, placed, json.dumps(hold_v2).encode()),
        (4, account, 5, captured, json.dumps(capture_v3).encode()),
    ]
    decoded = entries_of_rows(new_mapper(), rows)
    assert decoded == decode_entries(new_mapper(), rows)
    old_hold, old_capture, hold, capture = (entry for _, entry in decoded)
    assert (old_hold.user_id, old_capture.user_id, old_capture.metadata) == (None, None, None)
    assert (hold.resource, hold.user_id) == ("m", "u")
    assert (capture.resource, capture.user_id, capture.metadata) == ("m", "u", {"job": 1})

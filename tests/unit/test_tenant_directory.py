"""The tenant list's partial index is on the topic tenants' first events are stored under."""

from __future__ import annotations

from ledger.store.recorder import TENANT_CREATED_TOPIC
from ledger.tenants.tenant import Tenant


def test_the_indexed_topic_is_the_topic_of_a_tenants_first_event() -> None:
    assert Tenant.Created.TOPIC == TENANT_CREATED_TOPIC  # type: ignore[attr-defined]


def test_disabling_and_enabling_are_events_of_their_own_topics() -> None:
    assert Tenant.Disabled.TOPIC == "ledger.tenant:Tenant.Disabled"  # type: ignore[attr-defined]
    assert Tenant.Enabled.TOPIC == "ledger.tenant:Tenant.Enabled"  # type: ignore[attr-defined]

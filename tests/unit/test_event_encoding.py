"""Stored events stay readable: what the Ledger's mapper writes, the library's own mapper (the
`JSONTranscoder` every earlier version wrote with) reads back to the same event, and the other
way round, for every event class the ledger has."""

from __future__ import annotations

import dataclasses
import math
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)
from hypothesis import given
from hypothesis import strategies as st

from ledger.accounts import account, consumptions, holds, reversals
from ledger.ids import account_aggregate_id, tenant_aggregate_id
from ledger.pricing import price_book, quotes
from ledger.store.transcoder import new_mapper
from ledger.tenants import api_keys, tenant
from ledger.topups import policy, record
from tests import envelopes as c
from tests.unit.fakes import START, InMemoryLedger

T = "acme"
A = "ada"


def library_mapper() -> Mapper[uuid.UUID]:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DecimalAsStr())
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder=transcoder)


def event_classes() -> set[type]:
    """Every event class the ledger's aggregates can trigger: the leaves of each aggregate's
    event classes, less the `Created` the library makes for an aggregate that names its own."""
    found: set[type] = set()
    for aggregate in (
        account.Account,
        consumptions.Consumption,
        holds.HoldRecord,
        tenant.Tenant,
        api_keys.ApiKeyIndex,
        reversals.PaymentReversal,
        price_book.PriceBook,
        quotes.Quote,
        policy.TopUpPolicy,
        record.TopUpRecord,
    ):
        classes = [
            value
            for value in vars(aggregate).values()
            if isinstance(value, type) and issubclass(value, Aggregate.Event)
        ]
        leaves = [cls for cls in classes if not cls.__subclasses__()]
        created = [cls for cls in leaves if issubclass(cls, Aggregate.Created)]
        found.update(cls for cls in leaves if not (len(created) > 1 and cls.__name__ == "Created"))
    return found


def every_kind_of_event() -> list[Any]:
    """A history that makes every event class at least once, with datetimes, nested lots,
    metadata of every JSON type, and non-ASCII text."""
    ledger = InMemoryLedger()
    metadata = {"é": ["x", 1, True, None, {"deep": {"ok": False}}], "ctrl": "\x1f\x00"}
    soon = START + timedelta(seconds=10)
    ledger.run(c.CreateTenant(tenant_id=T, name="Acmé", settings=c.TenantSettings(signup_bonus=5)))
    ledger.run(
        c.UpdateTenant(
            tenant_id=T,
            settings=c.TenantSettingsPatch(overdraft_limit=50, purchase_rates={"EUR": "10"}),
        )
    )
    key = ledger.run(c.CreateApiKey(tenant_id=T, scopes=["credits:consume"], expires_at=soon))
    ledger.run(c.RevokeApiKey(tenant_id=T, key_id=key.value.key_id))  # type: ignore[attr-defined]
    spare = ledger.run(c.CreateApiKey(tenant_id=T, scopes=["reports:read"], name="spare"))
    ledger.run(c.RotateApiKey(tenant_id=T, key_id=spare.value.key_id, grace_s=60))  # type: ignore[attr-defined]
    ledger.run(c.DisableTenant(tenant_id=T, reason="unpaid"))
    ledger.run(c.EnableTenant(tenant_id=T))
    ledger.run(c.OpenAccount(tenant_id=T, account_id=A, metadata=metadata))
    ledger.run(
        c.GrantCredits(
            tenant_id=T, account_id=A, amount=30, reason="r", expires_at=soon, metadata=metadata
        )
    )
    ledger.run(
        c.PurchaseCredits(
            tenant_id=T,
            account_id=A,
            price=c.Price(amount="9.99", currency="EUR"),
            payment_ref="pay-1",
        )
    )
    ledger.run(
        c.PublishPriceBook(tenant_id=T, rules=[c.PriceRule(currency="USD", credits_per_unit="10")])
    )
    quote = ledger.run(c.CreateQuote(tenant_id=T, price=c.Price(amount="2", currency="USD")))
    ledger.run(
        c.PurchaseCredits(
            tenant_id=T,
            account_id=A,
            price=c.Price(amount="2", currency="USD"),
            payment_ref="pay-2",
            quote_id=quote.value.quote_id,  # type: ignore[attr-defined]
        )
    )
    ledger.run(c.ReverseCredits(tenant_id=T, account_id=A, payment_ref="pay-2", reason="refunded"))
    ledger.run(c.SetTenantTopUp(tenant_id=T, below=10_000, amount=5))
    ledger.run(c.SetTenantTopUp(tenant_id=T, below=10_000, amount=6, monthly_max=2))
    asked = ledger.run(c.RequestTopUp(tenant_id=T, account_id=A, position=1)).value
    for attempt in (2, 3, 4, 5):
        ledger.run(
            c.RetryTopUp(tenant_id=T, account_id=A, topup_id=asked.topup_id, attempt=attempt)
        )  # type: ignore[attr-defined]
    ledger.run(c.RequestTopUp(tenant_id=T, account_id=A, position=2))
    ledger.run(
        c.PurchaseCredits(
            tenant_id=T,
            account_id=A,
            price=c.Price(amount="1", currency="EUR"),
            payment_ref="pay-3",
        )
    )
    consumed = ledger.run(
        c.ConsumeCredits(
            tenant_id=T, account_id=A, amount=40, operation="op", resource="r", metadata=metadata
        )
    )
    consumption_id = consumed.value.consumption_id  # type: ignore[attr-defined]
    ledger.run(
        c.RefundConsumption(tenant_id=T, account_id=A, consumption_id=consumption_id, reason="x")
    )
    held = ledger.run(
        c.PlaceHold(
            tenant_id=T, account_id=A, amount=7, operation="op", user_id="ü", metadata=metadata
        )
    )
    hold_id = held.value.hold_id  # type: ignore[attr-defined]
    ledger.run(
        c.CaptureHold(
            tenant_id=T, account_id=A, hold_id=hold_id, amount=3, resource="r", metadata={"n": 1}
        )
    )
    held = ledger.run(c.PlaceHold(tenant_id=T, account_id=A, amount=2, operation="op"))
    ledger.run(c.ReleaseHold(tenant_id=T, account_id=A, hold_id=held.value.hold_id))  # type: ignore[attr-defined]
    ledger.run(c.AdjustBalance(tenant_id=T, account_id=A, amount=-5, reason="fix"))
    ledger.run(c.AdjustBalance(tenant_id=T, account_id=A, amount=500, reason="fix"))
    ledger.run(c.PlaceHold(tenant_id=T, account_id=A, amount=1, operation="op", expires_in_s=1))
    ledger.now = START + timedelta(days=1)
    ledger.run(c.ExpireCredits(tenant_id=T, account_id=A))
    snapshots = [
        Snapshot.take(ledger.get(account_aggregate_id(T, A))),
        Snapshot.take(ledger.get(tenant_aggregate_id(T))),
    ]
    return [*ledger.events, *snapshots]


def plain(event: Any) -> Any:
    """The event with its typed values (lots, draws, settings: msgspec structs) as the plain
    dicts the library's mapper knows: what they are stored as."""
    copy = object.__new__(type(event))
    state = {name: _plain_value(value) for name, value in vars(event).items()}
    object.__setattr__(copy, "__dict__", state)
    return copy


def _plain_value(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value, builtin_types=(datetime, uuid.UUID, Decimal))
    if isinstance(value, dict):
        return {key: _plain_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_value(item) for item in value]
    return value


def assert_same_event(read: Any, written: Any) -> None:
    assert type(read) is type(written)
    assert vars(read) == vars(written)
    for name, value in vars(written).items():
        assert type(vars(read)[name]) is type(value), name


def test_the_history_covers_every_event_class() -> None:
    made = {type(event) for event in every_kind_of_event()}
    assert len(event_classes()) >= 20
    assert event_classes() - made == set()


def test_the_library_reads_what_the_ledger_writes_and_the_ledger_what_the_library_wrote() -> None:
    ours, theirs = new_mapper(), library_mapper()
    for event in every_kind_of_event():
        written = ours.to_stored_event(event)
        assert_same_event(theirs.to_domain_event(written), plain(event))
        assert_same_event(ours.to_domain_event(theirs.to_stored_event(plain(event))), event)
        assert written == theirs.to_stored_event(plain(event))  # the very bytes, as it happens


def test_values_outside_the_fast_path_are_written_by_the_library() -> None:
    """A float (msgspec would write NaN as null), a Decimal, a UUID, a non-string key."""
    ours, theirs = library_mapper().transcoder, new_mapper().transcoder
    state = {
        "nan": math.nan,
        "price": Decimal("9.99"),
        "ids": (uuid.UUID(int=7),),
        "by_number": {1: "one"},
    }
    assert theirs.encode(state) == ours.encode(state)
    decoded = ours.decode(theirs.encode(state))
    assert math.isnan(decoded.pop("nan"))
    assert decoded == {
        "price": Decimal("9.99"),
        "ids": [uuid.UUID(int=7)],
        "by_number": {"1": "one"},
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_any_metadata_reads_back_the_same(metadata: Any) -> None:
    state = {"metadata": metadata, "at": START, "id": uuid.UUID(int=1)}
    written = new_mapper().transcoder.encode(state)
    assert written == library_mapper().transcoder.encode(state)
    assert library_mapper().transcoder.decode(written) == state


def test_account_events_have_exactly_their_class_fields() -> None:
    """Account builds its events without the dataclass's __init__ (Account._trigger): each
    must still be what that __init__ would have built from the same values."""
    for event in every_kind_of_event():
        if isinstance(event, account.Account.Event):
            assert type(event)(**vars(event)) == event
            assert set(vars(event)) == {f.name for f in dataclasses.fields(event)}

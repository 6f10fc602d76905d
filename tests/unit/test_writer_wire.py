"""The messages between serve and its writer process carry every command and every answer
exactly: what the child decodes is what the parent sent, and the other way round."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
import pytest

from api.roles.writer_wire import (
    COMMAND_TYPES,
    LENGTH_BYTES,
    Stats,
    answers_messages,
    decode_answers,
    decode_works,
    encode_work,
    works_message,
)
from ledger.accounts import commands as accounts
from ledger.accounts.views import AccountView, Entry, HoldView, LotView, Totals
from ledger.errors import AtomicBatchFailedError, InsufficientCreditsError
from ledger.outcome import Outcome
from ledger.tenants.views import ApiKeyView, TenantView
from tests import envelopes as c

T, A = "acme", "ada@example.com"
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
LATER = dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=PLUS_TWO)  # an offset, not UTC
NOW = dt.datetime(2026, 11, 22, 7, 0, tzinfo=dt.UTC)
METADATA = {"plan": "pro", "big": 10**40, "ratio": 0.1, "tags": ["a", None, True], "n": {}}

ONE_OF_EACH: list[c.Envelope[c.Command]] = [
    c.CreateTenant(
        tenant_id=T,
        name="Acme",
        settings=c.TenantSettings(signup_bonus=5, purchase_rates={"USD": "100"}),
    ),
    c.UpdateTenant(
        tenant_id=T, settings=c.TenantSettingsPatch(overdraft_limit=10, low_balance_threshold=None)
    ),
    c.CreateApiKey(tenant_id=T, scopes=["accounts:read"], name="k", expires_at=LATER),
    c.RevokeApiKey(tenant_id=T, key_id="key_1"),
    c.OpenAccount(tenant_id=T, account_id=A, metadata=METADATA, idempotency_key="k1"),
    c.GrantCredits(tenant_id=T, account_id=A, amount=5, reason="r", expires_at=LATER, priority=3),
    c.PurchaseCredits(
        tenant_id=T,
        account_id=A,
        price=c.Price(amount="9.99", currency="USD"),
        payment_ref="pay_1",
        expires_at=LATER,
    ),
    c.ConsumeCredits(
        tenant_id=T, account_id=A, amount=1, operation="OP", user_id="u", metadata=METADATA
    ),
    c.RefundConsumption(tenant_id=T, account_id=A, consumption_id=f"{'a' * 32}.7", reason="r"),
    c.PlaceHold(tenant_id=T, account_id=A, amount=3, operation="OP", expires_in_s=60),
    c.CaptureHold(tenant_id=T, account_id=A, hold_id="h", amount=2, user_id="u", metadata=METADATA),
    c.ReleaseHold(tenant_id=T, account_id=A, hold_id="h"),
    c.AdjustBalance(tenant_id=T, account_id=A, amount=-4, reason="r"),
    c.ExpireCredits(tenant_id=T, account_id=A),
    c.ExpireDue(tenant_id=T, account_id=A, due_at=LATER, idempotency_key="hold_expiry:x:h"),
    c.GetAccount(tenant_id=T, account_id=A),
    c.GetHold(tenant_id=T, account_id=A, hold_id="h"),
    c.GetTenant(tenant_id=T),
    c.ReverseCredits(tenant_id=T, account_id=A, payment_ref="pay_1", reason="r", share="0.5"),
    c.PublishPriceBook(
        tenant_id=T,
        rules=[
            c.PriceRule(
                currency="USD",
                credits_per_unit="100",
                bonus_percent="5",
                tiers=[c.Tier(min_amount="50", credits_per_unit="110")],
                decimals=2,
            )
        ],
        effective_from=LATER,
    ),
    c.GetPriceBook(tenant_id=T),
    c.GetPriceBookHistory(tenant_id=T),
    c.CreateQuote(tenant_id=T, credits=1000, currency="USD", account_id=A, expires_in_s=60),
    c.CreateQuote(tenant_id=T, price=c.Price(amount="9.99", currency="USD")),
    c.GetPayment(tenant_id=T, payment_ref="pi_1"),
    c.SetAccountTopUp(tenant_id=T, account_id=A, below=10, target=100, monthly_max=3),
    c.SetTenantTopUp(tenant_id=T, below=-5, amount=50, enabled=False),
    c.GetAccountTopUp(tenant_id=T, account_id=A),
    c.GetTenantTopUp(tenant_id=T),
    c.RequestTopUp(tenant_id=T, account_id=A, position=42, idempotency_key="topup:42"),
    c.RetryTopUp(tenant_id=T, account_id=A, topup_id="tu_1", attempt=2),
    c.RotateApiKey(tenant_id=T, key_id="key_1", grace_s=0, idempotency_key="rot-1"),
    c.DisableTenant(tenant_id=T, reason="unpaid", by_key=None),
    c.EnableTenant(tenant_id=T),
]


def body_of(message: bytes) -> bytes:
    assert int.from_bytes(message[:LENGTH_BYTES], "big") == len(message) - LENGTH_BYTES
    return message[LENGTH_BYTES:]


def test_every_command_type_is_listed_once_and_sampled_here() -> None:
    assert len(set(COMMAND_TYPES)) == len(COMMAND_TYPES)
    assert {type(envelope.command) for envelope in ONE_OF_EACH} == set(COMMAND_TYPES)


def test_works_arrive_as_sent_with_big_integers_and_utc_offsets_kept() -> None:
    works = [(index, index % 2 == 0, [command]) for index, command in enumerate(ONE_OF_EACH)]
    works.append((99, True, ONE_OF_EACH[4:9]))
    message = works_message([encode_work(token, atomic, cmds) for token, atomic, cmds in works])
    decoded = decode_works(body_of(message))
    assert decoded == [(token, atomic, cmds) for token, atomic, cmds in works]
    grant = decoded[5][2][0]
    assert isinstance(grant.command, accounts.GrantCredits) and grant.command.expires_at is not None
    assert grant.command.expires_at.utcoffset() == dt.timedelta(hours=2)  # not turned into UTC
    assert c.fingerprint(grant) == c.fingerprint(ONE_OF_EACH[5])  # idempotency sees no change


def entry(position: int) -> Entry:
    return Entry(
        entry_id=f"{uuid.uuid4().hex}.{position}",
        account_id=A,
        type="consume",
        amount=-1,
        balance=10**30,
        available=10,
        held=0,
        version=position,
        position=position,
        recorded_at=NOW,
        expires_at=LATER,
        metadata=METADATA,
    )


def test_answers_arrive_as_sent_outcomes_atomic_lists_and_errors_with_their_fields() -> None:
    account = AccountView(
        account_id=A,
        balance=5,
        available=5,
        held=0,
        version=3,
        metadata=METADATA,
        lots=[LotView(lot_id="l", source="grant", remaining=5, expires_at=LATER, priority=1)],
        totals=Totals(granted=5, purchased=0, consumed=0, refunded=0, expired=0, adjusted=0),
        created_at=NOW,
        updated_at=NOW,
    )
    key = ApiKeyView(
        key_id="k", name="n", scopes=["accounts:read"], key_prefix="lk_", created_at=NOW, key="s"
    )
    views = [
        entry(1),
        account,
        HoldView(
            hold_id="h",
            account_id=A,
            amount=3,
            operation="OP",
            status="active",
            expires_at=LATER,
            created_at=NOW,
        ),
        key,
        TenantView(
            tenant_id=T,
            name="Acme",
            settings=c.TenantSettings(signup_bonus=5),
            version=1,
            created_at=NOW,
            updated_at=NOW,
            api_key=key,
        ),
    ]
    short = InsufficientCreditsError("not enough", available=4)
    failed = AtomicBatchFailedError("commands[1] failed", index=1, cause=short)
    pairs: list[tuple[int, object]] = [
        (index, Outcome(value=view, created=index % 2 == 0, replayed=index == 3))
        for index, view in enumerate(views)
    ]
    pairs += [
        (10, [Outcome(value=entry(2)), Outcome(value=entry(3), replayed=True)]),
        (11, short),
        (12, failed),
        (13, ValueError("a crash")),
        (14, Outcome(value=c.Price(amount="1", currency="USD"))),  # a type not listed: pickled
    ]
    [message] = answers_messages(Stats(1, 2, 3, 4, 5, 6, 7, 8), pairs, bytes_budget=1024 * 1024)
    stats, decoded = decode_answers(body_of(message))
    assert stats == Stats(1, 2, 3, 4, 5, 6, 7, 8)
    assert [token for token, _ in decoded] == [token for token, _ in pairs]
    for (_, sent), (_, got) in zip(pairs[:6], decoded[:6], strict=True):
        assert got == sent
    assert decoded[0][1].value.expires_at.utcoffset() == dt.timedelta(hours=2)
    got_short, got_failed, crash = decoded[6][1], decoded[7][1], decoded[8][1]
    assert isinstance(got_short, InsufficientCreditsError)
    assert (got_short.detail, got_short.available, got_short.code) == ("not enough", 4, short.code)
    assert isinstance(got_failed, AtomicBatchFailedError) and got_failed.index == 1
    assert isinstance(got_failed.cause, InsufficientCreditsError)
    assert isinstance(crash, RuntimeError) and "ValueError: a crash" in str(crash)
    assert decoded[9][1] == pairs[9][1]


@pytest.mark.parametrize(
    "command", ONE_OF_EACH, ids=lambda envelope: type(envelope.command).__name__
)
def test_each_command_alone_round_trips(command: c.Envelope[c.Command]) -> None:
    [(token, atomic, [got])] = decode_works(
        body_of(works_message([encode_work(7, False, [command])]))
    )
    assert (token, atomic, got) == (7, False, command)


def test_a_large_batch_of_answers_goes_in_several_messages_each_under_the_budget() -> None:
    pairs = [(token, Outcome(value=entry(token))) for token in range(1, 301)]
    messages = answers_messages(Stats(5, 6, 7, 8), pairs, bytes_budget=20_000)
    assert len(messages) > 1
    assert all(len(message) <= 20_000 + 2_000 for message in messages)  # one answer over, at most
    decoded = [decode_answers(body_of(message)) for message in messages]
    assert all(stats == Stats(5, 6, 7, 8) for stats, _ in decoded)
    assert [token for _, answers in decoded for token, _ in answers] == list(range(1, 301))
    assert decode_answers(body_of(answers_messages(Stats(), [], 10)[0])) == (Stats(), [])


class _Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("no")


def test_an_answer_that_cannot_be_encoded_or_decoded_fails_its_own_caller_only() -> None:
    pairs: list[tuple[int, Any]] = [(1, _Unpicklable("x")), (2, Outcome(value=entry(2)))]
    [message] = answers_messages((0, 0, 0, 0), pairs, bytes_budget=1024 * 1024)
    _, decoded = decode_answers(body_of(message))
    assert isinstance(decoded[0][1], RuntimeError)  # a plain error travels instead
    assert decoded[1][1] == pairs[1][1]
    bad = msgspec.json.encode([[0, 0, 0, 0], [[3, 2, [], b"not a pickle"], [4, 0, [], b""]]])
    _, answers = decode_answers(bad)
    assert [type(result) for _, result in answers] == [RuntimeError, RuntimeError]


def test_a_restarted_writers_counters_add_up_and_its_cache_is_the_new_childs() -> None:
    died = Stats(1, 10, 2, 500, apply_us=7, commit_us=8, queued_us=9, works_answered=10)
    now = Stats(3, 30, 0, 40, apply_us=1, commit_us=2, queued_us=3, works_answered=30)
    assert died.plus(now) == Stats(4, 40, 2, 40, 8, 10, 12, 40)

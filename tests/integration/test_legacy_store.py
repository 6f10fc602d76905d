"""A store written before the re-layout (tests/fixtures/ledger_v1, see its README) keeps its
meaning: its events, snapshots and stored answers read, replay and audit as they did when they
were written, and old accounts, holds, consumptions, idempotency keys and payment refs go on
working. Whoever moves a module updates the imports and STORED_CLASSES, never expected.json.

The writer's clock stands where the fixture's scenario left it, so what had expired then has
expired now and nothing more.
"""

from __future__ import annotations

import contextlib
import functools
import json
import operator
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.utils import get_topic, resolve_topic

from api.roles.database import ensure_schema
from ledger.accounts.account import Account
from ledger.accounts.consumptions import Consumption
from ledger.accounts.holds import HoldRecord
from ledger.accounts.views import account_view
from ledger.areas import REGISTRY
from ledger.commands import AccountCommand, Envelope
from ledger.errors import (
    HoldNotActiveError,
    IdempotencyKeyReusedError,
    PaymentAlreadyCreditedError,
    RefundExceedsRefundableError,
)
from ledger.ids import api_key_aggregate_id, tenant_aggregate_id
from ledger.store.application import Ledger
from ledger.store.transcoder import new_mapper
from ledger.tenants.api_keys import ApiKeyIndex
from ledger.tenants.commands import RevokeApiKey
from ledger.tenants.tenant import Tenant
from ledger.tenants.views import api_key_view
from ledger.writer.writer import Writer
from projections.audit import compare_with_read_models, replay
from projections.follower import Follower
from tests import envelopes as c
from tests.fixtures.ledger_v1.load import load_fixture, read_expected, read_rows

EXPECTED = read_expected()
SCENARIO = EXPECTED["scenario"]
CLOCK_END = datetime.fromisoformat(EXPECTED["clock"]["end"])
COMMAND_UNION: Any = functools.reduce(operator.or_, REGISTRY.command_types)
# The class that plays each stored topic's part now, by the name expected.json gives it.
STORED_CLASSES: dict[str, type] = {
    "Account": Account,
    "Account.Opened": Account.Opened,
    "Account.CreditsGranted": Account.CreditsGranted,
    "Account.CreditsPurchased": Account.CreditsPurchased,
    "Account.CreditsConsumed": Account.CreditsConsumed,
    "Account.CreditsRefunded": Account.CreditsRefunded,
    "Account.HoldPlaced": Account.HoldPlaced,
    "Account.HoldCaptured": Account.HoldCaptured,
    "Account.HoldReleased": Account.HoldReleased,
    "Account.HoldExpired": Account.HoldExpired,
    "Account.LotExpired": Account.LotExpired,
    "Account.BalanceAdjusted": Account.BalanceAdjusted,
    "Tenant": Tenant,
    "Tenant.Created": Tenant.Created,
    "Tenant.Updated": Tenant.Updated,
    "Tenant.ApiKeyCreated": Tenant.ApiKeyCreated,
    "Tenant.ApiKeyRevoked": Tenant.ApiKeyRevoked,
    "ApiKeyIndex": ApiKeyIndex,
    "ApiKeyIndex.Created": ApiKeyIndex.Created,
    "Consumption": Consumption,
    "Consumption.Recorded": Consumption.Recorded,
    "Consumption.Refunded": Consumption.Refunded,
    "HoldRecord": HoldRecord,
    "HoldRecord.Placed": HoldRecord.Placed,
    "HoldRecord.Ended": HoldRecord.Ended,
    "Snapshot": Snapshot,
}


def as_json(value: Any) -> Any:
    return json.loads(msgspec.json.encode(value))


def to_command(data: dict[str, Any]) -> Envelope[Any]:
    """A request as its JSON was written then (the tenant among the command's fields), decoded
    as the API decodes it now: the tenant in the envelope, the rest the command."""
    fields = dict(data)
    tenant_id = fields["tenant_id"] if fields["op"] == "create_tenant" else fields.pop("tenant_id")
    command = msgspec.json.decode(json.dumps(fields), type=COMMAND_UNION)
    return Envelope(tenant_id=tenant_id, command=command)


def requests_of(kind: str) -> list[dict[str, Any]]:
    return [request for request in SCENARIO["requests"] if request["kind"] == kind]


def old_view(tenant_id: str, account_id: str) -> dict[str, Any]:
    return next(
        account["view"]
        for account in EXPECTED["accounts"]
        if (account["tenant_id"], account["account_id"]) == (tenant_id, account_id)
    )


@pytest.fixture(scope="module")
def shared_schema(database_url: str) -> str:
    """One loaded store for the tests that only read it (a read records nothing)."""
    name = f"v1_{secrets.token_hex(6)}"
    ensure_schema(database_url, name)
    load_fixture(database_url, name)
    return name


@pytest.fixture
def loaded_schema(database_url: str, schema: str) -> str:
    """A loaded store of the test's own, for the tests that write."""
    load_fixture(database_url, schema)
    return schema


@contextlib.asynccontextmanager
async def cold_writer(database_url: str, schema: str) -> AsyncIterator[Writer]:
    """A new Ledger and Writer: every aggregate comes from the store."""
    ledger = Ledger(database_url, schema)
    writer = Writer(ledger, clock=lambda: CLOCK_END)
    writer.start()
    try:
        yield writer
    finally:
        await writer.stop()
        ledger.close()


async def audit(database_url: str, schema: str) -> dict[str, dict[str, Any]]:
    """Read models caught up by a follower, compared with each tenant's replay."""
    conn = await asyncpg.connect(database_url)
    try:
        follower = Follower(database_url, schema, new_mapper())
        await follower.create_tables(conn)
        await follower.catch_up(conn)
        return {
            tenant_id: await compare_with_read_models(conn, schema, new_mapper(), tenant_id)
            for tenant_id in EXPECTED["tenants"]
        }
    finally:
        await conn.close()


async def replays(database_url: str, schema: str) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        return {
            tenant_id: as_json(
                [entry async for entry in replay(conn, schema, new_mapper(), tenant_id)]
            )
            for tenant_id in EXPECTED["tenants"]
        }
    finally:
        await conn.close()


# ------------------------------------------------------------------- reading


async def test_old_accounts_read_as_they_did_when_stored(
    database_url: str, shared_schema: str
) -> None:
    async with cold_writer(database_url, shared_schema) as writer:
        for account in EXPECTED["accounts"]:
            outcome = await writer.submit(
                c.GetAccount(tenant_id=account["tenant_id"], account_id=account["account_id"])
            )
            assert as_json(outcome.value) == account["view"], account["account_id"]


async def test_old_holds_read_as_they_did_when_stored(
    database_url: str, shared_schema: str
) -> None:
    async with cold_writer(database_url, shared_schema) as writer:
        for name, hold in EXPECTED["holds"].items():
            outcome = await writer.submit(
                c.GetHold(
                    tenant_id=hold["tenant_id"],
                    account_id=hold["account_id"],
                    hold_id=hold["hold_id"],
                )
            )
            assert as_json(outcome.value) == hold["view"], name


async def test_old_tenants_read_as_they_did_when_stored(
    database_url: str, shared_schema: str
) -> None:
    async with cold_writer(database_url, shared_schema) as writer:
        for tenant_id, tenant in EXPECTED["tenants"].items():
            outcome = await writer.submit(c.GetTenant(tenant_id=tenant_id))
            assert as_json(outcome.value) == tenant["view"], tenant_id


def test_old_api_keys_are_found_by_their_hash_with_their_scopes_expiry_and_revocation(
    database_url: str, shared_schema: str
) -> None:
    ledger = Ledger(database_url, shared_schema)
    try:
        for tenant_id, tenant in EXPECTED["tenants"].items():
            stored = ledger.repository.get(tenant_aggregate_id(tenant_id))
            for key in tenant["api_keys"]:
                index = ledger.repository.get(api_key_aggregate_id(key["key_hash"]))
                assert (index.tenant_id, index.key_id) == (tenant_id, key["key_id"])
                assert as_json(api_key_view(stored.api_keys[key["key_id"]])) == key["view"]
    finally:
        ledger.close()


def test_the_stored_snapshot_alone_rebuilds_its_account_as_of_its_version(
    database_url: str, shared_schema: str
) -> None:
    ledger = Ledger(database_url, shared_schema)
    try:
        assert ledger.snapshots is not None
        assert EXPECTED["snapshots"], "the fixture has a snapshot"
        for expected in EXPECTED["snapshots"]:
            (snapshot,) = ledger.snapshots.get(UUID(expected["originator_id"]), desc=True, limit=1)
            assert snapshot.originator_version == expected["originator_version"]
            assert as_json(account_view(snapshot.mutate(None))) == expected["view"]
    finally:
        ledger.close()


async def test_the_snapshotted_account_loads_cold_with_its_balance(
    database_url: str, shared_schema: str
) -> None:
    async with cold_writer(database_url, shared_schema) as writer:
        for snapshot in EXPECTED["snapshots"]:
            outcome = await writer.submit(
                c.GetAccount(tenant_id=snapshot["tenant_id"], account_id=snapshot["account_id"])
            )
            view = old_view(snapshot["tenant_id"], snapshot["account_id"])
            assert outcome.value.version > snapshot["originator_version"]  # events after it too
            assert (outcome.value.balance, as_json(outcome.value)) == (view["balance"], view)


# ------------------------------------------------------------ replay and audit


async def test_a_replay_of_the_old_store_gives_the_entries_it_gave_when_stored(
    database_url: str, shared_schema: str
) -> None:
    assert await replays(database_url, shared_schema) == EXPECTED["replays"]


async def test_read_models_built_from_the_old_store_agree_with_its_replay(
    database_url: str, shared_schema: str
) -> None:
    for tenant_id, report in (await audit(database_url, shared_schema)).items():
        assert report["ok"], report["mismatches"]
        assert report["entries"] == len(EXPECTED["replays"][tenant_id])


# ------------------------------------------------------------------ extending


async def new_commands_on_old_accounts(writer: Writer) -> None:
    """A grant and a consumption on every old account, and a refund of every old consumption:
    of what is left to refund, or refused when nothing is."""
    for tenant_id, account_id in SCENARIO["accounts"]:
        account = {"tenant_id": tenant_id, "account_id": account_id}
        balance = old_view(tenant_id, account_id)["balance"]
        granted = await writer.submit(c.GrantCredits(**account, amount=100, reason="new grant"))
        consumed = await writer.submit(c.ConsumeCredits(**account, amount=30, operation="new.op"))
        assert (granted.value.balance, consumed.value.balance) == (balance + 100, balance + 70)
    for name, consumption in SCENARIO["consumptions"].items():
        refund = c.RefundConsumption(
            tenant_id=consumption["tenant_id"],
            account_id=consumption["account_id"],
            consumption_id=consumption["consumption_id"],
            reason="refund of an old consumption",
        )
        left = consumption["amount"] - consumption["refunded"]
        if left == 0:
            with pytest.raises(RefundExceedsRefundableError):
                await writer.submit(refund)
        else:
            outcome = await writer.submit(refund)
            assert (outcome.value.type, outcome.value.amount) == ("refund", left), name


async def holds_on_old_accounts(writer: Writer) -> None:
    """Ended old holds refuse a capture; the active old one and a new one are captured."""
    for name, hold in EXPECTED["holds"].items():
        capture = c.CaptureHold(
            tenant_id=hold["tenant_id"], account_id=hold["account_id"], hold_id=hold["hold_id"]
        )
        if hold["view"]["status"] == "active":
            outcome = await writer.submit(capture)
            assert outcome.value.amount == -hold["view"]["amount"], name
        else:
            with pytest.raises(HoldNotActiveError):
                await writer.submit(capture)
    carol = {"tenant_id": "acme", "account_id": "carol"}
    placed = await writer.submit(c.PlaceHold(**carol, amount=40, operation="new.job"))
    hold_id = placed.value.hold_id
    await writer.submit(c.CaptureHold(**carol, hold_id=hold_id, amount=25))
    read = await writer.submit(c.GetHold(**carol, hold_id=hold_id))
    assert (read.value.status, read.value.captured) == ("captured", 25)


async def test_old_accounts_take_new_grants_consumptions_and_refunds_of_old_consumptions(
    database_url: str, loaded_schema: str
) -> None:
    async with cold_writer(database_url, loaded_schema) as writer:
        await new_commands_on_old_accounts(writer)


async def test_an_ended_old_hold_cannot_be_captured_but_an_active_old_one_and_a_new_one_can(
    database_url: str, loaded_schema: str
) -> None:
    async with cold_writer(database_url, loaded_schema) as writer:
        await holds_on_old_accounts(writer)


async def test_a_retry_with_an_old_idempotency_key_replays_the_stored_answer(
    database_url: str, loaded_schema: str
) -> None:
    async with cold_writer(database_url, loaded_schema) as writer:
        for request in requests_of("idempotency"):
            outcome = await writer.submit(to_command(request["command"]))
            ref = outcome.entry_ref
            assert outcome.replayed, request["name"]
            assert as_json(outcome.value) == request["answer"], request["name"]
            assert (None if ref is None else [str(ref[0]), ref[1]]) == request["entry_ref"]


def another_request(envelope: Envelope[Any]) -> Envelope[Any]:
    """The same key with something else asked."""
    if isinstance(envelope.command, AccountCommand):
        return c.changed(envelope, account_id="someone-else")
    if isinstance(envelope.command, RevokeApiKey):
        return c.changed(envelope, key_id="another-key")
    return c.changed(envelope, name="another name")


async def test_an_old_idempotency_key_with_a_different_request_is_refused(
    database_url: str, loaded_schema: str
) -> None:
    async with cold_writer(database_url, loaded_schema) as writer:
        for request in requests_of("idempotency"):
            with pytest.raises(IdempotencyKeyReusedError):
                await writer.submit(another_request(to_command(request["command"])))


async def test_an_old_payment_ref_is_not_credited_again(
    database_url: str, loaded_schema: str
) -> None:
    async with cold_writer(database_url, loaded_schema) as writer:
        for request in requests_of("payment"):
            envelope = c.changed(to_command(request["command"]), idempotency_key=None)
            tenant_id, account_id = envelope.tenant_id, envelope.command.account_id
            balance = old_view(tenant_id, account_id)["balance"]
            outcome = await writer.submit(envelope)
            assert outcome.replayed and as_json(outcome.value) == request["answer"]
            read = await writer.submit(c.GetAccount(tenant_id=tenant_id, account_id=account_id))
            assert read.value.balance == balance, request["name"]
            other = next(
                other_id
                for other_tenant, other_id in SCENARIO["accounts"]
                if other_tenant == tenant_id and other_id != account_id
            )
            with pytest.raises(PaymentAlreadyCreditedError):
                await writer.submit(c.changed(envelope, account_id=other))


async def test_after_new_commands_the_old_store_still_audits_and_replays_its_old_entries_first(
    database_url: str, loaded_schema: str
) -> None:
    async with cold_writer(database_url, loaded_schema) as writer:
        await new_commands_on_old_accounts(writer)
        await holds_on_old_accounts(writer)
    for report in (await audit(database_url, loaded_schema)).values():
        assert report["ok"], report["mismatches"]
    last_old_position = max(row["notification_id"] for row in read_rows("events"))
    for tenant_id, entries in (await replays(database_url, loaded_schema)).items():
        old = EXPECTED["replays"][tenant_id]
        assert entries[: len(old)] == old
        assert len(entries) > len(old)
        assert all(entry["position"] > last_old_position for entry in entries[len(old) :])


# ---------------------------------------------------------- what is pinned


@pytest.mark.parametrize("sample", EXPECTED["commands"], ids=lambda sample: sample["name"])
def test_a_request_keeps_the_fingerprint_it_had_when_answers_were_stored(
    sample: dict[str, Any],
) -> None:
    assert c.fingerprint(to_command(sample["json"])) == sample["fingerprint"]


def test_every_stored_answer_has_the_fingerprint_of_its_request() -> None:
    stored = {row["id"]: row["fingerprint"] for row in read_rows("results")}
    assert set(stored) == {request["result_id"] for request in SCENARIO["requests"]}
    for request in SCENARIO["requests"]:
        command = to_command(request["command"])
        assert c.fingerprint(command) == stored[request["result_id"]], request["name"]


def test_every_stored_topic_resolves_to_the_class_that_plays_its_part() -> None:
    assert set(STORED_CLASSES) == set(EXPECTED["class_topics"])
    assert set(EXPECTED["class_topics"].values()) == set(EXPECTED["topics"])
    stored = {row["topic"] for row in read_rows("events") + read_rows("snapshots")}
    assert stored <= set(EXPECTED["topics"])
    for name, topic in EXPECTED["class_topics"].items():
        assert resolve_topic(topic) is STORED_CLASSES[name], topic


def test_the_current_classes_write_the_stored_topics() -> None:
    written = {name: get_topic(cls) for name, cls in STORED_CLASSES.items()}
    assert written == EXPECTED["class_topics"]

"""Refunds on real PostgreSQL: a consumption's record is made from its event at the first
refund, so it must behave as if it had always been there, on any writer."""

from __future__ import annotations

import asyncio

import pytest

from ledger.errors import ConsumptionNotFoundError, RefundExceedsRefundableError
from ledger.store.application import Ledger
from ledger.writer.writer import Writer
from tests import envelopes as c
from tests.integration.helpers import balance, open_funded, running_writer

T = "refunds"


def refund(consumption_id: str, amount: int | None, account_id: str = "a") -> c.RefundConsumption:
    return c.RefundConsumption(
        tenant_id=T,
        account_id=account_id,
        consumption_id=consumption_id,
        amount=amount,
        reason="failed task",
    )


async def consume(writer: Writer, amount: int, account_id: str = "a") -> str:
    outcome = await writer.submit(
        c.ConsumeCredits(tenant_id=T, account_id=account_id, amount=amount, operation="op")
    )
    return outcome.value.consumption_id  # type: ignore[attr-defined]


async def test_a_consumption_is_refundable_in_parts_up_to_its_amount_from_a_cold_writer(
    writer: Writer, ledger: Ledger
) -> None:
    await open_funded(writer, T, {"a": 100})
    consumption_id = await consume(writer, 30)
    async with running_writer(ledger) as cold:
        await cold.submit(refund(consumption_id, 10))
        await cold.submit(refund(consumption_id, 15))
        with pytest.raises(RefundExceedsRefundableError):
            await cold.submit(refund(consumption_id, 6))
        await cold.submit(refund(consumption_id, None))  # the 5 left
        with pytest.raises(RefundExceedsRefundableError):
            await cold.submit(refund(consumption_id, None))
        assert await balance(cold, T, "a") == 100
    with pytest.raises(RefundExceedsRefundableError):
        await writer.submit(refund(consumption_id, 1))  # the first writer's cache is stale


async def test_a_consumption_id_refunds_only_on_its_own_account_and_forged_ids_are_not_found(
    writer: Writer,
) -> None:
    await open_funded(writer, T, {"a": 100, "b": 100})
    consumption_id = await consume(writer, 30)
    random_part, _, version = consumption_id.rpartition(".")
    other_random = random_part[:-1] + ("1" if random_part[-1] == "0" else "0")
    forged = [
        f"{random_part}.{int(version) - 1}",  # the grant before it
        f"{random_part}.{int(version) + 5}",  # no such event
        f"{other_random}.{version}",  # the right event, another id
        "not-a-consumption",
        f"{random_part}.{'9' * 40}",
        f"{random_part}.²",  # a digit to str.isdigit, not to int()
        f"{random_part}.٣",  # an Arabic-Indic 3
    ]
    for consumption in forged:
        with pytest.raises(ConsumptionNotFoundError):
            await writer.submit(refund(consumption, 1))
    with pytest.raises(ConsumptionNotFoundError):
        await writer.submit(refund(consumption_id, 1, account_id="b"))
    assert await balance(writer, T, "a") == 70


async def test_first_refunds_of_one_consumption_on_two_writers_at_once_never_exceed_it(
    writer: Writer, ledger: Ledger
) -> None:
    await open_funded(writer, T, {"a": 1_000})
    consumption_id = await consume(writer, 100)
    async with running_writer(ledger) as other:
        results = await asyncio.gather(
            *(w.submit(refund(consumption_id, 30)) for w in (writer, other) for _ in range(3)),
            return_exceptions=True,
        )
    refunded = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, RefundExceedsRefundableError)]
    assert len(refunded) == 3 and len(refused) == 3, results
    assert await balance(writer, T, "a") == 990


async def test_a_refused_first_refund_changes_nothing_and_does_not_rerun_its_batch(
    writer: Writer,
) -> None:
    await open_funded(writer, T, {"a": 100})
    consumption_id = await consume(writer, 10)
    grant = c.GrantCredits(tenant_id=T, account_id="a", amount=5, reason="top up")
    reruns_before = writer.batches_rerun
    results = await writer.submit_each([grant, refund(consumption_id, 11)])
    assert isinstance(results[1], RefundExceedsRefundableError)
    assert writer.batches_rerun == reruns_before  # the grant was not applied twice over
    await writer.submit(refund(consumption_id, 10))  # the record is made now, whole
    assert await balance(writer, T, "a") == 105

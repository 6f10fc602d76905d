"""Scenario 8 of `make bench`: the group-commit writer alone, in its own process, without HTTP.

Run by tests/bench/run.py as `python tests/bench/writer_alone.py URL SCHEMA SECONDS`; prints one
JSON line. It opens its own tenant and accounts, then measures for SECONDS each:
- `batch`: `Writer.submit_each` of 1,000 consumes at a time (scenario 3 without HTTP),
- `concurrent`: 64 tasks each submitting one consume at a time (scenario 1 without HTTP),
with the process's CPU time per consume, so the figures separate the writer's cost from the
HTTP stack's.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import sys
import time

from api.roles.garbage_collector import tune_collector
from ledger.store.application import Ledger
from ledger.writer.writer import Writer
from tests import envelopes as c

TENANT = f"writer-{secrets.token_hex(4)}"  # a tenant of its own per run
ACCOUNTS = 10_000
BATCH = 1_000
SUBMITTERS = 64


def consume(account: int, key: str) -> c.ConsumeCredits:
    return c.ConsumeCredits(
        tenant_id=TENANT,
        account_id=f"w-{account}",
        amount=1,
        operation="BENCH",
        idempotency_key=key,
    )


async def measure_batches(writer: Writer, seconds: float, prefix: str) -> dict[str, float]:
    """`prefix` keeps each measurement's idempotency keys its own: a key seen before would be a
    replay, another path than the new consume this measures."""
    rng = random.Random(1)
    done, latencies = 0, []
    cpu, started = time.process_time(), time.perf_counter()
    while time.perf_counter() - started < seconds:
        commands = [consume(rng.randrange(ACCOUNTS), f"{prefix}-{done + i}") for i in range(BATCH)]
        sent = time.perf_counter()
        results = await writer.submit_each(commands)
        latencies.append((time.perf_counter() - sent) * 1000)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise RuntimeError(f"{len(failed)} consumes failed: {failed[0]!r}")
        done += BATCH
    elapsed = time.perf_counter() - started
    return summary(done, elapsed, time.process_time() - cpu, latencies)


async def measure_concurrent(writer: Writer, seconds: float) -> dict[str, float]:
    done, latencies = 0, []
    deadline = time.perf_counter() + seconds

    async def submitter(index: int) -> None:
        nonlocal done
        rng = random.Random(index)
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            sent = time.perf_counter()
            await writer.submit(consume(rng.randrange(ACCOUNTS), f"c-{index}-{n}"))
            latencies.append((time.perf_counter() - sent) * 1000)
            done += 1

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(submitter(i) for i in range(SUBMITTERS)))
    elapsed = time.perf_counter() - started
    return summary(done, elapsed, time.process_time() - cpu, latencies)


def summary(done: int, seconds: float, cpu_s: float, latencies: list[float]) -> dict[str, float]:
    latencies.sort()
    return {
        "consumes": done,
        "per_s": done / seconds,
        "cpu_us_per_consume": cpu_s / done * 1e6,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


async def main(database_url: str, schema: str, seconds: float) -> None:
    ledger = Ledger(database_url, schema)
    writer = Writer(ledger)
    writer.start()
    try:
        await writer.submit(
            c.CreateTenant(
                tenant_id=TENANT, name="Writer", settings=c.TenantSettings(signup_bonus=10**12)
            )
        )
        for start in range(0, ACCOUNTS, BATCH):
            await writer.submit_each(
                [
                    c.OpenAccount(tenant_id=TENANT, account_id=f"w-{n}")
                    for n in range(start, start + BATCH)
                ]
            )
        tune_collector()
        await measure_batches(writer, 2, "warm")  # warm: every account cached, as in the service
        result = {
            "batch": await measure_batches(writer, seconds, "batch"),
            "concurrent": await measure_concurrent(writer, seconds),
        }
    finally:
        await writer.stop()
        ledger.close()
    print("WRITER_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))

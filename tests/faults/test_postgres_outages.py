"""PostgreSQL, the record, goes away mid-burst: restarted, or down for 15 s.

While it is down every command is answered 503 `unavailable` within 2 s (never 500, never a
hang) and readiness says 503; within 1 s of it answering again commands succeed, and the read
models and NATS hold what is committed from then on: every role reconnects by itself. Nothing
acknowledged is lost or applied twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.faults.burst import Burst
from tests.faults.deployment import Deployment
from tests.faults.figures import Figures, broken_promises
from tests.faults.nats_servers import NatsNode
from tests.faults.postgres import PrivatePostgres

OUTAGE_S = 15.0
# Every role is doing its work again within this of the store answering (issue 18).
RECONNECT_WITHIN_S = 1.0
# Every command sent while the store is down is answered (503) within this (issue 18).
ANSWER_WITHIN_S = 2.0


def readiness_said_ready_while_the_store_was_down(figures: Figures) -> list[str]:
    said = figures.get("ready_while_down", {})
    if said.get("200"):
        return [f"/health/ready answered 200 while the store was down: {said}"]
    return []


async def test_a_postgres_restart_mid_burst_loses_nothing_and_every_role_reconnects_within_1_s(
    postgres: PrivatePostgres,
    nats_server: NatsNode,
    deployment_of: Callable[..., Deployment],
    figures: Figures,
) -> None:
    deployment = deployment_of([nats_server.url])
    serve = await deployment.start_serve()
    tenant = await deployment.open_tenant(serve.url)
    async with Burst(deployment, tenant, [serve.url], figures) as burst:
        await burst.warm_up()
        burst.fault_at(time.monotonic())
        await asyncio.to_thread(postgres.restart, "fast")
        burst.back_at(time.monotonic())
        await burst.keep_going()
    figures.conclude(broken_promises(figures, reconnect_within_s=RECONNECT_WITHIN_S))


async def test_a_15_s_postgres_outage_answers_503_within_2_s_and_every_role_is_back_within_1_s(
    postgres: PrivatePostgres,
    nats_server: NatsNode,
    deployment_of: Callable[..., Deployment],
    figures: Figures,
) -> None:
    deployment = deployment_of([nats_server.url])
    serve = await deployment.start_serve()
    tenant = await deployment.open_tenant(serve.url)
    async with Burst(
        deployment, tenant, [serve.url], figures, answer_within_s=ANSWER_WITHIN_S
    ) as burst:
        await burst.warm_up()
        down_at, up_at = await asyncio.to_thread(postgres.outage, OUTAGE_S, "immediate")
        burst.fault_at(down_at)
        burst.back_at(up_at)
        await burst.keep_going()
    figures.conclude(
        broken_promises(
            figures, reconnect_within_s=RECONNECT_WITHIN_S, answer_within_s=ANSWER_WITHIN_S
        )
        + readiness_said_ready_while_the_store_was_down(figures)
    )

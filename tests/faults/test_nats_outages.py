"""NATS, the copy, goes away mid-burst: a single server down for longer than the stream's
duplicate window, or one node of three under an R3 stream lost for good.

Commands go on committing (NATS is not on their path) and readiness stays 200 (a NATS outage
alone is reported in its body, docs/api.md); afterwards the stream holds every entry exactly once,
in order per account: the relay resumes from its position, and JetStream's duplicate window
cannot be what keeps a re-sent entry out once the outage outlasts it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.faults import jetstream
from tests.faults.burst import Burst
from tests.faults.deployment import Deployment
from tests.faults.figures import Figures, broken_promises
from tests.faults.nats_servers import NatsCluster, NatsNode

# Shortened from the relay's 120 s so that an outage can outlast it (LEDGER_NATS_DUPLICATE_WINDOW_S).
DUPLICATE_WINDOW_S = 1.0
OUTAGE_S = 3 * DUPLICATE_WINDOW_S + 1.0
REPLICAS = 3
LEADER_MOVE_TIMEOUT_S = 10.0


def readiness_said_unready_for_nats_alone(figures: Figures) -> list[str]:
    said = figures.get("ready_while_down", {})
    if set(said) - {"200"}:
        return [f"/health/ready answered other than 200 while only NATS was down: {said}"]
    return []


async def test_a_nats_outage_longer_than_the_duplicate_window_leaves_every_entry_on_the_stream_once(
    nats_server: NatsNode, deployment_of: Callable[..., Deployment], figures: Figures
) -> None:
    deployment = deployment_of(
        [nats_server.url], LEDGER_NATS_DUPLICATE_WINDOW_S=str(DUPLICATE_WINDOW_S)
    )
    serve = await deployment.start_serve()
    tenant = await deployment.open_tenant(serve.url)
    async with Burst(deployment, tenant, [serve.url], figures) as burst:
        await burst.warm_up()
        nats_server.stop(kill=True)
        burst.fault_at(time.monotonic())
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(nats_server.start)
        burst.back_at(time.monotonic())
        await burst.keep_going()
    nc = await jetstream.connect(deployment.nats_urls)
    config = await jetstream.stream_config(nc, deployment.stream_name)
    await nc.close()
    window = config.duplicate_window if config is not None else None
    figures.update(duplicate_window_s=window, outage_over_window=OUTAGE_S / DUPLICATE_WINDOW_S)
    broken = []
    if window != DUPLICATE_WINDOW_S:
        broken.append(
            f"the stream's duplicate window is {window} s, not LEDGER_NATS_DUPLICATE_WINDOW_S "
            f"= {DUPLICATE_WINDOW_S} s: the outage did not outlast it"
        )
    figures.conclude(
        broken + broken_promises(figures) + readiness_said_unready_for_nats_alone(figures)
    )


async def move_leader_off(nc: object, stream_name: str, node: str) -> str | None:
    """The stream's leader, moved off `node` (the one the service connects to) if it is there,
    so that losing the leader does not also cut the relay's only server."""
    leader = await jetstream.stream_leader(nc, stream_name)
    if leader != node:
        return leader
    await jetstream.step_down(nc, stream_name)
    deadline = time.monotonic() + LEADER_MOVE_TIMEOUT_S
    while time.monotonic() < deadline:
        leader = await jetstream.stream_leader(nc, stream_name)
        if leader not in (None, node):
            return leader
        await asyncio.sleep(0.1)
    return node  # it could not move (one replica): the node it lives on is lost


async def test_an_r3_stream_losing_one_of_three_nodes_mid_burst_misses_nothing(
    nats_cluster: NatsCluster, deployment_of: Callable[..., Deployment], figures: Figures
) -> None:
    urls = [node.url for node in nats_cluster.nodes]
    deployment = deployment_of(urls, LEDGER_NATS_STREAM_REPLICAS=str(REPLICAS))
    serve = await deployment.start_serve()
    tenant = await deployment.open_tenant(serve.url)
    nc = await jetstream.connect(urls)
    try:
        async with Burst(deployment, tenant, [serve.url], figures) as burst:
            await burst.warm_up()
            leader = await move_leader_off(nc, deployment.stream_name, nats_cluster.nodes[0].name)
            assert leader is not None, "the stream has no leader"
            nats_cluster.node(leader).stop(kill=True)
            burst.fault_at(time.monotonic())
            burst.back_at(time.monotonic())  # nothing comes back: the other two carry on
            await burst.keep_going()
        config = await jetstream.stream_config(nc, deployment.stream_name)
    finally:
        await nc.close()
    replicas = config.num_replicas if config is not None else None
    figures.update(node_lost=leader, stream_replicas=replicas)
    broken = [] if replicas == REPLICAS else [f"the stream has {replicas} replicas, not {REPLICAS}"]
    figures.conclude(broken + broken_promises(figures))

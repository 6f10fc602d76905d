"""kill -9 of each role of `serve` mid-burst: the writer child, the follower, the relay, and
serve itself (then started again on the same port). Whatever dies, every acknowledged command
is in the ledger exactly once, the read models and NATS catch up, and nothing answers 500."""

from __future__ import annotations

from collections.abc import Callable

from tests.faults.burst import Burst
from tests.faults.deployment import Deployment
from tests.faults.figures import Figures, broken_promises
from tests.faults.nats_servers import NatsNode


async def kill_a_child_mid_burst(
    role: str,
    deployment_of: Callable[..., Deployment],
    nats_server: NatsNode,
    figures: Figures,
) -> list[str]:
    deployment = deployment_of([nats_server.url])
    serve = await deployment.start_serve()
    tenant = await deployment.open_tenant(serve.url)
    async with Burst(deployment, tenant, [serve.url], figures) as burst:
        await burst.warm_up()
        killed, killed_at = serve.kill_role(role)
        burst.fault_at(killed_at)
        burst.back_at(killed_at)
        await burst.keep_going()
    replaced = [pid for pid in serve.roles().get(role, []) if pid != killed]
    figures.update(killed_pid=killed, replaced_by=replaced)
    return [] if replaced else [f"no new {role} runs after the kill"]


async def test_the_writer_killed_mid_burst_loses_no_acknowledged_command_and_applies_none_twice(
    nats_server: NatsNode, deployment_of: Callable[..., Deployment], figures: Figures
) -> None:
    broken = await kill_a_child_mid_burst("writer", deployment_of, nats_server, figures)
    figures.conclude(broken + broken_promises(figures))


async def test_the_follower_killed_mid_burst_is_replaced_and_the_read_models_match_the_event_store(
    nats_server: NatsNode, deployment_of: Callable[..., Deployment], figures: Figures
) -> None:
    broken = await kill_a_child_mid_burst("follower", deployment_of, nats_server, figures)
    figures.conclude(broken + broken_promises(figures))


async def test_the_relay_killed_mid_burst_is_replaced_and_nats_misses_nothing(
    nats_server: NatsNode, deployment_of: Callable[..., Deployment], figures: Figures
) -> None:
    broken = await kill_a_child_mid_burst("relay", deployment_of, nats_server, figures)
    figures.conclude(broken + broken_promises(figures))


async def test_serve_killed_mid_burst_and_started_again_loses_nothing_and_applies_nothing_twice(
    nats_server: NatsNode, deployment_of: Callable[..., Deployment], figures: Figures
) -> None:
    deployment = deployment_of([nats_server.url])
    serve = await deployment.start_serve()
    tenant = await deployment.open_tenant(serve.url)
    async with Burst(deployment, tenant, [serve.url], figures) as burst:
        await burst.warm_up()
        burst.fault_at(serve.kill())
        serve.start()  # same port, same database: what a process manager does
        burst.back_at(await serve.wait_ready())
        await burst.keep_going()
    figures.conclude(broken_promises(figures))

"""Two `serve` replicas on one database, the load spread over both, one lost mid-burst: serve
and every child of it SIGKILLed at once, as when its machine or container goes.

Each replica runs its own writer; one follower and one relay are active (the first replica's,
which took their advisory locks first), the other replica's stand by. When the first replica
dies its clients move to the second (as a load balancer would), the standby follower and relay
take over, and nothing acknowledged by either replica is lost or applied twice."""

from __future__ import annotations

from collections.abc import Callable

from tests.faults.burst import Burst
from tests.faults.deployment import Deployment
from tests.faults.figures import Figures, broken_promises
from tests.faults.nats_servers import NatsNode


async def test_two_serve_replicas_with_one_lost_mid_burst_lose_nothing_and_the_standbys_take_over(
    nats_server: NatsNode, deployment_of: Callable[..., Deployment], figures: Figures
) -> None:
    deployment = deployment_of([nats_server.url])
    first = await deployment.start_serve()
    second = await deployment.start_serve()
    tenant = await deployment.open_tenant(first.url)
    async with Burst(deployment, tenant, [first.url, second.url], figures) as burst:
        await burst.warm_up()
        active_before = {
            "follower": bool(first.logged("follower_active")),
            "relay": bool(first.logged("relay_active")),
        }
        killed_at = first.kill_everything()
        burst.fault_at(killed_at)
        burst.back_at(killed_at)
        await burst.keep_going()
    took_over = {
        "follower": bool(second.logged("follower_active")),
        "relay": bool(second.logged("relay_active")),
    }
    served = {url: 0 for url in burst.urls}
    for command in burst.load.commands:
        if command.outcome == "acknowledged":
            served[command.attempts[-1].url] += 1
    figures.update(
        acknowledged_by_first=served[first.url],
        acknowledged_by_second=served[second.url],
        active_on_first_before=active_before,
        active_on_second_after=took_over,
    )
    broken = [
        f"the second replica's {role} did not take over"
        for role, active in took_over.items()
        if active_before[role] and not active
    ]
    broken += [
        f"the first replica's {role} was not the active one"
        for role, on in active_before.items()
        if not on
    ]
    if not served[first.url] or not served[second.url]:
        broken.append(f"the load was not spread over both replicas: {served}")
    figures.conclude(broken + broken_promises(figures))

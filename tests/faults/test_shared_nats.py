"""Two deployments on one NATS server, the second started while the first is mid-burst.

Each has its own database, stream name and subject prefix (docs/api.md: a configured prefix
replaces the first token, `ledger`). The second joining must not disturb the first, and each
stream must hold every entry of its own deployment once, and nothing of the other's."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.faults import jetstream
from tests.faults.burst import Burst
from tests.faults.deployment import Deployment
from tests.faults.figures import Figures, broken_promises
from tests.faults.nats_servers import NatsNode

PREFIXES = ("ledger-a", "ledger-b")


async def subjects_of(deployment: Deployment) -> list[str] | None:
    nc = await jetstream.connect(deployment.nats_urls)
    try:
        config = await jetstream.stream_config(nc, deployment.stream_name)
    finally:
        await nc.close()
    return list(config.subjects) if config is not None else None


async def test_two_deployments_on_one_nats_server_each_get_every_entry_of_their_own_once(
    nats_server: NatsNode,
    deployment_of: Callable[..., Deployment],
    figures_named: Callable[[str], Figures],
) -> None:
    first, second = (
        deployment_of(
            [nats_server.url], database=prefix.replace("-", "_"), LEDGER_NATS_SUBJECT_PREFIX=prefix
        )
        for prefix in PREFIXES
    )
    first_figures, second_figures = figures_named("[first]"), figures_named("[second]")
    serve = await first.start_serve()
    tenant = await first.open_tenant(serve.url)
    async with Burst(first, tenant, [serve.url], first_figures) as burst:
        await burst.warm_up()
        burst.fault_at(time.monotonic())  # the "fault": another deployment arrives
        joining = await second.start_serve()
        burst.back_at(time.monotonic())
        joining_tenant = await second.open_tenant(joining.url)
        async with Burst(second, joining_tenant, [joining.url], second_figures) as joined:
            await joined.warm_up()
            joined.fault_at(time.monotonic())  # nothing strikes it: checked as it is
            joined.back_at(time.monotonic())
            await joined.keep_going()
        await burst.keep_going()
    all_broken = []
    for deployment, prefix, part in zip(
        (first, second), PREFIXES, (first_figures, second_figures), strict=True
    ):
        subjects = await subjects_of(deployment)
        part.update(stream_subjects=subjects)
        broken = [] if subjects == [f"{prefix}.>"] else [f"the stream takes {subjects}"]
        broken += broken_promises(part)
        part.record(broken)
        all_broken += [f"{part.name}: {rule}" for rule in broken]
    assert not all_broken, "broken promises:\n  " + "\n  ".join(all_broken)

"""A burst of load with a fault in the middle, and what it shows afterwards.

    async with Burst(deployment, tenant, urls, figures) as burst:
        await burst.warm_up()                 # commands acknowledged before the fault
        burst.fault_at(...)                   # the test strikes: kill, stop, ...
        burst.back_at(...)                    # the dependency answers again (kills: same time)
        await burst.keep_going()              # commands acknowledged after it
    # leaving: the load stops (each command resolved), the ledger settles, and everything is
    # checked (checker.py); the figures are recorded, printed and written.

Recovery, per role, is measured from `back_at`: the commands' when the first command is
acknowledged after it; the read models' and NATS's when each first holds the first entry
committed after it (the first acknowledged, not replayed, answer to an attempt sent after it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx

from tests.faults import checker, jetstream
from tests.faults.deployment import Deployment, Tenant
from tests.faults.figures import Figures
from tests.faults.load import Load
from tests.faults.progress import Progress

# Commands acknowledged before the fault, and after the service is back, at least.
WARM_UP_COMMANDS = 800
AFTER_COMMANDS = 800
# Seconds of load after the service is back, at least (and so after any fault).
AFTER_S = 2.0
PHASE_TIMEOUT_S = 60.0
# After the load: how long the read models and NATS get to hold every stored entry.
SETTLE_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
POLL_S = 0.1
# Readiness asked this long after the fault struck must tell of it.
READY_GRACE_S = 0.5
# ... and asked early enough for its answer (the service checks for up to 2 s) to be due
# before the dependency came back.
READY_ANSWER_S = 2.5


class Burst:
    def __init__(
        self,
        deployment: Deployment,
        tenant: Tenant,
        urls: list[str],
        figures: Figures,
        *,
        workers: int = 16,
        answer_within_s: float = 2.0,
    ) -> None:
        self.deployment = deployment
        self.tenant = tenant
        self.urls = urls
        self.figures = figures
        self.answer_within_s = answer_within_s
        self.load = Load(urls, tenant.headers, tenant.accounts, workers=workers)
        self.progress = Progress(urls, tenant.headers, deployment.nats_urls, deployment.stream_name)
        self.started_at = 0.0
        self.down_at: float | None = None
        self.up_at: float | None = None

    async def __aenter__(self) -> Burst:
        self.started_at = time.monotonic()
        await self.load.fund()
        self.progress.start()
        self.load.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self.load.stop()
            if exc_info[0] is None:
                await self.report()
        finally:
            await self.progress.stop()
            await self.load.close()

    # ---------------------------------------------------------------------- the phases

    async def warm_up(self, commands: int = WARM_UP_COMMANDS) -> None:
        ok = await self.load.acknowledged_since(self.started_at, commands, PHASE_TIMEOUT_S)
        assert ok, f"fewer than {commands} commands acknowledged before the fault"

    def fault_at(self, at: float) -> None:
        self.down_at = at

    def back_at(self, at: float) -> None:
        self.up_at = at

    async def keep_going(self, commands: int = AFTER_COMMANDS, seconds: float = AFTER_S) -> None:
        """Load on until `commands` more are acknowledged after the service is back, and for at
        least `seconds`; a service that does not come back ends it at PHASE_TIMEOUT_S."""
        assert self.up_at is not None
        await self.load.acknowledged_since(self.up_at, commands, PHASE_TIMEOUT_S)
        await asyncio.sleep(max(0.0, self.up_at + seconds - time.monotonic()))

    # ------------------------------------------------------------------- the reckoning

    async def report(self) -> None:
        figures = self.figures
        figures.update(**self.load.tally())
        figures.update(**self.fault_figures())
        store = checker.replay_event_store(
            self.deployment.environ,
            self.tenant.tenant_id,
            self.deployment.directory / "replay.ndjson",
        )
        stored_last = max((entry["position"] for entry in store), default=0)
        await self.settle(stored_last)
        history, audit, balances = await self.read_service()
        messages = await self.read_stream()
        findings = checker.merge(
            checker.check_entries(self.load.commands, store, self.tenant.accounts, "event_store"),
            checker.check_entries(self.load.commands, history, self.tenant.accounts, "read_models"),
            checker.same_history(store, history),
            checker.check_balances(self.load.commands, balances, store),
            checker.check_stream(store, messages),  # against the record, not its copy
        )
        figures.update(**findings.counts)
        figures.samples.update(findings.samples)
        figures.update(
            audit_ok=audit.get("ok"),
            audit={k: audit.get(k) for k in ("ok", "accounts", "entries")}
            | {"mismatches": audit.get("mismatches", [])[:5]},
            entries=len(store),
            reads=dict(Counter(str(p.status or p.error) for p in self.progress.reads)),
            reads_500=sum(1 for probe in self.progress.reads if probe.status == 500),
            duration_s=time.monotonic() - self.started_at,
        )
        figures.update(**self.recovery_figures())  # after the settling: late ones count

    async def settle(self, position: int) -> None:
        """Waits (bounded) until the read models and NATS hold `position`, as the progress
        poller sees them (it runs on, so that a late recovery is still timed)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            if min(self.progress.read_models.last, self.progress.nats.last) >= position:
                return
            await asyncio.sleep(POLL_S)

    async def read_service(self) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, int]]:
        """The history (NDJSON), the audit and every account's balance, from a live replica."""
        async with httpx.AsyncClient(timeout=READ_TIMEOUT_S, headers=self.tenant.headers) as client:
            streamed = await _get(client, self.urls, "/v1/history", accept="application/x-ndjson")
            assert streamed is not None, "no replica answered GET /v1/history"
            history = [json.loads(line) for line in streamed.text.splitlines() if line]
            verified = await _get(client, self.urls, "/v1/audit/verify")
            audit = verified.json() if verified is not None else {"ok": None}
            balances = {}
            for account_id in self.tenant.accounts:
                answer = await _get(client, self.urls, f"/v1/accounts/{account_id}")
                balances[account_id] = answer.json()["balance"] if answer is not None else -1
        return history, audit, balances

    async def read_stream(self) -> list[jetstream.Message] | None:
        nc = await jetstream.connect(self.deployment.nats_urls)
        try:
            return await jetstream.read_all(nc, self.deployment.stream_name)
        finally:
            await nc.close()

    def fault_figures(self) -> dict[str, Any]:
        """In flight at the fault; and how requests were answered while the store was down:
        every one in flight at `down` or sent after it, early enough for its answer to be due
        before the store came back, must be answered within `answer_within_s` of being sent
        (or of `down`, for those in flight), and those sent after `down` with a 503."""
        down, up = self.down_at, self.up_at
        assert down is not None and up is not None, "the test never marked its fault"
        within = self.answer_within_s
        attempts = self.load.attempts()
        in_flight = sum(1 for a in attempts if a.started_at < down < (a.ended_at or up))
        due = [a for a in attempts if a.ended_at > down and a.started_at <= up - within]
        sent = [a for a in due if a.started_at >= down]
        reads = [
            p for p in self.progress.reads if p.answered_at > down and p.asked_at <= up - within
        ]
        readiness = Counter(
            str(probe.status)
            for probe in self.progress.readiness
            if down + READY_GRACE_S <= probe.asked_at <= up - READY_ANSWER_S
        )

        def late(asked_at: float, answered_at: float, status: int | None) -> bool:
            return status is None or answered_at - max(asked_at, down) > within

        return {
            "fault_at_s": down - self.started_at,
            "back_after_s": up - down,
            "in_flight_at_fault": in_flight,
            "outage_attempts": len(due),
            "outage_slow_answers": sum(1 for a in due if late(a.started_at, a.ended_at, a.status)),
            "outage_longest_s": max(
                (a.ended_at - max(a.started_at, down) for a in due), default=0.0
            ),
            "outage_not_503": sum(1 for a in sent if a.status != 503),
            "outage_statuses": dict(Counter(str(a.status or a.error) for a in sent)),
            "ready_while_down": dict(readiness),
            "outage_reads": len(reads),
            "outage_slow_reads": sum(1 for p in reads if late(p.asked_at, p.answered_at, p.status)),
            "outage_reads_not_503": sum(1 for p in reads if p.asked_at >= down and p.status != 503),
            "outage_read_statuses": dict(Counter(str(p.status or p.error) for p in reads)),
        }

    def recovery_figures(self) -> dict[str, Any]:
        up = self.up_at
        assert up is not None
        acknowledged = [c for c in self.load.commands if c.outcome == "acknowledged"]
        answered_after = [
            c.acknowledged_at for c in acknowledged if c.attempts[-1].started_at >= up
        ]
        fresh = [
            c.position
            for c in acknowledged
            if not c.replayed and c.attempts[-1].started_at >= up and c.position is not None
        ]
        first = min(fresh, default=None)

        def since_up(at: float | None) -> float | None:
            return None if at is None else max(0.0, at - up)

        return {
            "commands_recovery_s": since_up(min(answered_after, default=None)),
            "first_position_after": first,
            "read_models_recovery_s": since_up(
                None if first is None else self.progress.read_models.reached_at(first)
            ),
            "nats_recovery_s": since_up(
                None if first is None else self.progress.nats.reached_at(first)
            ),
        }


async def _get(
    client: httpx.AsyncClient, urls: list[str], path: str, accept: str | None = None, **params: Any
) -> httpx.Response | None:
    """A 200 from the first replica that gives one, or None."""
    headers = {"Accept": accept} if accept else {}
    for url in urls:
        try:
            response = await client.get(url + path, params=params or None, headers=headers)
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            return response
    return None

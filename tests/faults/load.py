"""The load: concurrent workers sending grants and consumptions, each retried until answered.

Every command carries its own `Idempotency-Key` and the same key in its `metadata` ({"k": key}),
so its entry can be found in the history. On a 5xx, a timeout, a connection error, a 429 or a
409 `idempotency_key_in_use` the worker sends the SAME request with the SAME key again (after a
short back-off, at most ATTEMPTS_MAX times within COMMAND_DEADLINE_S) until the service gives a
definitive answer: a 2xx (acknowledged: the ledger must hold it exactly once) or any other 4xx
(rejected: the ledger must not hold it). A command still without one is `unresolved`. Every
attempt is kept with its start, end and answer, so the tests can ask what was answered when.
With several URLs (replicas), a worker moves to the next one after a failed attempt, and
stays with the one that answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

# Each attempt's own limit. Above the 12 s a request was seen to hang with the store down,
# so that such an answer (a 500) is seen and counted rather than cut off by the client.
ATTEMPT_TIMEOUT_S = 15.0
# Bounds on one command's retries: longer than the longest outage a test makes, plus recovery.
COMMAND_DEADLINE_S = 90.0
ATTEMPTS_MAX = 2_000
# Back-off between attempts: short, so that the moment the service answers again is measured
# to within BACKOFF_MAX_S.
BACKOFF_FIRST_S = 0.02
BACKOFF_MAX_S = 0.1
# Answers after which the same request is sent again: the outcome is not known yet.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_CODES = frozenset({"idempotency_key_in_use"})
# The mix: consumptions mostly, some grants, and a few consumptions no account can pay
# (402: a definitive rejection that must leave no entry).
GRANT_SHARE = 0.3
UNPAYABLE_SHARE = 0.02
UNPAYABLE_CREDITS = 10**14
EXPECTED_REJECTION = "insufficient_credits"
FUNDING_CREDITS = 10**9  # each account's first grant: the consumptions never run it dry


@dataclass
class Attempt:
    url: str
    started_at: float
    ended_at: float
    status: int | None = None  # None: no answer (see error)
    error: str | None = None  # timeout | connection | ...
    code: str | None = None  # the problem's code, when the answer was one


@dataclass
class Command:
    key: str
    account_id: str
    kind: str  # grant | consume
    amount: int
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = "pending"  # acknowledged | rejected | unresolved
    position: int | None = None
    replayed: bool = False  # the acknowledgement was the stored answer of an earlier attempt

    @property
    def path(self) -> str:
        return (
            f"/v1/accounts/{self.account_id}/{'grants' if self.kind == 'grant' else 'consumptions'}"
        )

    @property
    def body(self) -> dict[str, Any]:
        metadata = {"k": self.key}
        if self.kind == "grant":
            return {"amount": self.amount, "reason": "fault suite", "metadata": metadata}
        return {"amount": self.amount, "operation": "FAULT_SUITE", "metadata": metadata}

    @property
    def credits(self) -> int:
        """The change of balance this command makes if applied."""
        return self.amount if self.kind == "grant" else -self.amount

    @property
    def acknowledged_at(self) -> float | None:
        last = self.attempts[-1] if self.attempts else None
        return last.ended_at if self.outcome == "acknowledged" and last else None


def classify(response: httpx.Response) -> tuple[str | None, bool]:
    """(the problem code, whether to send the request again)."""
    code = None
    if response.status_code >= 400:
        with contextlib.suppress(ValueError, AttributeError):
            code = response.json().get("code")
    retry = response.status_code in RETRY_STATUSES or (
        response.status_code == 409 and code in RETRY_CODES
    )
    return code, retry


class Load:
    """`workers` concurrent senders over `accounts`, against one URL or several (replicas)."""

    def __init__(
        self,
        urls: list[str],
        headers: dict[str, str],
        accounts: list[str],
        *,
        workers: int = 16,
        seed: int = 18,
    ) -> None:
        self.urls = urls
        self.headers = headers
        self.accounts = accounts
        self.workers = workers
        self.random = random.Random(seed)
        self.commands: list[Command] = []
        self._serial = itertools.count(1)
        self._prefix = f"f{seed}-{int(time.time() * 1000) % 10**9}"
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client = httpx.AsyncClient(
            timeout=ATTEMPT_TIMEOUT_S,
            limits=httpx.Limits(max_connections=workers * 2, max_keepalive_connections=workers),
        )

    # ------------------------------------------------------------------------ commands

    def new_command(self, account_id: str, kind: str, amount: int) -> Command:
        command = Command(f"{self._prefix}-{next(self._serial)}", account_id, kind, amount)
        self.commands.append(command)
        return command

    def next_command(self) -> Command:
        account_id = self.random.choice(self.accounts)
        draw = self.random.random()
        if draw < UNPAYABLE_SHARE:
            return self.new_command(account_id, "consume", UNPAYABLE_CREDITS)
        if draw < UNPAYABLE_SHARE + GRANT_SHARE:
            return self.new_command(account_id, "grant", self.random.randint(1, 100))
        return self.new_command(account_id, "consume", self.random.randint(1, 10))

    async def resolve(self, command: Command, url_index: int = 0) -> Command:
        """Sends the command until a definitive answer, within the bounds."""
        deadline = time.monotonic() + COMMAND_DEADLINE_S
        backoff = BACKOFF_FIRST_S
        headers = {**self.headers, "Idempotency-Key": command.key}
        while len(command.attempts) < ATTEMPTS_MAX and time.monotonic() < deadline:
            url = self.urls[url_index % len(self.urls)]
            attempt = Attempt(url=url, started_at=time.monotonic(), ended_at=0.0)
            command.attempts.append(attempt)
            retry = True
            try:
                response = await self._client.post(
                    url + command.path, json=command.body, headers=headers
                )
            except httpx.TimeoutException:
                attempt.error = "timeout"
            except httpx.TransportError as error:
                attempt.error = f"connection: {type(error).__name__}"
            else:
                attempt.status = response.status_code
                attempt.code, retry = classify(response)
                if not retry:
                    self._settle(command, response)
            attempt.ended_at = time.monotonic()
            if not retry:
                return command
            url_index += 1
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX_S, backoff * 2)
        command.outcome = "unresolved"
        return command

    @staticmethod
    def _settle(command: Command, response: httpx.Response) -> None:
        if response.status_code < 300:
            command.outcome = "acknowledged"
            command.position = int(response.json()["position"])
            command.replayed = response.headers.get("Idempotent-Replayed") == "true"
        else:
            command.outcome = "rejected"

    # -------------------------------------------------------------------------- running

    async def fund(self) -> None:
        """Each account's first grant, through the same path as the load's commands."""
        funded = await asyncio.gather(
            *(
                self.resolve(self.new_command(account, "grant", FUNDING_CREDITS))
                for account in self.accounts
            )
        )
        assert all(command.outcome == "acknowledged" for command in funded), "funding failed"

    async def _work(self, index: int) -> None:
        """Sends commands one after another, to the replica that answered the last one."""
        while not self._stopping.is_set():
            command = await self.resolve(self.next_command(), url_index=index)
            index = self.urls.index(command.attempts[-1].url)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(index)) for index in range(self.workers)]

    async def stop(self) -> None:
        """No new commands; each worker resolves the one it has, then ends."""
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    async def acknowledged_since(self, since: float, count: int, timeout_s: float) -> bool:
        """Waits until `count` commands were acknowledged after `since` (False at the deadline)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = sum(
                1
                for command in self.commands
                if command.acknowledged_at is not None and command.acknowledged_at > since
            )
            if done >= count:
                return True
            await asyncio.sleep(0.05)
        return False

    # -------------------------------------------------------------------------- counting

    def attempts(self) -> list[Attempt]:
        return [attempt for command in self.commands for attempt in command.attempts]

    def tally(self) -> dict[str, int]:
        outcomes = Counter(command.outcome for command in self.commands)
        statuses = Counter(attempt.status for attempt in self.attempts())
        errors = Counter((attempt.error or "").split(":")[0] for attempt in self.attempts())
        rejected = Counter(
            command.attempts[-1].code for command in self.commands if command.outcome == "rejected"
        )
        return {
            "commands": len(self.commands),
            "acknowledged": outcomes["acknowledged"],
            # Acknowledged by the stored answer of an earlier attempt whose answer was lost.
            "acknowledged_replayed": sum(1 for command in self.commands if command.replayed),
            "rejected_4xx": outcomes["rejected"],
            # The load's only rejection is an unpayable consumption's 402.
            "rejected_unexpected": sum(
                n for code, n in rejected.items() if code != EXPECTED_REJECTION
            ),
            "rejected_codes": dict(rejected),
            "unresolved": outcomes["unresolved"] + outcomes["pending"],
            "attempts": len(self.attempts()),
            "answers_5xx": sum(n for status, n in statuses.items() if status and status >= 500),
            "answers_500": statuses[500],
            "answers_503": statuses[503],
            "answers_other_5xx": sum(
                n for status, n in statuses.items() if status and status >= 500 and status != 503
            ),
            "timeouts": errors["timeout"],
            "connection_errors": errors["connection"],
        }

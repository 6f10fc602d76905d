"""How callers hand commands to a writer (this process's thread, or a writer process) and get
their answers back on their event loop. Every answer means committed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from ledger.commands import Command, Envelope, validate
from ledger.errors import InvalidCommandError, LedgerError
from ledger.outcome import Outcome

log = structlog.get_logger("ledger.writer")


def check_commands(envelopes: Sequence[Envelope[Any]], *, atomic: bool, now: datetime) -> None:
    """Checks each command before it is queued (InvalidCommandError, nothing recorded)."""
    for index, envelope in enumerate(envelopes):
        try:
            validate(envelope, now)
        except InvalidCommandError as error:
            if atomic:
                error.detail = f"commands[{index}]: {error.detail}"
            raise


class Submitting:
    """What callers use, on top of `_enqueue` (this thread's queue, or a writer process), and
    what both kinds of writer tell GET /metrics (ledger/writer/batch.py Counters)."""

    @property
    def batches_committed(self) -> int:
        raise NotImplementedError

    @property
    def commands_committed(self) -> int:
        raise NotImplementedError

    @property
    def batches_rerun(self) -> int:
        raise NotImplementedError

    @property
    def apply_us(self) -> int:
        raise NotImplementedError

    @property
    def commit_us(self) -> int:
        raise NotImplementedError

    @property
    def queued_us(self) -> int:
        raise NotImplementedError

    @property
    def works_answered(self) -> int:
        raise NotImplementedError

    @property
    def cached_aggregates(self) -> int:
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def _enqueue(self, envelopes: Sequence[Envelope[Any]], *, atomic: bool) -> asyncio.Future[Any]:
        raise NotImplementedError

    async def submit(self, envelope: Envelope[Command]) -> Outcome:
        """Applies one command; returns once it is committed. Raises its LedgerError."""
        result = await self._enqueue([envelope], atomic=False)
        assert isinstance(result, Outcome)
        return result

    async def submit_atomic(self, envelopes: Sequence[Envelope[Command]]) -> list[Outcome]:
        """Applies all the commands in one transaction, or none (AtomicBatchFailedError)."""
        result = await self._enqueue(envelopes, atomic=True)
        assert isinstance(result, list)
        return result

    async def submit_each(
        self, envelopes: Sequence[Envelope[Command]]
    ) -> list[Outcome | LedgerError]:
        """Applies each command on its own; a failure is returned in its place. Each command
        is a work with its own future, enqueued here in order: no task per command."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        for envelope in envelopes:
            try:
                futures.append(self._enqueue([envelope], atomic=False))
            except LedgerError as error:
                refused: asyncio.Future[Any] = loop.create_future()
                refused.set_exception(error)
                futures.append(refused)
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if not isinstance(result, Outcome | LedgerError):
                raise result
        return list(results)  # type: ignore[arg-type]


class LoopSink:
    """Answers the futures of one event loop: one wake-up of that loop per batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def deliver(self, pairs: list[tuple[Any, Any]]) -> None:
        try:
            self.loop.call_soon_threadsafe(_set_futures, pairs)
        except RuntimeError:  # that loop is closed: its callers are gone, answer the others
            log.warning("writer_answer_loop_closed", commands=len(pairs))


def _set_futures(pairs: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in pairs:
        settle_future(future, result)


def settle_future(future: asyncio.Future[Any], result: Any) -> None:
    """Answers a caller's future with a result or an exception, unless it was cancelled."""
    if future.cancelled():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)

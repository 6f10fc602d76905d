"""The group-commit writer in a process of its own (`ledger serve`, LEDGER_BACKGROUND=process).

In one process the writer's thread and the HTTP event loop share one GIL: each consume cost the
loop its HTTP work (~200 µs) plus the writer's (~70-100 µs), on one core of two
(docs/BENCHMARKS.md, round 3). Here the writer runs in a child process, so the two use both
cores. `WriterProcess` is what the routes call: the same `submit`, `submit_atomic` and
`submit_each` as `ledger.writer.Writer`, and the same rule, every answer means committed.

The two talk over a socket pair the parent makes for each child (no path on disk, no port), in
the messages of api/roles/writer_wire.py: works from the parent (commands checked already),
each loop turn's in one message; answers from the child, one message per committed batch. The
child's first message, with no answers, says it is ready.

`WriterProcess` is the writer's role in the app's supervisor (api/roles/supervisor.py), which
starts its child, starts it again after the back-off when it dies, and stops it; this module
keeps the connection. If the child dies, every command it had not answered fails with
`unavailable` (the outcome is unknown: a retry with the same Idempotency-Key settles it).
`stop()` closes the parent's side for writing; the child answers every command it accepted,
then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import msgspec
import structlog

from api.roles.child_settings import settings_from_stdin
from api.roles.supervisor import WRITER_STOP_STAGE, Launch, Supervisor
from api.roles.writer_wire import (
    LENGTH_BYTES,
    Stats,
    answers_messages,
    decode_answers,
    decode_works,
    encode_work,
    works_message,
)
from ledger.clock import utc_now
from ledger.commands import Envelope
from ledger.errors import LedgerError, UnavailableError
from ledger.writer.submitting import Submitting, check_commands, settle_future
from ledger.writer.writer import QUEUE_DEPTH_MAX, Writer

log = structlog.get_logger("api.roles.writer_process")

# A message larger than this is a bug on the other side: the connection is dropped. Messages
# are bounded well below it by FRAME_BYTES_BUDGET plus one work or answer (a work is at most a
# batch request of 1,000 commands, each of bounded size).
FRAME_BYTES_MAX = 64 * 1024 * 1024
# Commands, and bytes, the parent puts in one message (and bytes the child puts in one message
# of answers) before starting another: a message stays far below FRAME_BYTES_MAX whatever the
# commands or answers (an account view with 1,000 lots is about 180 KB).
FRAME_COMMANDS_MAX = 1_000
FRAME_BYTES_BUDGET = 4 * 1024 * 1024
# Bytes the child reads from the socket at once.
RECEIVE_BYTES = 1024 * 1024
# Seconds the parent waits for its first child to say it is ready before the service gives up.
READY_TIMEOUT_S = 60.0
# Seconds the child gets, on stop, to answer what it accepted and exit (then it is killed).
DRAIN_TIMEOUT_S = 30.0
# Seconds a child whose connection ended gets to exit of itself before it is killed.
LOST_EXIT_TIMEOUT_S = 5.0
# A child that cannot reach the store at start tries again this often.
START_RETRY_S = 0.25


# ------------------------------------------------------------------------------ the parent


class WriterProcess(Submitting):
    """The writer, run in a child process of `supervisor`; used like `ledger.writer.Writer`."""

    name = "writer"  # its role in the supervisor's log lines
    stop_timeout_s = DRAIN_TIMEOUT_S
    stop_stage = WRITER_STOP_STAGE  # before the follower and the relay

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.clock = clock
        self.process: subprocess.Popen[bytes] | None = None  # the last child started
        self.stats = Stats()  # the child's counters, as of its last answer
        self._earlier = Stats()  # counted by children that died
        self.restarts = 0  # children that died (each is started again)
        self._socket: socket.socket | None = None  # this side's, from launch() to launched()
        self._stream: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._pending: dict[int, tuple[asyncio.Future[Any], int]] = {}
        self._depth = 0
        self._tokens = itertools.count(1)
        self._outbox: list[bytes] = []  # encoded works, sent at the end of the loop turn
        self._outbox_commands = 0
        self._outbox_bytes = 0
        self._flush_scheduled = False
        self._stopping = False
        self._unanswered = 0  # commands the last connection to end left unanswered
        self._child = supervisor.add(self)

    @property
    def totals(self) -> Stats:
        """The counters of every child this one has started, the cache's size of the last."""
        return self._earlier.plus(self.stats)

    @property
    def batches_committed(self) -> int:
        return self.totals.batches_committed

    @property
    def commands_committed(self) -> int:
        return self.totals.commands_committed

    @property
    def batches_rerun(self) -> int:
        return self.totals.batches_rerun

    @property
    def cached_aggregates(self) -> int:
        return self.stats.cached_aggregates

    @property
    def apply_us(self) -> int:
        return self.totals.apply_us

    @property
    def commit_us(self) -> int:
        return self.totals.commit_us

    @property
    def queued_us(self) -> int:
        return self.totals.queued_us

    @property
    def works_answered(self) -> int:
        return self.totals.works_answered

    @property
    def ready(self) -> bool:
        """Connected to a child that said it is ready: false while one is (re)starting."""
        ready = self._ready
        return (
            self._stream is not None
            and ready is not None
            and ready.done()
            and not ready.cancelled()
            and ready.exception() is None
        )

    async def stop(self) -> None:
        """Every command already accepted is answered; then the child exits, for good."""
        self._stopping = True
        await self._child.stop()

    def _enqueue(self, commands: Sequence[Envelope[Any]], *, atomic: bool) -> asyncio.Future[Any]:
        check_commands(commands, atomic=atomic, now=self.clock())  # bad input: 400 whatever else
        if self._stopping:
            raise UnavailableError("the service is stopping; retry shortly")
        if self._stream is None:
            raise UnavailableError("the writer is restarting; retry shortly")
        if self._depth + len(commands) > QUEUE_DEPTH_MAX:
            raise UnavailableError("the writer is overloaded; retry shortly")
        token = next(self._tokens)
        encoded = encode_work(token, atomic, list(commands))
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending[token] = (future, len(commands))
        self._depth += len(commands)
        if (
            self._outbox_commands + len(commands) > FRAME_COMMANDS_MAX
            or self._outbox_bytes + len(encoded) > FRAME_BYTES_BUDGET
        ):
            self._flush()
        self._outbox.append(encoded)
        self._outbox_commands += len(commands)
        self._outbox_bytes += len(encoded)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)  # every command of this loop turn in one message
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._outbox:
            return
        outbox, self._outbox = self._outbox, []
        self._outbox_commands = self._outbox_bytes = 0
        if self._stream is not None:
            self._stream.write(works_message(outbox))

    # The writer's role in the supervisor (api.roles.supervisor.Role).

    @contextlib.contextmanager
    def launch(self) -> Iterator[Launch]:
        """A new socket pair: the child inherits one end, by its descriptor's number."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with child:  # the child process has its own copy once it is started
            try:
                yield Launch(
                    [sys.executable, "-m", "api.roles.writer_process", "--fd", str(child.fileno())],
                    pass_fds=(child.fileno(),),
                )
            except BaseException:
                parent.close()
                raise
        self._socket = parent

    async def launched(self, process: subprocess.Popen[bytes]) -> None:
        """Connects to the new child. It ends when this side of the socket closes: serve
        stopping, or dying (the kernel closes it); it ignores SIGTERM, the death signal too."""
        sock, self._socket = self._socket, None
        assert sock is not None, "launched() without launch()"
        self.process = process
        try:
            reader, stream = await asyncio.open_unix_connection(sock=sock, limit=RECEIVE_BYTES)
        except BaseException:  # out of descriptors, say: the supervisor kills the child
            sock.close()
            raise
        self._stream = stream
        self._ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(reader, self._ready))
        log.info("writer_process_started", pid=process.pid)

    async def wait_ready(self) -> None:
        """Until the child says it is ready (its store is reachable)."""
        assert self._ready is not None, "wait_ready() before the child started"
        async with asyncio.timeout(READY_TIMEOUT_S):
            await self._ready

    def ask_to_stop(self, process: subprocess.Popen[bytes]) -> None:
        """Closes this side for writing, after the last queued command: the child answers
        every command it accepted, then exits."""
        self._stopping = True
        self._flush()
        if self._stream is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._stream.write_eof()

    async def exited(self, returncode: int | None, *, stopped: bool) -> None:
        """Its child exited: every answer it sent is read first."""
        await self._read_to_the_end()
        if stopped:
            log.info("writer_process_stopped", returncode=returncode)
        else:
            self.restarts += 1
            log.error("writer_process_exited", returncode=returncode, unanswered=self._unanswered)

    async def _read_to_the_end(self) -> None:
        reader = self._reader
        if reader is None or reader.done():
            return
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await asyncio.shield(reader)
        except TimeoutError:  # the socket outlived the child: fail what is left
            log.error("writer_process_drain_timed_out", pending=len(self._pending))
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    # The connection.

    async def _read(self, reader: asyncio.StreamReader, ready: asyncio.Future[None]) -> None:
        try:
            while True:
                head = await reader.readexactly(LENGTH_BYTES)
                size = int.from_bytes(head, "big")
                if size > FRAME_BYTES_MAX:
                    log.error("writer_process_message_too_large", bytes=size)
                    break
                self.stats, answers = decode_answers(await reader.readexactly(size))
                if not ready.done():
                    ready.set_result(None)
                self._answer(answers)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the child closed its side: it exited, or is exiting
        except Exception:
            log.exception("writer_process_read_failed")
        finally:
            self._lost(ready)

    def _answer(self, answers: list[tuple[int, Any]]) -> None:
        for token, result in answers:
            entry = self._pending.pop(token, None)
            if entry is None:
                continue
            future, count = entry
            self._depth -= count
            settle_future(future, result)

    def _lost(self, ready: asyncio.Future[None]) -> None:
        """The connection ended: fail what is unanswered; the child is to exit now (if it has
        not), and the supervisor starts another."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        self._outbox = []
        self._outbox_commands = self._outbox_bytes = 0
        pending, self._pending, self._depth = self._pending, {}, 0
        self._unanswered = len(pending)
        self._earlier, self.stats = self.totals, Stats()
        lost = UnavailableError(
            "the writer stopped before answering; the outcome is unknown: "
            "retry with the same Idempotency-Key"
        )
        for future, _count in pending.values():
            if not future.done():
                future.set_exception(lost)
        if not ready.done():
            ready.set_exception(RuntimeError("the writer process ended before it was ready"))
            ready.exception()  # retrieved: after a restart nobody awaits it
        if not self._stopping:
            self._child.expect_exit(LOST_EXIT_TIMEOUT_S)


# ------------------------------------------------------------------------------- the child


class WriterServer:
    """The child's side: reads works from the socket, answers each committed batch."""

    def __init__(self, sock: socket.socket, writer: Writer) -> None:
        self.sock = sock
        self.writer = writer
        self._send_lock = threading.Lock()
        self._broken = False

    def deliver(self, pairs: list[tuple[Any, Any]]) -> None:
        """Called on the writer's thread with a batch's answers (a Sink). Never raises: an
        answer that cannot be encoded goes as an error in its place (writer_wire)."""
        try:
            self._send(pairs)
        except Exception:  # a bug in encoding: the connection ends, the parent fails them
            log.exception("writer_process_answer_failed", answers=len(pairs))
            self._broken = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def _send(self, answers: list[tuple[Any, Any]]) -> None:
        writer = self.writer
        stats = Stats(
            writer.batches_committed,
            writer.commands_committed,
            writer.batches_rerun,
            writer.cached_aggregates,
            writer.apply_us,
            writer.commit_us,
            writer.queued_us,
            writer.works_answered,
        )
        messages = answers_messages(stats, answers, FRAME_BYTES_BUDGET)
        with self._send_lock:
            if self._broken:
                return
            try:
                for message in messages:
                    self.sock.sendall(message)
            except OSError as error:  # the parent is gone: what is committed stays committed
                self._broken = True
                # Expected when serve is killed: the child finishes what it accepted and exits.
                log.warning("writer_process_parent_gone", error=str(error), answers=len(answers))

    def run(self) -> bool:
        """Says it is ready, then queues works until the parent closes its side. True when
        it ended so; False on a message it could not read (logged)."""
        self._send([])
        buffer = bytearray()
        while True:
            try:
                chunk = self.sock.recv(RECEIVE_BYTES)
            except OSError as error:  # serve was killed (the kernel reset its side): expected
                log.warning("writer_process_parent_gone", error=str(error) or type(error).__name__)
                return not buffer
            if not chunk:
                if buffer:
                    log.error("writer_process_message_cut_short", bytes=len(buffer))
                    return False
                return True
            buffer += chunk
            while len(buffer) >= LENGTH_BYTES:
                size = int.from_bytes(buffer[:LENGTH_BYTES], "big")
                if size > FRAME_BYTES_MAX:
                    log.error("writer_process_message_too_large", bytes=size)
                    return False
                if len(buffer) < LENGTH_BYTES + size:
                    break
                try:
                    works = decode_works(memoryview(buffer)[LENGTH_BYTES : LENGTH_BYTES + size])
                except msgspec.DecodeError:
                    log.exception("writer_process_message_undecodable", bytes=size)
                    return False
                del buffer[: LENGTH_BYTES + size]
                self._accept(works)

    def _accept(self, works: list[tuple[int, bool, list[Envelope[Any]]]]) -> None:
        for token, atomic, commands in works:
            try:
                self.writer.enqueue(commands, atomic=atomic, sink=self, token=token)
            except LedgerError as error:
                self._send([(token, error)])


def open_store(database_url: str, schema: str, sock: socket.socket) -> Any:
    """The child's Ledger, tried again every START_RETRY_S while the store cannot be reached
    (a child started during an outage is ready within that of the store answering, instead
    of exiting into the supervisor's growing back-off); None on any other failure, or once
    serve is gone."""
    from eventsourcing.persistence import PersistenceError  # noqa: PLC0415
    from psycopg import OperationalError  # noqa: PLC0415

    from ledger.store.application import Ledger  # noqa: PLC0415

    said = False
    while True:
        try:
            return Ledger(database_url, schema)
        except (OperationalError, PersistenceError, OSError) as error:
            if not said:
                said = True
                log.warning("writer_process_waiting_for_store", error=str(error).strip()[:300])
        except Exception:
            log.exception("writer_process_start_failed")
            return None
        if parent_gone(sock):
            return None
        time.sleep(START_RETRY_S)


def parent_gone(sock: socket.socket) -> bool:
    """Whether serve closed (or lost) its side of the socket, without reading a message."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def main(argv: list[str] | None = None) -> int:
    """The child. It ends when serve closes its side of the socket (serve stopping, or dying:
    the kernel closes its descriptors), after answering every command it accepted. SIGTERM
    is ignored: a stop of the whole process group (systemd's default) reaches serve too, which
    closes the socket once it has sent its last command, so nothing is cut off mid-answer."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from api.roles.garbage_collector import tune_collector  # noqa: PLC0415 - the child's imports only
    from api.roles.logs import configure_logging  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="api.roles.writer_process")
    parser.add_argument("--fd", type=int, required=True, help="the inherited socket's descriptor")
    args = parser.parse_args(argv)
    settings = settings_from_stdin()  # its parent's, database URL included
    configure_logging(settings.log_format, settings.log_level)
    if not settings.database_url:
        log.error("writer_process_needs_database_url")
        return 2
    sock = socket.socket(fileno=args.fd)
    ledger = open_store(settings.database_url, settings.schema, sock)
    if ledger is None:
        return 1
    writer = Writer(ledger)
    writer.start()
    tune_collector()
    server = WriterServer(sock, writer)
    log.info("writer_process_ready", pid=os.getpid())
    clean = False
    try:
        clean = server.run()
    except Exception:
        log.exception("writer_process_read_failed")
    finally:
        asyncio.run(writer.stop())  # answers every command it accepted
        sock.close()
        ledger.close()
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())

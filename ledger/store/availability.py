"""Whether the event store answers, as this process last saw it: a gate on the store's
connections that fails fast while the store is down and opens again as soon as it answers.

The library retries a failed statement ten times, 0.2 s apart, and its pool waits up to its
timeout for a connection each time: with PostgreSQL down a command, a key lookup or a
readiness probe hung for up to 12 s, then failed. Here the first connection that is lost
(PostgreSQL restarted or stopped, the session terminated, no connection to be had) closes the
gate and wakes its prober; while it is closed every request for a connection fails at once
with `StoreUnavailableError`, a PersistenceError the library does not retry, which the writer
and the API answer as 503 `unavailable`. The prober, a thread of its own, connects afresh
every PROBE_INTERVAL_S; once PostgreSQL answers it drops the pool's dead connections and
opens the gate, so work resumes within PROBE_INTERVAL_S (plus one connect) of the store
answering.

A statement that fails for its own reasons (a lock timeout, a unique violation) says nothing
about the store and leaves the gate open. `install_gate` puts a gate on a datastore.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg_pool
import structlog
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError

log = structlog.get_logger("ledger.store")

# While the gate is closed, the prober connects this often; a caller that finds it closed
# asks for a probe at once and waits this long for it (so the first request after the store
# is back is not refused for want of a probe), but probes are never closer than the gap.
PROBE_INTERVAL_S = 0.1
CALLER_WAIT_S = 0.05
PROBE_GAP_S = 0.02
# A probe's connect gives up after this (libpq's least: 2 s).
PROBE_CONNECT_TIMEOUT_S = 2
# The pool's own attempts to replace a lost connection: this far apart, however long the store
# is down (the pool's default doubles from 1 s, so after a 15 s outage its next attempt could
# be 8 s away and the pool would stay empty that long once the store is back).
POOL_RECONNECT_DELAY_S = 0.25
# SQLSTATEs that mean the connection, not the statement, failed: the server shutting down or
# starting up (57P01-57P03) and every connection exception (class 08).
CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


class StoreUnavailableError(PersistenceError):
    """The event store did not answer: nothing was sent to it (the gate is closed) or the
    connection was lost. Not retried by the library."""


def connection_lost(error: BaseException) -> bool:
    """Whether `error` (the library's, or psycopg's under it) means the connection failed."""
    cause = error.__cause__ if isinstance(error, PersistenceError) else error
    if isinstance(cause, psycopg_pool.PoolTimeout | psycopg.InterfaceError):
        return True
    if isinstance(cause, psycopg.OperationalError):
        state = cause.sqlstate
        return state is None or state.startswith("08") or state in CONNECTION_SQLSTATES
    return False


def tune_pool_reconnect() -> None:
    """Every psycopg pool of the process replaces a lost connection every
    POOL_RECONNECT_DELAY_S while the store is down, instead of backing off to minutes."""
    attempt: Any = psycopg_pool.base.AttemptWithBackoff
    attempt.INITIAL_DELAY = POOL_RECONNECT_DELAY_S
    attempt.DELAY_BACKOFF = 1.0


class StoreGate:
    """The gate of one datastore's connections (see the module's docstring)."""

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], purge: Callable[[], None]
    ) -> None:
        self._connect = connect  # a fresh connection outside the pool, for the probe
        self._purge = purge  # drops the pool's dead connections
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._wake = threading.Event()
        self._open = threading.Event()  # set while the gate is open
        self._open.set()
        self._closed = False
        self._prober: threading.Thread | None = None
        self.last_error: str | None = None
        self.outages = 0  # times the gate closed
        self.last_outage_s = 0.0  # how long the last one lasted

    @property
    def available(self) -> bool:
        return self._down_since is None

    def down_for_s(self) -> float:
        down_since = self._down_since
        return 0.0 if down_since is None else time.monotonic() - down_since

    def check(self) -> None:
        """Raises StoreUnavailableError while the gate is closed, after asking for a probe and
        waiting at most CALLER_WAIT_S for it to open."""
        if self._down_since is None:
            return
        self._wake.set()
        if not self._open.wait(CALLER_WAIT_S):
            raise StoreUnavailableError(f"the event store is unreachable ({self.last_error})")

    def lost(self, error: BaseException) -> None:
        """A connection failed: the gate closes (if open) and the prober starts probing."""
        with self._lock:
            if self._closed:
                return
            self.last_error = (
                str(error).strip().splitlines()[0] if str(error) else type(error).__name__
            )
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
            self._open.clear()
            self.outages += 1
            if self._prober is None:
                self._prober = threading.Thread(
                    target=self._probe_loop, name="ledger-store-prober", daemon=True
                )
                self._prober.start()
        log.warning("store_unreachable", error=self.last_error)
        self._wake.set()

    def guard(
        self, get_connection: Callable[[], contextlib.AbstractContextManager[Any]]
    ) -> Callable[[], contextlib.AbstractContextManager[Any]]:
        """`get_connection` behind the gate."""

        @contextlib.contextmanager
        def guarded() -> Iterator[Any]:
            self.check()
            try:
                with get_connection() as conn:
                    yield conn
            except (OperationalError, InterfaceError) as error:
                if connection_lost(error):
                    self.lost(error)
                raise

        return guarded

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()

    def _probe_loop(self) -> None:
        while True:
            self._wake.wait()
            while not self._closed and self._down_since is not None:
                self._wake.clear()
                if self._probe():
                    break
                time.sleep(PROBE_GAP_S)
                self._wake.wait(PROBE_INTERVAL_S - PROBE_GAP_S)  # or sooner, when asked
            self._wake.clear()
            if self._closed:
                self._open.set()  # nobody waits on a closed gate
                return

    def _probe(self) -> bool:
        """One attempt: True (and the gate open) once the store answered."""
        try:
            with self._connect() as conn:
                conn.execute("SELECT 1")
            self._purge()
        except Exception as error:  # noqa: BLE001 - any failure: still down, probe again
            self.last_error = (
                str(error).strip().splitlines()[0] if str(error) else type(error).__name__
            )
            return False
        with self._lock:
            down_since, self._down_since = self._down_since, None
            self._open.set()
        self.last_outage_s = 0.0 if down_since is None else time.monotonic() - down_since
        log.info("store_reachable", outage_s=round(self.last_outage_s, 3))
        return True


def install_gate(datastore: Any) -> StoreGate:
    """Puts a gate on an eventsourcing PostgresDatastore: its get_connection (which every
    recorder uses, the snapshots' too) goes through it from now on."""
    tune_pool_reconnect()
    pool: psycopg_pool.ConnectionPool[Any] = datastore.pool
    kwargs = dict(pool.kwargs) if isinstance(pool.kwargs, dict) else {}
    kwargs.pop("row_factory", None)

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(
            str(pool.conninfo), **kwargs, connect_timeout=PROBE_CONNECT_TIMEOUT_S, autocommit=True
        )

    def purge() -> None:
        with contextlib.suppress(psycopg_pool.PoolClosed):
            pool.check()

    gate = StoreGate(connect, purge)
    datastore.get_connection = gate.guard(datastore.get_connection)
    return gate

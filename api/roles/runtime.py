"""What runs while the service is up: the store, the writer, the follower, the relay, the
scheduler, NATS.

`Runtime.start(settings)`, in create_app's lifespan, builds them in order; `stop()` takes them
down, the writer first, so every command it accepted is answered before anything else closes.
The Runtime owns the supervisor of every child process (api/roles/supervisor.py): the writer's
when `settings.writer_process`, and one per `settings.child_roles` (`ledger serve` with
LEDGER_BACKGROUND=process: the follower, the relay and the scheduler).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from api.http.auth import Authenticator
from api.http.key_usage import KeyUsage
from api.http.metrics import Metrics
from api.http.payment_store import PaymentStore
from api.http.ratelimit import RateLimiter
from api.http.services import Services
from api.http.webhook_endpoints import WebhookEndpoints
from api.roles.supervisor import CommandRole, Supervisor
from api.roles.topups import TopUpWatcher
from api.roles.writer_process import WriterProcess
from api.settings import Settings, nats_servers
from events.jetstream import StreamConfig
from events.relay import Relay
from events.webhooks.deliverer import Deliverer
from events.webhooks.http_client import Rules
from ledger.store.application import Ledger
from ledger.store.sealed import SecretBox
from ledger.store.transcoder import new_mapper
from ledger.writer.submitting import Submitting
from ledger.writer.writer import Writer
from projections.due_times import ExpiryReads
from projections.follower import Follower
from projections.queries import ReadModels
from projections.scheduler import Scheduler

log = structlog.get_logger("api.roles.runtime")

# asyncpg connections for read-model queries.
READ_POOL_SIZE_MAX = 10
# A read-model connection not made within this is given up: the request answers 503 within the
# store's bound (docs/reliability.md) instead of asyncpg's 60 s.
READ_CONNECT_TIMEOUT_S = 1.0
# Seconds between attempts to reach NATS while it is down.
NATS_RECONNECT_WAIT_S = 1.0
# The relay's connect tries each server twice, this far apart, then gives up to its own
# back-off (events/relay.py), which says what it is waiting for.
RELAY_CONNECT_RETRY_WAIT_S = 0.1


class NatsCallbacks:
    """nats-py's callbacks, so that its noise while NATS is down is ours and below ERROR: by
    default it logs every failed reconnect attempt at ERROR with a traceback (twice a second
    with the live streams' client). The first error of an outage is a warning; the others,
    debug; the reconnect, info."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.down = False

    async def error(self, error: Exception) -> None:
        text = str(error) or type(error).__name__
        if self.down:
            log.debug("nats_client_error", client=self.client, error=text)
        else:
            self.down = True
            log.warning("nats_client_error", client=self.client, error=text)

    async def disconnected(self) -> None:
        if not self.down:
            self.down = True
            log.warning("nats_disconnected", client=self.client)

    async def reconnected(self) -> None:
        self.down = False
        log.info("nats_reconnected", client=self.client)

    def options(self) -> dict[str, Any]:
        return {
            "error_cb": self.error,
            "disconnected_cb": self.disconnected,
            "reconnected_cb": self.reconnected,
        }


async def connect_nats(services: Services, url: str) -> None:
    """Keeps trying until NATS answers; the API works without it (it is not on the command path)."""
    import nats  # noqa: PLC0415 - only needed when NATS is configured

    callbacks = NatsCallbacks("live_streams")
    while True:
        try:
            services.nats = await nats.connect(
                servers=nats_servers(url),
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=NATS_RECONNECT_WAIT_S,
                **callbacks.options(),
            )
        except Exception as error:  # noqa: BLE001 - log and keep trying
            await callbacks.error(error)
            await asyncio.sleep(NATS_RECONNECT_WAIT_S)
        else:
            callbacks.down = False
            log.info("nats_connected", servers=nats_servers(url))
            return


def relay_connector(url: str) -> Callable[[], Awaitable[Any]]:
    """The relay's own connection: no automatic reconnect, it backs off and reconnects itself.
    Given every server of `url` (comma-separated), it connects to any that answers and learns
    the rest of the cluster from it."""
    callbacks = NatsCallbacks("relay")

    async def connect() -> Any:
        import nats  # noqa: PLC0415

        # One attempt per server and back (nats-py's default is 60 attempts 2 s apart per
        # server inside one connect: the relay sat silent for two minutes in it).
        client = await nats.connect(
            servers=nats_servers(url),
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=RELAY_CONNECT_RETRY_WAIT_S,
            **callbacks.options(),
        )
        callbacks.down = False
        return client

    return connect


def relay_of(settings: Settings, database_url: str, nats_url: str) -> Relay:
    """The relay these settings describe: its stream, subjects and message ids."""
    return Relay(
        database_url,
        settings.schema,
        new_mapper(),
        relay_connector(nats_url),
        stream=StreamConfig(
            name=settings.stream_name,
            subject_prefix=settings.nats_subject_prefix,
            duplicate_window_s=settings.nats_duplicate_window_s,
            replicas=settings.nats_stream_replicas,
        ),
        message_id_namespace=settings.nats_message_id_namespace,
    )


@dataclass
class Runtime:
    services: Services
    pool: asyncpg.Pool
    supervisor: Supervisor
    stop_background: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    nats_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        assert settings.database_url and settings.admin_key
        database_url = settings.database_url
        # The event store before any child, which reads it from its first step. The read
        # models' and the relay's tables each creates itself: projections.schema's DDL lock
        # keeps them from racing.
        ledger = await asyncio.to_thread(Ledger, database_url, settings.schema)
        supervisor = Supervisor(settings)
        writer: Submitting = (
            WriterProcess(supervisor) if settings.writer_process else Writer(ledger)
        )
        for role in settings.child_roles:
            supervisor.add(CommandRole(role))
        await supervisor.start()  # the writer's child first, ready; raises if it cannot be
        if isinstance(writer, Writer):
            writer.start()
        key_usage = KeyUsage(ledger)
        await asyncio.to_thread(key_usage.create_table)
        key_usage.start()
        limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        auth = Authenticator(ledger, settings.admin_key, limiter)
        auth.on_used = key_usage.used
        metrics = Metrics()
        metrics.gauge("ledger_writer_batches_committed", lambda: writer.batches_committed)
        metrics.gauge("ledger_writer_commands_committed", lambda: writer.commands_committed)
        metrics.gauge("ledger_writer_batches_rerun", lambda: writer.batches_rerun)
        metrics.gauge("ledger_writer_cache_aggregates", lambda: writer.cached_aggregates)
        metrics.gauge("ledger_writer_ready", lambda: int(writer.ready))
        # Where the writer's time goes (seconds summed since start): per batch, applying it
        # and storing it; per committed work, its wait from being queued to being answered.
        metrics.gauge("ledger_writer_apply_seconds", lambda: writer.apply_us / 1e6)
        metrics.gauge("ledger_writer_commit_seconds", lambda: writer.commit_us / 1e6)
        metrics.gauge("ledger_writer_queued_seconds", lambda: writer.queued_us / 1e6)
        metrics.gauge("ledger_writer_works_answered", lambda: writer.works_answered)
        if isinstance(writer, WriterProcess):
            metrics.gauge("ledger_writer_process_restarts", lambda: writer.restarts)
        mapper = new_mapper()
        services = Services(settings, ledger, writer, auth, key_usage, metrics, mapper)
        pool = await asyncpg.create_pool(
            database_url, min_size=1, max_size=READ_POOL_SIZE_MAX, timeout=READ_CONNECT_TIMEOUT_S
        )
        runtime = cls(services=services, pool=pool, supervisor=supervisor)
        follower = Follower(
            database_url, settings.schema, mapper, batch_size_max=settings.follower_batch_size
        )
        scheduler = Scheduler(database_url, settings.schema, mapper)
        async with pool.acquire() as conn:
            await follower.create_tables(conn)
            await scheduler.create_tables(conn)  # the read rule reads the due model
        services.read_models = ReadModels(pool, settings.schema)
        services.expiry_reads = ExpiryReads(pool, settings.schema)
        await runtime.start_money(settings)
        if settings.run_follower:
            runtime.tasks.append(asyncio.create_task(follower.run(runtime.stop_background)))
        if settings.run_scheduler:
            runtime.tasks.append(asyncio.create_task(scheduler.run(runtime.stop_background)))
        if settings.nats_url:
            if settings.run_relay:
                relay = relay_of(settings, database_url, settings.nats_url)
                metrics.gauge("ledger_relay_position", lambda: relay.position)
                runtime.tasks.append(asyncio.create_task(relay.run(runtime.stop_background)))
            runtime.nats_task = asyncio.create_task(connect_nats(services, settings.nats_url))
        log.info("service_started", schema=settings.schema)
        return runtime

    async def start_money(self, settings: Settings) -> None:
        """Issue 16's parts: the payment store, the webhook endpoints and, when this process
        runs it, the deliverer (which needs LEDGER_SECRET_KEY to read endpoint secrets)."""
        services = self.services
        assert settings.database_url
        box = SecretBox(settings.secret_key) if settings.secret_key else None
        services.payments = PaymentStore(self.pool, settings.schema, box)
        await services.payments.create_tables()
        rules = Rules(
            allow_http=settings.webhooks_allow_http, allow_private=settings.webhooks_allow_private
        )
        services.webhooks = WebhookEndpoints(self.pool, settings.schema, box, rules)
        await services.webhooks.create_tables()
        if settings.run_webhooks and box is not None:
            deliverer = Deliverer(
                settings.database_url, settings.schema, services.mapper, box, rules
            )
            services.metrics.gauge("ledger_webhooks_position", lambda: deliverer.position)
            self.tasks.append(asyncio.create_task(deliverer.run(self.stop_background)))
        if settings.run_topups:
            watcher = TopUpWatcher(
                settings.database_url, settings.schema, services.mapper, services.writer.submit
            )
            services.metrics.gauge("ledger_topups_position", lambda: watcher.position)
            self.tasks.append(asyncio.create_task(watcher.run(self.stop_background)))

    async def stop(self) -> None:
        services = self.services
        await services.writer.stop()  # answers every accepted command first
        await self.supervisor.stop()  # then the other children: each stores its position
        self.stop_background.set()
        for task in self.tasks:
            await task
        await self.pool.close()
        await services.key_usage.stop()
        if self.nats_task is not None:
            self.nats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.nats_task
        if services.nats is not None:
            await services.nats.close()
        await asyncio.to_thread(services.ledger.close)
        log.info("service_stopped")

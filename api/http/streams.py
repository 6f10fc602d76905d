"""Live entries of a tenant: `GET /v1/stream` (SSE) and `WS /v1/ws`.

A subscriber first catches up from the entries read model (after its `Last-Event-ID` or
`after`), then continues live from NATS. The NATS subscription starts before the catch-up and
the catch-up reads up to the event store's position at that moment, so nothing is missed;
positions at or below the last one sent are dropped, so nothing repeats. If the subscriber
falls behind (its queue is full) or NATS is quiet for a heartbeat, it catches up from the read
models again: NATS is a copy, the read models are never missing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, WebSocket, get, websocket
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import authenticated, tenant_key
from api.http.parameters import POSITION_MAX, SECURITY
from api.http.problems import ApiError, responses
from events.subjects import tenant_subjects
from ledger.ids import check_account_id
from ledger.limits import ACCOUNT_ID_LENGTH_MAX
from ledger.tenants.api_keys import REPORTS_READ

log = structlog.get_logger("api.http.streams")

# Live messages buffered per subscriber before it falls back to catching up.
SUBSCRIBER_QUEUE_MAX = 10_000
# A quiet stream sends a heartbeat (and catches up from the read models) this often.
HEARTBEAT_S = 15.0
# A comment line alone (`: heartbeat`): no `data:` line, which clients would take for an event.
HEARTBEAT = ServerSentEventMessage(comment="heartbeat", data=None)
# Without NATS a stream polls the read models this often instead.
POLL_WITHOUT_NATS_S = 1.0
# Read-model rows per catch-up query.
CATCH_UP_PAGE = 500
# Streams open at once per process.
STREAMS_MAX = 1_000

_open_streams = 0
_position_decoder = msgspec.json.Decoder(dict[str, Any])


class LiveEntries:
    """The entries of one tenant (optionally one account) after a position, forever."""

    def __init__(
        self, services: ServicesDep, tenant_id: str, account_id: str | None, after: int
    ) -> None:
        self.services = services
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.last = after
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(SUBSCRIBER_QUEUE_MAX)
        self.lagged = False
        self.subscription: Any = None

    async def _on_message(self, message: Any) -> None:
        if message.subject.endswith(".low_balance"):
            return
        position = int(message.headers.get("Ledger-Position", "0")) if message.headers else 0
        try:
            self.queue.put_nowait((position, message.data))
        except asyncio.QueueFull:
            self.lagged = True

    async def __aenter__(self) -> LiveEntries:
        global _open_streams  # noqa: PLW0603 - one counter per process
        if _open_streams >= STREAMS_MAX:
            raise ApiError("unavailable", "too many open streams on this replica; retry shortly")
        _open_streams += 1
        await self._subscribe()
        return self

    async def _subscribe(self) -> None:
        nats = self.services.nats
        if self.subscription is None and nats is not None and nats.is_connected:
            prefix = self.services.settings.nats_subject_prefix
            subject = tenant_subjects(self.tenant_id, self.account_id, prefix)
            self.subscription = await nats.subscribe(subject, cb=self._on_message)

    async def __aexit__(self, *_: object) -> None:
        global _open_streams  # noqa: PLW0603
        _open_streams -= 1
        if self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.subscription.unsubscribe()

    async def catch_up(self) -> AsyncIterator[tuple[int, bytes]]:
        models = self.services.read_models
        assert models is not None
        target = await self.services.store_position()
        await models.wait_for(target)
        while True:
            rows = await models.entries_after(
                self.tenant_id, self.account_id, self.last, target, CATCH_UP_PAGE
            )
            for position, entry in rows:
                self.last = position
                yield position, entry
            if len(rows) < CATCH_UP_PAGE:
                return

    async def entries(self) -> AsyncIterator[tuple[int, bytes] | None]:
        """(position, Entry JSON) in ledger order; None when a heartbeat is due."""
        async for item in self.catch_up():
            yield item
        while True:
            quiet_s = HEARTBEAT_S if self.subscription is not None else POLL_WITHOUT_NATS_S
            try:
                async with asyncio.timeout(quiet_s):
                    position, payload = await self.queue.get()
            except TimeoutError:
                yield None
                await self._subscribe()  # NATS may be back (or reachable for the first time)
                async for item in self.catch_up():
                    yield item
                continue
            if self.lagged:
                self.lagged = False
                self.queue = asyncio.Queue(SUBSCRIBER_QUEUE_MAX)
                async for item in self.catch_up():
                    yield item
                continue
            if position > self.last:
                self.last = position
                yield position, entry_of(payload)


def entry_of(payload: bytes) -> bytes:
    """The Entry of a `ledger.entry.v1` message (the stream sends entries, like the history)."""
    message = _position_decoder.decode(payload)
    message.pop("schema", None)
    message.pop("tenant_id", None)
    return msgspec.json.encode(message)


def last_event_id(request: Request[Any, Any, Any], after: int | None) -> int:
    header = request.headers.get("last-event-id")
    if header:
        if not header.isdigit() or len(header) > 19:
            raise ApiError("validation_error", "Last-Event-ID must be a position")
        return int(header)
    return after or 0


AccountFilter = Annotated[
    str | None, QueryParameter(min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX, required=False)
]
AfterPosition = Annotated[int | None, QueryParameter(ge=0, le=POSITION_MAX, required=False)]


@get(
    "/v1/stream",
    summary="Live entries of the tenant (SSE); Last-Event-ID resumes with nothing missed",
    responses=responses("forbidden"),
    security=SECURITY,
    media_type="text/event-stream",
    guards=[tenant_key(REPORTS_READ)],
    tags=["streams"],
)
async def stream(
    request: Request[Any, Any, Any],
    principal: PrincipalDep,
    services: ServicesDep,
    account_id: AccountFilter = None,
    after: AfterPosition = None,
) -> ServerSentEvent:
    if account_id is not None:
        check_account_id(account_id)
    start = last_event_id(request, after)
    live = LiveEntries(services, principal.tenant(), account_id, start)

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        async with live:
            async for item in live.entries():
                if item is None:
                    yield HEARTBEAT
                else:
                    yield ServerSentEventMessage(data=item[1].decode(), id=item[0], event="entry")

    return ServerSentEvent(events())


@websocket("/v1/ws")
async def live_socket(
    socket: WebSocket[Any, Any, Any],
    services: ServicesDep,
    account_id: AccountFilter = None,
    after: AfterPosition = None,
) -> None:
    """The same live entries as /v1/stream, one JSON text frame each. Authenticate with a
    header, as on every route. Close codes: 4401 unauthorized, 4403 forbidden."""
    try:
        principal = await authenticated(socket)
        principal.require_tenant(REPORTS_READ)
        if account_id is not None:
            check_account_id(account_id)
    except ApiError as error:
        await socket.close(
            code=4403 if error.code == "forbidden" else 4401, reason=error.detail[:120]
        )
        return
    await socket.accept()
    live = LiveEntries(services, principal.tenant(), account_id, after or 0)

    async def pump() -> None:
        async with live:
            async for item in live.entries():
                if item is not None:
                    await socket.send_text(item[1].decode())

    sending = asyncio.ensure_future(pump())
    closed = asyncio.ensure_future(_until_closed(socket))
    await asyncio.wait({sending, closed}, return_when=asyncio.FIRST_COMPLETED)
    for task in (sending, closed):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _until_closed(socket: WebSocket[Any, Any, Any]) -> None:
    with contextlib.suppress(Exception):
        while True:
            await socket.receive_data(mode="text")


ROUTES = [stream, live_socket]

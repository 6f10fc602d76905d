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
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.http.dependencies import ServicesDep
from api.http.guards import authenticated
from api.http.parameters import POSITION_MAX, SECURITY
from api.http.problems import ApiError, responses
from api.http.services import Services
from api.http.stream_access import access_of_token
from api.http.stream_tokens import STREAM_TOKEN_LENGTH_MAX, StreamAccess
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
TokenParam = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=STREAM_TOKEN_LENGTH_MAX,
        required=False,
        description="A stream token (POST /v1/stream-tokens), for a caller that cannot send a header",
    ),
]

# ------------------------------------------------------------ who may open a stream (issue 17)

ACCESS = "stream_access"
# The WebSocket subprotocol a browser names to be answered with, and the prefix of the one
# that carries its token: `new WebSocket(url, ["ledger.v1", "ledger.token." + token])`.
WS_SUBPROTOCOL = "ledger.v1"
WS_TOKEN_SUBPROTOCOL_PREFIX = "ledger.token."  # noqa: S105 - a name, not a secret
# Close codes of a refused WebSocket (after it is accepted, so the reason reaches the client).
WS_CLOSE_UNAUTHORIZED = 4401  # no, a bad, expired or revoked key or token; also rate limited
WS_CLOSE_FORBIDDEN = 4403  # the key lacks reports:read; the token is for another account
WS_CLOSE_BAD_REQUEST = 4500  # a bad query value or account id
WS_CLOSE_UNAVAILABLE = 4503  # too many open streams on this replica: retry later
WS_REASON_LENGTH_MAX = 120  # a close frame's reason is at most 123 bytes
WS_CLOSE_CODES = {
    "unauthorized": WS_CLOSE_UNAUTHORIZED,
    "rate_limited": WS_CLOSE_UNAUTHORIZED,
    "forbidden": WS_CLOSE_FORBIDDEN,
    "validation_error": WS_CLOSE_BAD_REQUEST,
    "unavailable": WS_CLOSE_UNAVAILABLE,
}


async def access_of(
    connection: ASGIConnection[Any, Any, Any, Any], token: str | None
) -> StreamAccess:
    """A stream token, else the caller's key with `reports:read`."""
    if token is not None:
        services: Services = connection.app.state["services"]
        return await access_of_token(services, token)
    principal = await authenticated(connection)
    principal.require_tenant(REPORTS_READ)
    return StreamAccess(tenant_id=principal.tenant())


def streamed_account(access: StreamAccess, account_id: str | None) -> str | None:
    """The account a stream is limited to: the token's, or the one asked for."""
    if account_id is not None:
        check_account_id(account_id)
    if access.account_id is None:
        return account_id
    if account_id is not None and account_id != access.account_id:
        raise ApiError("forbidden", "the stream token is limited to another account")
    return access.account_id


async def stream_reader(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """The guard of GET /v1/stream: a key with reports:read, or a stream token."""
    token = connection.query_params.get("token")
    connection.scope.setdefault("state", {})[ACCESS] = await access_of(connection, token)


@get(
    "/v1/stream",
    summary="Live entries of the tenant (SSE); Last-Event-ID resumes with nothing missed",
    responses=responses("forbidden"),
    security=SECURITY,
    media_type="text/event-stream",
    guards=[stream_reader],
    tags=["streams"],
)
async def stream(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    account_id: AccountFilter = None,
    after: AfterPosition = None,
    token: TokenParam = None,
) -> ServerSentEvent:
    """Authenticate with a key (scope `reports:read`) or `?token=` (a stream token, for an
    EventSource, which cannot send headers). A token limited to one account streams that
    account: `account_id` may be left out or must be it (else `403 forbidden`)."""
    access: StreamAccess = request.scope["state"][ACCESS]
    streamed = streamed_account(access, account_id)
    start = last_event_id(request, after)
    live = LiveEntries(services, access.tenant_id, streamed, start)

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        async with live:
            async for item in live.entries():
                if item is None:
                    yield HEARTBEAT
                else:
                    yield ServerSentEventMessage(data=item[1].decode(), id=item[0], event="entry")

    return ServerSentEvent(events())


def socket_token(socket: WebSocket[Any, Any, Any]) -> tuple[str | None, str | None]:
    """(the token, the subprotocol to answer with): from `?token=` or a subprotocol."""
    offered = [
        name.strip()
        for header in socket.headers.getall("sec-websocket-protocol", [])
        for name in header.split(",")
        if name.strip()
    ]
    token = socket.query_params.get("token")
    for name in offered:
        if name.startswith(WS_TOKEN_SUBPROTOCOL_PREFIX):
            token = name[len(WS_TOKEN_SUBPROTOCOL_PREFIX) :]
    chosen = WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else (offered[0] if offered else None)
    return token, chosen


def socket_query(socket: WebSocket[Any, Any, Any]) -> tuple[str | None, int]:
    """`account_id` and `after`, checked here so that a bad one is refused with a reason."""
    account_id = socket.query_params.get("account_id")
    if account_id is not None and not 1 <= len(account_id) <= ACCOUNT_ID_LENGTH_MAX:
        raise ApiError("validation_error", "account_id must be 1 to 128 characters")
    after = socket.query_params.get("after")
    if after is None:
        return account_id, 0
    if not (after.isascii() and after.isdigit()) or len(after) > 19 or int(after) > POSITION_MAX:
        raise ApiError("validation_error", "after must be a position")
    return account_id, int(after)


@websocket("/v1/ws")
async def live_socket(socket: WebSocket[Any, Any, Any], services: ServicesDep) -> None:
    """The same live entries as /v1/stream, one JSON text frame each. Authenticate with a
    header, `?token=` or the subprotocol `ledger.token.<token>` (offer `ledger.v1` too: the
    server answers with it). A refused connection is accepted, then closed with a code and a
    reason: 4401 unauthorized (also rate limited), 4403 forbidden, 4500 a bad query value,
    4503 too many open streams."""
    token, subprotocol = socket_token(socket)
    await socket.accept(subprotocols=subprotocol)
    try:
        account_id, after = socket_query(socket)
        access = await access_of(socket, token)
        streamed = streamed_account(access, account_id)
    except ApiError as error:
        log.info("stream_refused", code=error.code, detail=error.detail)
        await socket.close(
            code=WS_CLOSE_CODES.get(error.code, WS_CLOSE_UNAUTHORIZED),
            reason=error.detail[:WS_REASON_LENGTH_MAX],
        )
        return
    live = LiveEntries(services, access.tenant_id, streamed, after)

    async def pump() -> None:
        try:
            async with live:
                async for item in live.entries():
                    if item is not None:
                        await socket.send_text(item[1].decode())
        except ApiError as error:  # too many streams: said in the close frame
            await socket.close(
                code=WS_CLOSE_CODES.get(error.code, WS_CLOSE_UNAVAILABLE),
                reason=error.detail[:WS_REASON_LENGTH_MAX],
            )

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

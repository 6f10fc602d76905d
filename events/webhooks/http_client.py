"""One webhook POST, with the SSRF rules of docs/api.md ("Outbound webhooks"):

- `https` only, unless the operator allows `http` (LEDGER_WEBHOOKS_ALLOW_HTTP);
- the host is resolved here and every address it resolves to must be a public one (not
  private, loopback, link-local, shared, multicast or reserved: `ipaddress`'s `is_global`),
  unless the operator allows them (LEDGER_WEBHOOKS_ALLOW_PRIVATE); the connection goes to the
  address that was checked, so a DNS answer that changes in between cannot redirect it;
- redirects are not followed (a 3xx is a failed attempt);
- the whole exchange has RESPONSE_TIMEOUT_S, and at most RESPONSE_BYTES_MAX of the answer are
  read (its status decides; the rest is not read).

HTTP/1.1 by h11 over asyncio streams: one connection per attempt, closed after it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

# The whole attempt: connect, send, the answer's status and what is read of its body.
RESPONSE_TIMEOUT_S = 10.0
# Bytes of an answer read at most (an endpoint's answer is a receipt, not content).
RESPONSE_BYTES_MAX = 64 * 1024
# An endpoint's URL, at most.
URL_LENGTH_MAX = 2_048
READ_CHUNK_BYTES = 16 * 1024
USER_AGENT = "credits-ledger-webhooks/1"


class UrlRefusedError(Exception):
    """The URL breaks a rule (scheme, address): never sent to."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most RESPONSE_BYTES_MAX
    duration_ms: int


@dataclass(frozen=True)
class Rules:
    allow_http: bool = False
    allow_private: bool = False


def check_url(url: str, rules: Rules) -> tuple[str, str, int, str]:
    """(scheme, host, port, target) of an endpoint URL that keeps the rules a URL alone can
    show (its scheme, no credentials, a literal address that is public)."""
    if len(url) > URL_LENGTH_MAX or not url.isprintable() or " " in url:
        raise UrlRefusedError(f"the URL must be at most {URL_LENGTH_MAX} printable characters")
    parts = urlsplit(url)
    allowed = ("https", "http") if rules.allow_http else ("https",)
    if parts.scheme not in allowed:
        raise UrlRefusedError(f"the URL's scheme must be {' or '.join(allowed)}")
    if parts.username is not None or parts.password is not None:
        raise UrlRefusedError("the URL may not carry credentials")
    host = parts.hostname
    if not host:
        raise UrlRefusedError("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise UrlRefusedError("the URL's port is not a number from 1 to 65535") from error
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, rules)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.scheme, host, port, target


def check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, rules: Rules) -> None:
    mapped = getattr(address, "ipv4_mapped", None)
    public = address.is_global and (mapped is None or mapped.is_global)
    if not public and not rules.allow_private:
        raise UrlRefusedError(f"the address {address} is not a public one")


async def resolve(host: str, port: int, rules: Rules) -> str:
    """The first address of `host` that keeps the rules; refuses the URL if any address it
    resolves to breaks them (a name that points at both is not to be trusted)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OSError(f"cannot resolve {host}: {error}") from error
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        check_address(ipaddress.ip_address(address), rules)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return addresses[0]


async def post(url: str, body: bytes, headers: dict[str, str], rules: Rules) -> Answer:
    """POSTs `body`; the answer, or OSError / TimeoutError / h11 errors / UrlRefusedError."""
    started = time.monotonic()
    scheme, host, port, target = check_url(url, rules)
    async with asyncio.timeout(RESPONSE_TIMEOUT_S):
        address = await resolve(host, port, rules)
        context = ssl.create_default_context() if scheme == "https" else None
        reader, writer = await asyncio.open_connection(
            address, port, ssl=context, server_hostname=host if context else None
        )
        try:
            status, answer = await _exchange(reader, writer, host, port, target, body, headers)
        finally:
            writer.close()
    return Answer(status=status, body=answer, duration_ms=int((time.monotonic() - started) * 1000))


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
    target: str,
    body: bytes,
    headers: dict[str, str],
) -> tuple[int, bytes]:
    connection = h11.Connection(h11.CLIENT)
    request_headers = [
        ("host", host if port in (80, 443) else f"{host}:{port}"),
        ("user-agent", USER_AGENT),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("connection", "close"),
        *headers.items(),
    ]
    outgoing: list[h11.Request | h11.Data | h11.EndOfMessage] = [
        h11.Request(method="POST", target=target, headers=request_headers),
        h11.Data(data=body),
        h11.EndOfMessage(),
    ]
    for message in outgoing:
        data = connection.send(message)
        if data:
            writer.write(data)
    await writer.drain()
    status = 0
    answer = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            chunk = await reader.read(READ_CHUNK_BYTES)
            connection.receive_data(chunk)
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            answer += event.data
            if len(answer) >= RESPONSE_BYTES_MAX:
                break
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    return status, bytes(answer[:RESPONSE_BYTES_MAX])

"""The SSRF rules of outbound webhooks: https only unless http is allowed; no private,
loopback, link-local or other non-public address unless allowed, whether the URL names it or a
name resolves to it; no credentials in a URL. And the endpoint's event-type filter."""

from __future__ import annotations

import pytest

from events.webhooks.http_client import Rules, UrlRefusedError, check_url, resolve
from events.webhooks.messages import subscribed

STRICT = Rules()


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # http, not allowed
        "ftp://hooks.example.com/x",
        "https://10.0.0.7/x",  # private
        "https://127.0.0.1/x",  # loopback
        "https://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",  # IPv4-mapped loopback
        "https://100.64.0.1/x",  # shared address space
        "https://0.0.0.0/x",
        "https://user:pw@hooks.example.com/x",
        "https:///nohost",
        "https://hooks.example.com:99999/x",
    ],
)
def test_a_url_that_breaks_a_rule_is_refused(url: str) -> None:
    with pytest.raises(UrlRefusedError):
        check_url(url, STRICT)


def test_a_public_https_url_passes_and_the_operator_may_allow_http_and_private_addresses() -> None:
    assert check_url("https://hooks.example.com/in?x=1", STRICT) == (
        "https",
        "hooks.example.com",
        443,
        "/in?x=1",
    )
    local = Rules(allow_http=True, allow_private=True)
    assert check_url("http://127.0.0.1:8080/", local)[2] == 8080


async def test_a_name_that_resolves_to_loopback_is_refused_unless_allowed() -> None:
    with pytest.raises(UrlRefusedError):
        await resolve("localhost", 443, STRICT)
    assert await resolve("localhost", 443, Rules(allow_private=True)) in ("127.0.0.1", "::1")


@pytest.mark.parametrize(
    "patterns, message_type, expected",
    [
        ([], "entry.consume", True),
        (["*"], "low_balance", True),
        (["entry.*"], "entry.consume", True),
        (["entry.*"], "low_balance", False),
        (["topup.requested"], "topup.requested", True),
        (["entry.grant"], "entry.consume", False),
    ],
)
def test_an_endpoint_receives_the_types_it_names(
    patterns: list[str], message_type: str, expected: bool
) -> None:
    assert subscribed(patterns, message_type) is expected

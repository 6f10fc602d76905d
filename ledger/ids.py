"""Identifiers: validation of client-chosen ids and the deterministic ids of aggregates.

Aggregates that must be unique per tenant (an account, a consumption, a hold, a payment, an
idempotency key) get uuid5(tenant, kind, key): the event store's unique (originator_id, version)
then makes a duplicate impossible, on any number of writers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
import uuid

from ledger.errors import InvalidCommandError
from ledger.limits import ACCOUNT_ID_LENGTH_MAX, IDEMPOTENCY_KEY_LENGTH_MAX

NAMESPACE = uuid.UUID("6f1f2c0e-9a57-4c8e-9a43-4f1b6c2d7e10")
_WHITESPACE = re.compile(r"\s")  # what str.isspace() calls space, Unicode included
TENANT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
TENANT_ID_LENGTH_MAX = 63  # what the pattern allows


# Ids need not be secret (every lookup is within the caller's tenant and account), only unique:
# a generator seeded from os.urandom at start-up and again in every forked child, without a
# system call per id.
_random = random.Random()  # noqa: S311 - uniqueness, not secrecy
os.register_at_fork(after_in_child=_random.seed)

# Digits of an event version in a consumption id (a bigint has at most 19).
VERSION_DIGITS_MAX = 19


# Ids remembered by aggregate_id: a batch asks for the same account's, tenant's and key's id
# several times, and uuid5 was a tenth of a batch's time (docs/BENCHMARKS.md).
AGGREGATE_ID_CACHE_SIZE = 65_536


_NAMESPACE_BYTES = NAMESPACE.bytes
# RFC 4122 bits of a uuid5: version 5 in bits 76-79, the variant 10 in bits 62-63.
_UUID5_KEEP = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID5_SET = (5 << 76) | (0x8000 << 48)


@functools.lru_cache(maxsize=AGGREGATE_ID_CACHE_SIZE)
def aggregate_id(tenant_id: str, kind: str, key: str) -> uuid.UUID:
    """`uuid.uuid5(NAMESPACE, "<tenant>\\x1f<kind>\\x1f<key>")`, from the integer: the library's
    uuid5 goes through `UUID(bytes=...)`, twice the time, and every idempotency key is new."""
    return uuid.UUID(int=_uuid5_int(_NAMESPACE_BYTES, f"{tenant_id}\x1f{kind}\x1f{key}"))


def _uuid5_int(namespace: bytes, name: str) -> int:
    """The integer of `uuid.uuid5(UUID(bytes=namespace), name)`."""
    digest = hashlib.sha1(namespace + name.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:16]) & _UUID5_KEEP | _UUID5_SET


def tenant_aggregate_id(tenant_id: str) -> uuid.UUID:
    return aggregate_id(tenant_id, "tenant", "")


def account_aggregate_id(tenant_id: str, account_id: str) -> uuid.UUID:
    return aggregate_id(tenant_id, "account", account_id)


def api_key_aggregate_id(key_hash: str) -> uuid.UUID:
    return aggregate_id("", "api-key", key_hash)


# The uuid5 variant's hex digit (binary 10xx) for each hex digit of the hash at that place.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 0b11] for digit in "0123456789abcdef"}


def entry_id(account_uuid: uuid.UUID, version: int) -> str:
    """The entry of an account's event is named by the account and the event's version:
    `str(uuid.uuid5(account_uuid, str(version)))`, cut from the hash's hex digits with the
    version and variant digits put in, without an integer or UUID object (one per entry: it
    was a sixth of a rebuild's time)."""
    h = hashlib.sha1(account_uuid.bytes + str(version).encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"


def new_id() -> str:
    return str(uuid.uuid4())


def new_consumption_id(event_version: int) -> str:
    """A consumption's id, `<32 random hex digits>.<version>`, names the account event that
    records it, so a refund finds that event by its key and no record per consumption is
    written (ADR 0002)."""
    return f"{_random.getrandbits(128):032x}.{event_version}"


def consumption_event_version(consumption_id: str) -> int | None:
    """The account event version in a consumption id; None for any other string."""
    _, dot, version = consumption_id.rpartition(".")
    if (
        not dot
        or not (version.isascii() and version.isdigit())
        or len(version) > VERSION_DIGITS_MAX
    ):
        return None
    return int(version)


# Account and tenant ids judged valid, remembered: every command names both, and the same
# ones recur (a regex search per command showed in the event loop's profile).
VALID_ID_CACHE_SIZE = 65_536


@functools.lru_cache(maxsize=VALID_ID_CACHE_SIZE)
def is_printable_without_space(value: str) -> bool:
    return value.isprintable() and _WHITESPACE.search(value) is None


@functools.lru_cache(maxsize=VALID_ID_CACHE_SIZE)
def _is_tenant_id(tenant_id: str) -> bool:
    return TENANT_ID_PATTERN.fullmatch(tenant_id) is not None  # `$` alone admits a final "\n"


def check_tenant_id(tenant_id: str) -> str:
    # The length first: an over-long string is never valid, and is not kept in the cache.
    if len(tenant_id) > TENANT_ID_LENGTH_MAX or not _is_tenant_id(tenant_id):
        raise InvalidCommandError(f"tenant_id must match {TENANT_ID_PATTERN.pattern}")
    return tenant_id


def check_account_id(account_id: str) -> str:
    if not 1 <= len(account_id) <= ACCOUNT_ID_LENGTH_MAX:
        raise InvalidCommandError(f"account_id must be 1-{ACCOUNT_ID_LENGTH_MAX} characters")
    if not is_printable_without_space(account_id):
        raise InvalidCommandError("account_id may not contain whitespace or control characters")
    return account_id


def check_idempotency_key(key: str) -> str:
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
        raise InvalidCommandError(
            f"idempotency key must be 1-{IDEMPOTENCY_KEY_LENGTH_MAX} printable characters"
        )
    return key

"""Commands: what a caller asks the ledger to do. Verbs, one frozen struct each.

A command's fields are exactly what the wire carries: a route decodes its body into the
command (once, strictly: api/http/body.py), and a batch item is the same struct with its `op`
tag. Who asks comes with it, not in it: an `Envelope` adds the tenant (always taken from the
API key, never from a body) and the acting key. Each area defines its commands
(ledger/accounts/commands.py, ledger/tenants/commands.py) and registers them (ledger/areas.py).

`validate(envelope, now)` checks a command before it reaches the writer: a command that fails
is rejected with InvalidCommandError and nothing is recorded (not even against its idempotency
key). `fingerprint(envelope)` identifies a request for idempotency.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from ledger.fields import AccountId, IdempotencyKey
from ledger.ids import check_account_id, check_idempotency_key, check_tenant_id

C_co = TypeVar("C_co", bound="Command", covariant=True)


class Command(
    msgspec.Struct, tag_field="op", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    idempotency_key: IdempotencyKey | None = None

    # The fields a fingerprint always includes, defaults too: each command's fields as they
    # were when fingerprints were first stored. Any field added since counts only when it
    # differs from its default, so adding a field never turns the retry of a request made
    # before into `idempotency_key_reused`. Never change a command's list once set.
    fingerprint_fields: ClassVar[frozenset[str]] = frozenset()

    def check(self, now: datetime) -> None:
        """Raises InvalidCommandError unless the command's own fields are well-formed."""

    def canonical(self) -> Command:
        """The command as a fingerprint sees it: a field left out and the value the ledger
        then uses are the same request."""
        return self


class AccountCommand(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_id: AccountId = ""


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who did it, as an entry says: the API key that sent the command (None: the operator, or
    the ledger itself) and, from the web console, its signed-in principal."""

    key_id: str | None = None
    principal: str | None = None


NOBODY = Actor()  # what time (an expiry) and the ledger's own work are done by


class Envelope(msgspec.Struct, Generic[C_co], frozen=True, kw_only=True):
    """A command with who sends it: the tenant it acts in, the API key that sent it (None: the
    platform operator, or the ledger itself) and, for a command sent from the web console, the
    console's signed-in principal (`actor`, api/console/sessions.py: `console:operator` or
    `console:<key_id>`, with the session's id)."""

    tenant_id: str
    command: C_co
    key_id: str | None = None
    actor: str | None = None

    @property
    def by(self) -> Actor:
        """Who sent the command, as its entries record it."""
        return Actor(key_id=self.key_id, principal=self.actor)


def validate(envelope: Envelope[Any], now: datetime) -> None:
    """Raises InvalidCommandError unless the command is well-formed."""
    check_tenant_id(envelope.tenant_id)
    command = envelope.command
    if command.idempotency_key is not None:
        check_idempotency_key(command.idempotency_key)
    if isinstance(command, AccountCommand):
        check_account_id(command.account_id)
    command.check(now)


_fingerprint_encoder = msgspec.json.Encoder(order="sorted")


@functools.cache
def _defaults(cls: type[Command]) -> dict[str, Any]:
    defaults = {}
    for info in msgspec.structs.fields(cls):
        if info.default is not msgspec.NODEFAULT:
            defaults[info.name] = info.default
        elif info.default_factory is not msgspec.NODEFAULT:
            defaults[info.name] = info.default_factory()
    return defaults


def fingerprint(envelope: Envelope[Any]) -> str:
    """SHA-256 of the request without its idempotency key: same request, same fingerprint.

    The JSON hashed is the command's, keys sorted, with its `op`, `tenant_id` and a null
    `idempotency_key`: what the ledger has hashed since fingerprints were first stored
    (tests/integration/test_legacy_store.py holds it to fingerprints stored then)."""
    command: Command = envelope.command.canonical()
    cls: type[Command] = type(command)
    config = cls.__struct_config__
    fields: dict[str, Any] = {
        str(config.tag_field): config.tag,
        "tenant_id": envelope.tenant_id,
        "idempotency_key": None,
    }
    always = cls.fingerprint_fields
    defaults = _defaults(cls)
    for name in cls.__struct_fields__:
        if name == "idempotency_key":
            continue
        value = getattr(command, name)
        if name in always or name not in defaults or value != defaults[name]:
            fields[name] = value
    return hashlib.sha256(_fingerprint_encoder.encode(fields)).hexdigest()

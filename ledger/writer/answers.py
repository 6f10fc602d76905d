"""Running a command in a batch: its idempotency key first, then its area's handler; and the
answers kept per idempotency key or payment_ref, to be given again.

A stored answer is the view's JSON under the view's registered name (ledger_results.
result_type): `replay` decodes it into the same struct. A key's secret is never written down.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.commands import Envelope, fingerprint
from ledger.errors import IdempotencyKeyReusedError
from ledger.ids import aggregate_id
from ledger.outcome import Outcome
from ledger.registry import Registry
from ledger.store.stored_results import StoredResult
from ledger.unit_of_work import UnitOfWork

_result_encoder = msgspec.json.Encoder()


class Answers:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._decoders = {
            name: msgspec.json.Decoder(view) for name, view in registry.view_types.items()
        }

    def execute(self, envelope: Envelope[Any], session: UnitOfWork) -> Outcome:
        """The command's answer: the one stored under its idempotency key, or its handler's
        (stored under the key with the batch)."""
        session.checkpoint()  # nothing of this command before here
        command = envelope.command
        key = command.idempotency_key
        spec = self.registry.spec_of(command)
        handler = spec.handler
        if key is None:
            return handler(envelope, session)
        stored = session.result(aggregate_id(envelope.tenant_id, spec.key_space, key))
        if stored is not None:
            if stored.fingerprint != fingerprint(envelope):
                raise IdempotencyKeyReusedError(
                    f"idempotency key {key!r} was used with a different request"
                )
            return self.replay(stored)
        outcome = handler(envelope, session)
        session.remember(spec.key_space, key, envelope, outcome)
        return outcome

    def stored(
        self, kind: str, key: str, envelope: Envelope[Any], outcome: Outcome
    ) -> StoredResult:
        value = outcome.value
        without_secret = getattr(value, "without_secret", None)
        if without_secret is not None:
            value = without_secret()  # a key's secret is never written down
        return StoredResult(
            id=aggregate_id(envelope.tenant_id, kind, key),
            fingerprint=fingerprint(envelope),
            result_type=self.registry.view_names[type(value)],
            result=_result_encoder.encode(value),
            created=outcome.created,
            entry_ref=outcome.entry_ref,
        )

    def replay(self, stored: StoredResult) -> Outcome:
        value = self._decoders[stored.result_type].decode(stored.result)
        return Outcome(
            value=value, created=stored.created, replayed=True, entry_ref=stored.entry_ref
        )

"""Answers kept per idempotency key or payment_ref, for as long as the ledger."""

from __future__ import annotations

from uuid import UUID

import msgspec

from ledger.store.recorder import StoredRow


class StoredResult(msgspec.Struct, frozen=True, kw_only=True):
    """A command's answer kept for as long as the ledger: per idempotency key or payment_ref.

    Not an event: a row of `ledger_results`, written in the same statement as the batch's
    events (ledger/recorder.py), so it commits with them or not at all, and its primary key
    makes a key or payment_ref usable once across every writer (ADR 0002). `fingerprint`
    identifies the request; `result` is the answer's JSON without its position, which
    `entry_ref` (the account event's id and version) finds again on a replay.
    """

    id: UUID
    fingerprint: str
    result_type: str
    result: bytes
    created: bool
    entry_ref: tuple[UUID, int] | None

    def to_row(self) -> StoredRow:
        ref = self.entry_ref
        return StoredRow(
            self.id,
            self.fingerprint,
            self.result_type,
            self.result,
            self.created,
            ref[0] if ref else None,
            ref[1] if ref else None,
        )

    @classmethod
    def from_row(cls, row: StoredRow) -> StoredResult:
        ref = None
        if row.entry_id is not None and row.entry_version is not None:
            ref = (row.entry_id, row.entry_version)
        return cls(
            id=row.id,
            fingerprint=row.fingerprint,
            result_type=row.result_type,
            result=bytes(row.result),
            created=row.created,
            entry_ref=ref,
        )

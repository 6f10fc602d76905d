"""Subjects: `<prefix>.<tenant_id>.<account_token>.<type>`, the prefix `ledger` unless a
deployment configures its own (LEDGER_NATS_SUBJECT_PREFIX: it replaces that first token only,
so two deployments on one NATS each have a stream of their own; docs/api.md).

`account_token` is the account id with `%`, `.`, `*`, `>` and whitespace percent-encoded, so
any account id is exactly one subject token and wildcards in it mean nothing.
"""

from __future__ import annotations

PREFIX = "ledger"  # a configured prefix is one plain subject token (api/settings.py checks it)
_ESCAPED = {"%", ".", "*", ">"}


def account_token(account_id: str) -> str:
    out: list[str] = []
    for char in account_id:
        if char in _ESCAPED or char.isspace():
            out.extend(f"%{byte:02X}" for byte in char.encode())
        else:
            out.append(char)
    return "".join(out)


def entry_subject(tenant_id: str, account_id: str, entry_type: str, prefix: str = PREFIX) -> str:
    return f"{prefix}.{tenant_id}.{account_token(account_id)}.{entry_type}"


def stream_subjects(prefix: str = PREFIX) -> list[str]:
    """What a deployment's stream takes: everything under its prefix."""
    return [f"{prefix}.>"]


def tenant_subjects(tenant_id: str, account_id: str | None = None, prefix: str = PREFIX) -> str:
    """What a subscriber to one tenant (or one of its accounts) listens to."""
    if account_id is None:
        return f"{prefix}.{tenant_id}.>"
    return f"{prefix}.{tenant_id}.{account_token(account_id)}.>"

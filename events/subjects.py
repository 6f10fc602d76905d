"""Subjects: `ledger.<tenant_id>.<account_token>.<type>` (docs/api.md).

`account_token` is the account id with `%`, `.`, `*`, `>` and whitespace percent-encoded, so
any account id is exactly one subject token and wildcards in it mean nothing.
"""

from __future__ import annotations

PREFIX = "ledger"
_ESCAPED = {"%", ".", "*", ">"}


def account_token(account_id: str) -> str:
    out: list[str] = []
    for char in account_id:
        if char in _ESCAPED or char.isspace():
            out.extend(f"%{byte:02X}" for byte in char.encode())
        else:
            out.append(char)
    return "".join(out)


def entry_subject(tenant_id: str, account_id: str, entry_type: str) -> str:
    return f"{PREFIX}.{tenant_id}.{account_token(account_id)}.{entry_type}"


def tenant_subjects(tenant_id: str, account_id: str | None = None) -> str:
    """What a subscriber to one tenant (or one of its accounts) listens to."""
    if account_id is None:
        return f"{PREFIX}.{tenant_id}.>"
    return f"{PREFIX}.{tenant_id}.{account_token(account_id)}.>"

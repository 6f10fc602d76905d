"""The path, query and header parameters routes share, with their bounds (the OpenAPI
document shows them; Litestar refuses what breaks them with a 400)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import HeaderParameter, Parameter, QueryParameter

from ledger.limits import ACCOUNT_ID_LENGTH_MAX, IDEMPOTENCY_KEY_LENGTH_MAX

# Ids the ledger makes (holds, API keys) are uuids; the bound leaves room and no more.
MADE_ID_LENGTH_MAX = 64
POSITION_MAX = 2**62

AccountIdParam = Annotated[
    str,
    Parameter(
        description="The client's account id", min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX
    ),
]
HoldIdParam = Annotated[str, Parameter(min_length=1, max_length=MADE_ID_LENGTH_MAX)]
KeyIdParam = Annotated[str, Parameter(min_length=1, max_length=MADE_ID_LENGTH_MAX)]
TenantIdParam = Annotated[
    str, Parameter(min_length=2, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
]
IdempotencyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description="Same key, same request: the stored answer again (Idempotent-Replayed: true).",
        required=False,
    ),
]
MinPosition = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=POSITION_MAX,
        required=False,
        description="Wait (at most 5 s) until the read models hold this position (from a command's answer)",
    ),
]

SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]

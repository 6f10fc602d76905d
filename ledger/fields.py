"""The field types commands share, with their bounds: what decoding a request checks and what
the OpenAPI document shows. `check()` of each command applies the rules these cannot say
(printable text, metadata size, expiry ahead), and the bounds again for commands built in code.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from ledger.limits import (
    ACCOUNT_ID_LENGTH_MAX,
    AMOUNT_MAX,
    IDEMPOTENCY_KEY_LENGTH_MAX,
    PAYMENT_REF_LENGTH_MAX,
    PRIORITY_MAX,
    TEXT_LENGTH_MAX,
)

Amount = Annotated[int, Meta(ge=1, le=AMOUNT_MAX, description="Credits, 1 to 10^15")]
SignedAmount = Annotated[
    int, Meta(ge=-AMOUNT_MAX, le=AMOUNT_MAX, description="Credits, signed, not 0")
]
Text = Annotated[str, Meta(min_length=1, max_length=TEXT_LENGTH_MAX)]
OptionalText = Annotated[str, Meta(max_length=TEXT_LENGTH_MAX)]
AccountId = Annotated[
    str,
    Meta(
        max_length=ACCOUNT_ID_LENGTH_MAX,
        pattern=r"^[^\s]*$",
        description=(
            "The client's account id: required in a batch item; on "
            "/v1/accounts/{account_id}/... routes the path gives it and the body leaves it out"
        ),
    ),
]
TenantId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
IdempotencyKey = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description=(
            "In a batch item, the command's own key; on other routes the Idempotency-Key "
            "header gives it and the body leaves it out"
        ),
    ),
]
PaymentRef = Annotated[str, Meta(min_length=1, max_length=PAYMENT_REF_LENGTH_MAX)]
Priority = Annotated[int, Meta(ge=0, le=PRIORITY_MAX, description="Lower burns first")]
Metadata = Annotated[
    dict[str, Any],
    Meta(description="A JSON object of at most 50 keys and 4,096 bytes; no floats"),
]

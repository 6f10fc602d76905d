"""Operating errors of the ledger. Each maps to one problem `code` of docs/api.md."""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base of every error a client can cause; `code` is the stable API code."""

    code = "ledger_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with every attribute (`available`, `index`, `cause`), whatever the
        subclass's constructor asks: the writer process sends its errors this way."""
        return (_restore, (type(self), self.detail, dict(self.__dict__)))


class InvalidCommandError(LedgerError):
    code = "validation_error"


class NotFoundError(LedgerError):
    code = "not_found"


class TenantNotFoundError(NotFoundError):
    pass


class AccountNotFoundError(NotFoundError):
    pass


class HoldNotFoundError(NotFoundError):
    pass


class ConsumptionNotFoundError(NotFoundError):
    pass


class ApiKeyNotFoundError(NotFoundError):
    pass


class InsufficientCreditsError(LedgerError):
    code = "insufficient_credits"

    def __init__(self, detail: str, *, available: int) -> None:
        super().__init__(detail)
        self.available = available


class ConflictError(LedgerError):
    code = "conflict"


class TenantExistsError(ConflictError):
    pass


class HoldNotActiveError(ConflictError):
    pass


class RefundExceedsRefundableError(ConflictError):
    pass


class PaymentAlreadyCreditedError(ConflictError):
    pass


class ApiKeyNotActiveError(ConflictError):
    """An API key that is revoked, expired or already rotated cannot be rotated."""


class LimitExceededError(ConflictError):
    """A per-account bound of limits.py would be crossed (open lots, active holds, balance)."""


class WriteConflictError(ConflictError):
    """Another writer kept changing the same aggregates; nothing was recorded. Safe to retry."""


class AtomicBatchFailedError(ConflictError):
    def __init__(self, detail: str, *, index: int, cause: LedgerError) -> None:
        super().__init__(detail)
        self.index = index
        self.cause = cause


class PaymentNotFoundError(NotFoundError):
    """A reversal names a payment_ref no purchase of this account was credited with."""


class QuoteNotFoundError(NotFoundError):
    pass


class QuoteExpiredError(LedgerError):
    code = "quote_expired"


class QuoteUsedError(LedgerError):
    code = "quote_used"


class QuoteMismatchError(LedgerError):
    """A purchase names a quote for another price or another account."""

    code = "quote_mismatch"


class IdempotencyKeyReusedError(LedgerError):
    code = "idempotency_key_reused"


class IdempotencyKeyInUseError(LedgerError):
    code = "idempotency_key_in_use"


class UnavailableError(LedgerError):
    """The event store could not be reached; nothing was recorded."""

    code = "unavailable"


def _restore(cls: type[LedgerError], detail: str, state: dict[str, Any]) -> LedgerError:
    error = cls.__new__(cls)
    Exception.__init__(error, detail)
    error.__dict__.update(state)
    return error

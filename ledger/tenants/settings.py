"""A tenant's settings: one struct, stored in the Tenant's events as the JSON object it always was."""

from __future__ import annotations

from typing import Literal

import msgspec

from ledger.checks import check_currency, parse_decimal
from ledger.errors import InvalidCommandError
from ledger.limits import AMOUNT_MAX, EXPIRY_HORIZON_MAX, OVERDRAFT_LIMIT_MAX, PURCHASE_RATES_MAX

ReversalPolicy = Literal["debt", "remaining"]


class TenantSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    signup_bonus: int = 0
    signup_bonus_expires_in_days: int | None = None
    overdraft_limit: int = 0
    low_balance_threshold: int | None = None
    purchase_rates: dict[str, str] = {}  # credits per one unit of each currency, decimal strings
    # What a reversed purchase takes back of what was already spent (docs/adr/0008): "debt"
    # (all of it: other credits, then below zero), "remaining" (only what its lot has left).
    # UNSET (left out of the stored and answered settings, as before it existed) is "debt".
    reversal_policy: ReversalPolicy | msgspec.UnsetType = msgspec.UNSET

    def check(self) -> None:
        check_settings(self)

    @property
    def reversal(self) -> str:
        return "debt" if self.reversal_policy is msgspec.UNSET else self.reversal_policy


class TenantSettingsPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The settings a PATCH changes; those it leaves out stay as they are."""

    signup_bonus: int | msgspec.UnsetType = msgspec.UNSET
    signup_bonus_expires_in_days: int | msgspec.UnsetType | None = msgspec.UNSET
    overdraft_limit: int | msgspec.UnsetType = msgspec.UNSET
    low_balance_threshold: int | msgspec.UnsetType | None = msgspec.UNSET
    purchase_rates: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    reversal_policy: ReversalPolicy | msgspec.UnsetType = msgspec.UNSET

    def check(self) -> None:
        check_settings(self)

    def applied_to(self, settings: TenantSettings) -> TenantSettings:
        changes = msgspec.structs.asdict(self)
        return msgspec.structs.replace(
            settings,
            **{name: value for name, value in changes.items() if value is not msgspec.UNSET},
        )


def check_settings(settings: TenantSettings | TenantSettingsPatch) -> None:
    fields = msgspec.structs.asdict(settings)
    for name in ("signup_bonus", "overdraft_limit"):
        value = fields[name]
        if isinstance(value, int) and not 0 <= value <= OVERDRAFT_LIMIT_MAX:
            raise InvalidCommandError(f"{name} must be from 0 to {OVERDRAFT_LIMIT_MAX}")
    days = fields["signup_bonus_expires_in_days"]
    if isinstance(days, int) and not 1 <= days <= EXPIRY_HORIZON_MAX.days:
        raise InvalidCommandError(
            f"signup_bonus_expires_in_days must be from 1 to {EXPIRY_HORIZON_MAX.days}"
        )
    threshold = fields["low_balance_threshold"]
    if isinstance(threshold, int) and not -OVERDRAFT_LIMIT_MAX <= threshold <= AMOUNT_MAX:
        raise InvalidCommandError("low_balance_threshold is out of range")
    rates = fields["purchase_rates"]
    if isinstance(rates, dict):
        if len(rates) > PURCHASE_RATES_MAX:
            raise InvalidCommandError(
                f"purchase_rates may name at most {PURCHASE_RATES_MAX} currencies"
            )
        for currency, rate in rates.items():
            check_currency(currency)
            parse_decimal(rate, f"purchase_rates.{currency}", positive=True)

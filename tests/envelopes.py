"""Commands as a tenant sends them, for tests: `GrantCredits(tenant_id="acme", account_id=...,
amount=...)` is the Envelope the writer takes, the tenant around the command (`by_key=`
names the acting API key).

Each name is the command's own: the factory takes the tenant (and, optionally, the acting
key's id) with the command's fields and builds the real struct, so a field a command does
not have fails here as it would on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ledger.accounts import commands as accounts
from ledger.accounts.commands import Price
from ledger.commands import Command, Envelope, fingerprint, validate
from ledger.payments import commands as payments
from ledger.pricing import commands as pricing
from ledger.pricing.rules import PriceRule, Tier
from ledger.tenants import commands as tenants
from ledger.tenants.settings import TenantSettings, TenantSettingsPatch
from ledger.topups import commands as topups

__all__ = [
    "Command",
    "Envelope",
    "Price",
    "PriceRule",
    "TenantSettings",
    "TenantSettingsPatch",
    "Tier",
    "check",
    "fingerprint",
]


def _in_tenant(command_class: type[Command]) -> Callable[..., Envelope[Any]]:
    def make(*, tenant_id: str, by_key: str | None = None, **fields: Any) -> Envelope[Any]:
        return Envelope(tenant_id=tenant_id, command=command_class(**fields), key_id=by_key)

    make.__name__ = command_class.__name__
    make.__doc__ = command_class.__doc__
    return make


def _create_tenant(
    *, tenant_id: str, by_key: str | None = None, **fields: Any
) -> Envelope[tenants.CreateTenant]:
    """CreateTenant names the tenant it creates, which its envelope carries too."""
    command = tenants.CreateTenant(tenant_id=tenant_id, **fields)
    return Envelope(tenant_id=tenant_id, command=command, key_id=by_key)


OpenAccount = _in_tenant(accounts.OpenAccount)
GrantCredits = _in_tenant(accounts.GrantCredits)
PurchaseCredits = _in_tenant(accounts.PurchaseCredits)
ConsumeCredits = _in_tenant(accounts.ConsumeCredits)
RefundConsumption = _in_tenant(accounts.RefundConsumption)
PlaceHold = _in_tenant(accounts.PlaceHold)
CaptureHold = _in_tenant(accounts.CaptureHold)
ReleaseHold = _in_tenant(accounts.ReleaseHold)
AdjustBalance = _in_tenant(accounts.AdjustBalance)
ExpireCredits = _in_tenant(accounts.ExpireCredits)
ExpireDue = _in_tenant(accounts.ExpireDue)
GetAccount = _in_tenant(accounts.GetAccount)
GetHold = _in_tenant(accounts.GetHold)
CreateTenant = _create_tenant
UpdateTenant = _in_tenant(tenants.UpdateTenant)
CreateApiKey = _in_tenant(tenants.CreateApiKey)
RevokeApiKey = _in_tenant(tenants.RevokeApiKey)
RotateApiKey = _in_tenant(tenants.RotateApiKey)
GetTenant = _in_tenant(tenants.GetTenant)
DisableTenant = _in_tenant(tenants.DisableTenant)
EnableTenant = _in_tenant(tenants.EnableTenant)
ReverseCredits = _in_tenant(accounts.ReverseCredits)
PublishPriceBook = _in_tenant(pricing.PublishPriceBook)
GetPriceBook = _in_tenant(pricing.GetPriceBook)
GetPriceBookHistory = _in_tenant(pricing.GetPriceBookHistory)
CreateQuote = _in_tenant(pricing.CreateQuote)
GetPayment = _in_tenant(payments.GetPayment)
SetAccountTopUp = _in_tenant(topups.SetAccountTopUp)
SetTenantTopUp = _in_tenant(topups.SetTenantTopUp)
GetAccountTopUp = _in_tenant(topups.GetAccountTopUp)
GetTenantTopUp = _in_tenant(topups.GetTenantTopUp)
RequestTopUp = _in_tenant(topups.RequestTopUp)
RetryTopUp = _in_tenant(topups.RetryTopUp)

check = validate


def changed(envelope: Envelope[Any], **fields: Any) -> Envelope[Any]:
    """The same request with some of its command's fields changed."""
    command = msgspec.structs.replace(envelope.command, **fields)
    return msgspec.structs.replace(envelope, command=command)

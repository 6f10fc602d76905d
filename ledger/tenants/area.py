"""The tenants area: tenant and API key commands (create, rotate, revoke), and their views. Their routes are the
operator's and a tenant's own key routes, written out in api/http/tenants.py."""

from __future__ import annotations

from ledger.registry import Area, CommandSpec
from ledger.tenants import commands as c
from ledger.tenants import handlers as h
from ledger.tenants.api_keys import KEYS_MANAGE
from ledger.tenants.views import ApiKeyView, TenantView

AREA = Area(
    name="tenants",
    views={"tenant": TenantView, "api_key": ApiKeyView},
    commands=[
        CommandSpec(c.CreateTenant, h.create_tenant, TenantView),
        CommandSpec(c.UpdateTenant, h.update_tenant, TenantView),
        CommandSpec(c.CreateApiKey, h.create_api_key, ApiKeyView, scope=KEYS_MANAGE),
        CommandSpec(c.RevokeApiKey, h.revoke_api_key, ApiKeyView, scope=KEYS_MANAGE),
        CommandSpec(c.RotateApiKey, h.rotate_api_key, ApiKeyView, scope=KEYS_MANAGE),
        CommandSpec(c.GetTenant, h.get_tenant, TenantView, query=True),
    ],
)

"""Reading auto top-up policies (accounts:read). Setting them are standard command routes
(ledger/topups/area.py); requests and retries are the topups role's (api/roles/topups.py)."""

from __future__ import annotations

from litestar import Controller, get

from api.http.dependencies import PrincipalDep, ServicesDep
from api.http.guards import tenant_key
from api.http.parameters import SECURITY, AccountIdParam
from api.http.problems import responses
from ledger.tenants.api_keys import ACCOUNTS_READ
from ledger.topups.commands import GetAccountTopUp, GetTenantTopUp
from ledger.topups.views import AccountTopUpView, TopUpPolicyView


class TopUpController(Controller):
    tags = ["topups"]
    guards = [tenant_key(ACCOUNTS_READ)]
    security = SECURITY

    @get(
        "/v1/accounts/{account_id:str}/auto-topup",
        summary="The auto top-up policy that applies to the account, and its requests",
        responses=responses("forbidden", "not_found"),
    )
    async def read_account_topup(
        self, principal: PrincipalDep, services: ServicesDep, account_id: AccountIdParam
    ) -> AccountTopUpView:
        """The policy that applies to the account (its own, else the tenant's default: `source`
        says which), the request open now, how many were requested this calendar month (UTC),
        and how the last one ended."""
        command = GetAccountTopUp(account_id=account_id)
        outcome = await services.writer.submit(principal.envelope(command))
        assert isinstance(outcome.value, AccountTopUpView)
        return outcome.value

    @get(
        "/v1/auto-topup",
        summary="The tenant's default auto top-up policy",
        responses=responses("forbidden"),
    )
    async def read_tenant_topup(
        self, principal: PrincipalDep, services: ServicesDep
    ) -> TopUpPolicyView:
        """The tenant's default policy, for the accounts without their own; `policy` null
        while none is set."""
        outcome = await services.writer.submit(principal.envelope(GetTenantTopUp()))
        assert isinstance(outcome.value, TopUpPolicyView)
        return outcome.value

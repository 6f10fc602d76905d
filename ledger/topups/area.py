"""The auto top-up area: policies (an account's, the tenant's default), the record of each
account's requests, the command the topups role sends on a crossing, and the retry of an open
request, which the scheduler sends once due (ledger/topups/schedules.py)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.commands import Envelope
from ledger.ids import account_aggregate_id
from ledger.registry import SCHEDULE_KEYS, Area, CommandSpec, Route
from ledger.tenants.api_keys import ACCOUNTS_READ, ACCOUNTS_WRITE
from ledger.topups import commands as c
from ledger.topups import handlers as h
from ledger.topups.schedules import SCHEDULES
from ledger.topups.views import AccountTopUpView, TopUpOutcome, TopUpPolicyView


def _retrying(envelope: Envelope[Any]) -> list[UUID]:
    """A retry's account and its top-up record: loaded with the scheduler's batch."""
    tenant_id, account_id = envelope.tenant_id, envelope.command.account_id
    return [account_aggregate_id(tenant_id, account_id), h.record_id(tenant_id, account_id)]


AREA = Area(
    name="topups",
    views={
        "account_topup": AccountTopUpView,
        "topup_policy": TopUpPolicyView,
        "topup_outcome": TopUpOutcome,
    },
    commands=[
        CommandSpec(
            c.SetAccountTopUp,
            h.set_account_topup,
            AccountTopUpView,
            scope=ACCOUNTS_WRITE,
            route=Route(
                "PUT",
                "/v1/accounts/{account_id:str}/auto-topup",
                "Set the account's auto top-up policy",
                status=200,
                errors=("not_found", "idempotency_key_reused"),
            ),
        ),
        CommandSpec(
            c.SetTenantTopUp,
            h.set_tenant_topup,
            TopUpPolicyView,
            scope=ACCOUNTS_WRITE,
            route=Route(
                "PUT",
                "/v1/auto-topup",
                "Set the tenant's default auto top-up policy",
                status=200,
                errors=("not_found", "idempotency_key_reused"),
            ),
        ),
        CommandSpec(
            c.GetAccountTopUp,
            h.get_account_topup,
            AccountTopUpView,
            scope=ACCOUNTS_READ,
            query=True,
        ),
        CommandSpec(
            c.GetTenantTopUp, h.get_tenant_topup, TopUpPolicyView, scope=ACCOUNTS_READ, query=True
        ),
        CommandSpec(c.RequestTopUp, h.request_topup, TopUpOutcome),
        CommandSpec(
            c.RetryTopUp, h.retry_topup, TopUpOutcome, loads=_retrying, key_space=SCHEDULE_KEYS
        ),
    ],
    schedules=SCHEDULES,
)

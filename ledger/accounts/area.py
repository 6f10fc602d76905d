"""The accounts area: its commands, their handlers, scopes and routes, and its views."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.accounts import commands as c
from ledger.accounts import handlers as h
from ledger.accounts.schedules import SCHEDULES
from ledger.accounts.views import AccountView, Entry, HoldView
from ledger.commands import Envelope
from ledger.ids import account_aggregate_id, aggregate_id
from ledger.registry import SCHEDULE_KEYS, Area, CommandSpec, Route
from ledger.tenants.api_keys import ACCOUNTS_READ, ACCOUNTS_WRITE, CREDITS_CONSUME

ACCOUNT = "/v1/accounts/{account_id:str}"
HOLD = ACCOUNT + "/holds/{hold_id:str}"
# What every command route can answer beyond the common problems.
COMMAND_ERRORS = (
    "forbidden",
    "not_found",
    "conflict",
    "idempotency_key_reused",
    "idempotency_key_in_use",
)


def _payment(envelope: Envelope[Any]) -> list[UUID]:
    return [aggregate_id(envelope.tenant_id, "payment", envelope.command.payment_ref)]


def _opened(envelope: Envelope[Any]) -> UUID:
    return account_aggregate_id(envelope.tenant_id, envelope.command.account_id)


def _expiring(envelope: Envelope[Any]) -> list[UUID]:
    """An expiry's account, and the record of its hold when it is a hold's."""
    command = envelope.command
    loads = [account_aggregate_id(envelope.tenant_id, command.account_id)]
    if command.hold_id is not None:
        loads.append(aggregate_id(envelope.tenant_id, "hold", command.hold_id))
    return loads


AREA = Area(
    name="accounts",
    views={"entry": Entry, "account": AccountView, "hold": HoldView},
    schedules=SCHEDULES,
    commands=[
        CommandSpec(
            c.OpenAccount,
            h.open_account,
            AccountView,
            scope=ACCOUNTS_WRITE,
            creates=_opened,
            route=Route(
                "PUT",
                ACCOUNT,
                "Open an account (the signup bonus is granted exactly once)",
                errors=(
                    "forbidden",
                    "not_found",
                    "idempotency_key_reused",
                    "idempotency_key_in_use",
                ),
                also={200: "The account already exists"},
            ),
        ),
        CommandSpec(
            c.GrantCredits,
            h.grant_credits,
            Entry,
            scope=ACCOUNTS_WRITE,
            batch=True,
            route=Route(
                "POST", ACCOUNT + "/grants", "Grant credits (a new lot)", errors=COMMAND_ERRORS
            ),
        ),
        CommandSpec(
            c.PurchaseCredits,
            h.purchase_credits,
            Entry,
            scope=ACCOUNTS_WRITE,
            batch=True,
            result_keys=_payment,
            route=Route(
                "POST",
                ACCOUNT + "/purchases",
                "Credit a purchase; a repeated payment_ref is never credited twice",
                errors=(*COMMAND_ERRORS, "quote_expired", "quote_used", "quote_mismatch"),
            ),
        ),
        CommandSpec(
            c.ConsumeCredits,
            h.consume_credits,
            Entry,
            scope=CREDITS_CONSUME,
            batch=True,
            route=Route(
                "POST",
                ACCOUNT + "/consumptions",
                "Consume credits (burn-down: priority, earliest expiry, oldest)",
                errors=(*COMMAND_ERRORS, "insufficient_credits"),
            ),
        ),
        CommandSpec(
            c.RefundConsumption,
            h.refund_consumption,
            Entry,
            scope=CREDITS_CONSUME,
            batch=True,
            route=Route(
                "POST",
                ACCOUNT + "/refunds",
                "Refund a consumption (never more than is still refundable)",
                errors=COMMAND_ERRORS,
            ),
        ),
        CommandSpec(
            c.PlaceHold,
            h.place_hold,
            HoldView,
            scope=CREDITS_CONSUME,
            batch=True,
            route=Route(
                "POST",
                ACCOUNT + "/holds",
                "Reserve credits for a later capture",
                errors=(*COMMAND_ERRORS, "insufficient_credits"),
            ),
        ),
        CommandSpec(
            c.CaptureHold,
            h.capture_hold,
            Entry,
            scope=CREDITS_CONSUME,
            batch=True,
            route=Route(
                "POST",
                HOLD + "/capture",
                "Capture at most what is held; the rest is released",
                errors=COMMAND_ERRORS,
                body="optional",
            ),
        ),
        CommandSpec(
            c.ReleaseHold,
            h.release_hold,
            Entry,
            scope=CREDITS_CONSUME,
            batch=True,
            route=Route(
                "POST",
                HOLD + "/release",
                "Release a hold",
                status=200,
                errors=COMMAND_ERRORS,
                body="none",
            ),
        ),
        CommandSpec(
            c.AdjustBalance,
            h.adjust_balance,
            Entry,
            scope=ACCOUNTS_WRITE,
            batch=True,
            route=Route(
                "POST",
                ACCOUNT + "/adjustments",
                "Correct a balance (signed; may not go below -overdraft)",
                errors=(*COMMAND_ERRORS, "insufficient_credits"),
            ),
        ),
        CommandSpec(
            c.ReverseCredits,
            h.reverse_credits,
            Entry,
            scope=ACCOUNTS_WRITE,
            result_keys=_payment,
            route=Route(
                "POST",
                ACCOUNT + "/reversals",
                "Take back a purchase whose payment was refunded or disputed",
                errors=COMMAND_ERRORS,
            ),
        ),
        CommandSpec(c.ExpireCredits, h.expire_credits, AccountView),
        CommandSpec(
            c.ExpireDue, h.expire_due, AccountView, loads=_expiring, key_space=SCHEDULE_KEYS
        ),
        CommandSpec(c.GetAccount, h.get_account, AccountView, scope=ACCOUNTS_READ, query=True),
        CommandSpec(c.GetHold, h.get_hold, HoldView, scope=ACCOUNTS_READ, query=True),
    ],
)

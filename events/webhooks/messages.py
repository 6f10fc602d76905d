"""Webhook messages: what the ledger publishes on NATS, as Standard Webhooks payloads.

Each message is `{"type": ..., "timestamp": ..., "data": ...}`: `data` is the NATS payload
itself (`ledger.entry.v1` or `ledger.low_balance.v1`, events/contract.py), `type` is
`entry.<entry type>` (`entry.consume`, `entry.purchase`, ...), `low_balance`, or
`topup.requested` for the entry that asks for an auto top-up. Its id (the `webhook-id`) is
`msg_<position>` (`msg_<position>_low_balance`): the same on every attempt and every endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec

from events.contract import entry_message, low_balance_message
from ledger.accounts.views import Entry

# Entry types whose message type is not `entry.<type>`.
MESSAGE_TYPE_OF_ENTRY = {"topup_requested": "topup.requested"}
LOW_BALANCE_TYPE = "low_balance"


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    timestamp: datetime
    data: msgspec.Struct


_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class WebhookMessage:
    tenant_id: str
    account_id: str
    message_id: str
    type: str
    position: int
    body: bytes


def entry_message_type(entry_type: str) -> str:
    return MESSAGE_TYPE_OF_ENTRY.get(entry_type, f"entry.{entry_type}")


def of_entry(tenant_id: str, entry: Entry) -> WebhookMessage:
    kind = entry_message_type(entry.type)
    body = Payload(type=kind, timestamp=entry.recorded_at, data=entry_message(tenant_id, entry))
    return WebhookMessage(
        tenant_id=tenant_id,
        account_id=entry.account_id,
        message_id=f"msg_{entry.position}",
        type=kind,
        position=entry.position,
        body=_encoder.encode(body),
    )


def of_low_balance(tenant_id: str, entry: Entry, threshold: int) -> WebhookMessage:
    data = low_balance_message(tenant_id, entry, threshold)
    body = Payload(type=LOW_BALANCE_TYPE, timestamp=entry.recorded_at, data=data)
    return WebhookMessage(
        tenant_id=tenant_id,
        account_id=entry.account_id,
        message_id=f"msg_{entry.position}_low_balance",
        type=LOW_BALANCE_TYPE,
        position=entry.position,
        body=_encoder.encode(body),
    )


def subscribed(patterns: list[str], message_type: str) -> bool:
    """An endpoint's event types: none (all), `*`, an exact type, or a prefix `entry.*`."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern in ("*", message_type):
            return True
        if pattern.endswith(".*") and message_type.startswith(pattern[:-1]):
            return True
    return False

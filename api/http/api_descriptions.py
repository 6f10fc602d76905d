# ruff: noqa: RUF001 - prose for people: en dashes, minus and multiplication signs
"""What /schema says of each field and of the operations whose handlers carry no docstring:
the words of docs/api.md, added to the OpenAPI document where the structs' own `Meta`
descriptions leave a field undescribed (api/http/api_docs.py applies them).

A description is looked up as `Component.field` first, then as `field`: most names mean one
thing everywhere (`balance`, `position`), a few mean something else in one struct. A
`Component.field` replaces what the field's own `Meta` says (a shared type's words, such as
`Amount`'s "Credits, 1 to 10^15", are too general for a capture or a reversal); a `field`
only fills in where the struct says nothing.
"""

from __future__ import annotations

FIELDS: dict[str, str] = {
    # ids and positions
    "account_id": "The client's account id: 1–128 printable characters, no whitespace",
    "tenant_id": "The tenant: `^[a-z0-9][a-z0-9-]{1,62}$`",
    "entry_id": "The entry's id (a UUID), derived from the account and its version",
    "lot_id": "The lot's id (a UUID), or `overdraft` for the debt lot",
    "hold_id": "The hold's id (a UUID)",
    "key_id": "The API key's id (a UUID)",
    "consumption_id": "What a refund names: the consumption (or capture) it gives back",
    "payment_ref": "Your payment's id: credited once per tenant (1–255 characters)",
    "position": "The entry's place in the whole ledger's order (use it as min_position, after, Last-Event-ID)",
    "version": "How many changes the aggregate has had (an account: its entries)",
    "next_after": "Pass as `after` for the next page; null on the last page",
    "items": "The page's items, in order",
    # credits
    "amount": "Credits (integer)",
    "balance": "Credits after the entry: the sum of the lots' remaining (negative in debt)",
    "available": "balance − held: what consumptions and holds may still take",
    "held": "Credits reserved by active holds",
    "remaining": "Credits left in the lot (≤ 0 for the overdraft lot)",
    "captured": "Credits captured from the hold (left out when 0)",
    "priority": "Burn-down priority: lower burns first (default 100)",
    "source": "Where the lot's credits came from: grant, purchase, adjustment, refund or overdraft",
    "lots": "The account's lots, oldest first; empty lots are dropped",
    "totals": "Credits ever granted, purchased, consumed, refunded, expired, and the sum adjusted",
    "granted": "Credits ever granted (signup bonuses included)",
    "purchased": "Credits ever purchased",
    "consumed": "Credits ever consumed (consumptions and captures)",
    "refunded": "Credits given back by refunds",
    "expired": "Credits lost to expiry",
    "adjusted": "The signed sum of adjustments",
    "credits": "Credits consumed (consumptions and captures)",
    "count": "Consumptions and captures counted",
    # what a command says
    "reason": "Why: text, 1–1,000 printable characters",
    "operation": "What the credits paid for (usage reports group by it)",
    "resource": "What the operation worked on (optional text)",
    "user_id": "Who asked for the operation (optional text)",
    "metadata": "A JSON object of at most 50 keys and 4,096 bytes, 16 levels deep, no floats",
    "expires_at": "When it expires (RFC 3339 with a time zone); null: never",
    "expires_in_s": "Seconds until the hold expires (1–86,400, default 300)",
    "price": "The money paid: a decimal string amount and an ISO 4217 currency",
    "currency": "ISO 4217, three upper-case letters",
    "signup_bonus": "Credits granted when an account is opened (0–10^15)",
    "signup_bonus_expires_in_days": "Days after which the signup bonus expires; null: never",
    "overdraft_limit": "How far below zero `available` may go (0–10^15)",
    "low_balance_threshold": "A `low_balance` message when available falls below it; null: off",
    "purchase_rates": "Credits per one unit of each currency, as positive decimal strings",
    "settings": "The tenant's settings: in an answer the first five always, reversal_policy "
    "once it is set",
    "reversal_policy": "What a reversal takes back of credits already spent: `debt` (the "
    "default: the account's other credits, then below zero) or `remaining` (nothing more)",
    "name": "A name for people: text, at most 1,000 characters",
    "scopes": "What the key may do: 1–5 of accounts:read, accounts:write, credits:consume, reports:read, keys:manage",
    "key": "The secret: present only in the answer that created the key",
    "key_prefix": "The key's first 12 characters, to recognise it",
    "api_key": "The tenant's first key, with its secret: only in the answer that created the tenant",
    "created_at": "When it was created (UTC)",
    "updated_at": "When it last changed (UTC)",
    "revoked_at": "When the key was revoked; absent while it works",
    "last_used_at": "When the key was last used (written every 5 s)",
    "disabled_at": "Present while the tenant is disabled: when it was disabled",
    "disabled_reason": "Present while the tenant is disabled: why",
    "recorded_at": "When the ledger recorded the entry (UTC)",
    "as_of": "The moment the balance is read at",
    # reports
    "from": "The first day (UTC) of the report",
    "to": "The last day (UTC) of the report, inclusive",
    "group_by": "The fields the items are grouped by, in order",
    "day": "The UTC date",
    "total": "The sums over every item",
    "ok": "True when replaying the event store gives the read models exactly",
    "accounts": "Accounts replayed",
    "entries": "Entries replayed",
    "mismatches": "Up to 100 descriptions of differences",
    "checks": "Each check's result: `ok` or `failed: <reason>`",
    # batch
    "atomic": "All or nothing in one transaction (default false: each on its own)",
    "commands": "1–1,000 commands, each `{op, account_id, ...its body fields}`",
    "op": "The command: grant, purchase, consume, refund, hold, capture, release or adjust",
    "idempotency_key": "The command's own idempotency key (a batch item's; routes take the header)",
    "results": "One result per command, in order",
    "entry": "The entry the command recorded",
    "hold": "The hold the command placed",
    "error": "The command's problem, when it failed",
    "replayed": "True when the command's stored answer was given again",
    # problems
    "title": "A short summary of the problem's code",
    "detail": "What went wrong, for people (may change)",
    "code": "The stable, machine-readable problem code",
    "index": "A failed atomic batch: the index of the command that failed",
    "cause": "A failed atomic batch: that command's own code",
    # stream tokens
    "token": "A stream token: `?token=` or the WebSocket subprotocol `ledger.token.<token>`",
    "ttl_s": "Seconds the token may open streams (1–3,600, default 300)",
}

BY_COMPONENT: dict[str, str] = {
    "Entry.amount": "The signed change of balance",
    "Entry.type": "open, grant, purchase, consume, refund, hold, capture, release, expire, "
    "adjust, reverse or topup_requested",
    "Entry.expires_at": "The lot's (grant, purchase) or the hold's expiry",
    "Entry.held": "Credits held after the entry",
    "AdjustBalance.amount": "Signed credits, not 0, −10^15 to 10^15",
    "AdjustBalanceBody.amount": "Signed credits, not 0, −10^15 to 10^15",
    "HoldView.status": "active, captured, released or expired",
    "HoldView.amount": "Credits the hold reserves",
    "BatchResult.status": "The HTTP status the command alone would have had",
    "Health.status": "`ok`; `degraded` (200) when NATS, the follower or the relay is not ok; "
    "`unavailable` (503) when a command could not be committed here",
    "Health.roles": "Every follower and relay instance that reported in the last seconds",
    "RoleReport.role": "`follower` or `relay`",
    "RoleReport.instance": "Where it runs: `host:pid`",
    "RoleReport.state": "active, standby, starting, store_unreachable, waiting_for_nats, stopped "
    "or gone (no report for 5 s)",
    "RoleReport.active": "Whether it is the active one of its kind (the others stand by)",
    "RoleReport.lag": "For the active instance: events (follower) or account entries (relay) it "
    "is behind the store",
    "RoleReport.last_error": "Its last error, if any",
    "RoleReport.last_error_age_s": "Seconds since that error",
    "RoleReport.heartbeat_age_s": "Seconds since it last reported (every second when running)",
    "RoleReport.counters": "The relay's: published, own_duplicates, foreign_duplicates",
    "Entry.actor_key_id": "The API key the entry's command came with (left out: the ledger "
    "itself, or the operator)",
    "Entry.actor": "The console's signed-in principal, or `operator` for the operator's API "
    "routes (left out otherwise)",
    "ApiKeyView.successor_key_id": "The key that replaced it by a rotation, if any",
    "ApiKeyView.predecessor_key_id": "The key it replaced by a rotation, if any",
    "Problem.type": "`urn:credits-ledger:problem:<code>`",
    "Problem.status": "The HTTP status",
    "Problem.available": "insufficient_credits: the account's available credits",
    "TenantView.version": "How many changes the tenant has had",
    "Verification.entries": "Entries replayed",
    "UsageReport.items": "One row per group, sorted by the grouped fields",
    "UsageRow.refunded": "Credits refunded, on the day of the refund, under the consumption's operation",
    "StreamToken.account_id": "The one account it streams, when limited to one",
    "StreamToken.expires_at": "After this it opens no stream (one it opened stays open)",
    "Price.amount": 'A decimal string, "9.99" (at most 40 characters)',
    "CaptureHold.amount": "Credits to capture (default: all of the hold)",
    "CaptureHoldBody.amount": "Credits to capture (default: all of the hold)",
    "PurchaseCredits.amount": "Credits; default: the quote's, else the price book's rule, else "
    "price × purchase_rates (rounded down)",
    "PurchaseCreditsBody.amount": "Credits; default: the quote's, else the price book's rule, "
    "else price × purchase_rates (rounded down)",
    "RefundConsumption.amount": "Credits to give back (default: all still refundable)",
    "RefundConsumptionBody.amount": "Credits to give back (default: all still refundable)",
    "OpenAccount.signup_bonus": "Credits granted on opening; default the tenant's signup_bonus",
    "OpenAccountBody.signup_bonus": "Credits granted on opening; default the tenant's signup_bonus",
    "ApiKeyList.items": "The keys, never their secrets",
    "UpdateTenantBody.settings": "The settings to change; those left out stay as they are",
    # money in and news out (issue 16): the price book and quotes
    "PriceBookView.current": "The version in effect now; null until the first takes effect",
    "PriceBookView.scheduled": "The versions whose effective_from is still ahead, soonest first "
    "(left out when none)",
    "PriceBookHistory.items": "Every version, oldest first",
    "PriceBookVersionView.version": "The version's number: 1 for the first, one more for each after",
    "PriceBookVersionView.effective_from": "When it takes effect: the version in effect at a time "
    "is the one with the latest effective_from at or before it",
    "PriceBookVersionView.published_at": "When it was published (UTC)",
    "PriceBookVersionView.rules": "Its rules, one per currency",
    "CreateQuoteBody.credits": "Or: the credits to price, 1–10^15 (with currency)",
    "QuoteView.quote_id": "The quote's id (`q_…`): a purchase redeems it as quote_id",
    "QuoteView.credits": "The credits a purchase naming the quote is credited",
    "QuoteView.price": "The price: as asked, or the smallest in whole minor units that buys the "
    "credits",
    "QuoteView.rule_version": "The price book version it was priced by",
    "QuoteView.expires_at": "A purchase naming it after this answers 409 quote_expired",
    "QuoteView.account_id": "When set, only a purchase on this account may redeem it",
    "QuoteView.redeemed_by": "The payment_ref of the purchase that redeemed it (absent until then)",
    # reversals
    "ReverseCreditsBody.payment_ref": "The payment_ref of the purchase of this account to take back",
    "ReverseCreditsBody.amount": "Credits to take back, at most what is left to reverse (default: "
    "all of it)",
    # auto top-up
    "AccountTopUpView.policy": "The policy that applies: the account's own, else the tenant's "
    "default; null: none",
    "AccountTopUpView.source": "Whose the policy is: `account` or `tenant` (left out when none "
    "applies)",
    "AccountTopUpView.requested_this_month": "Top-ups requested this calendar month (UTC), "
    "counted against monthly_max",
    "AccountTopUpView.open": "The request open now, if any: the next purchase closes it",
    "AccountTopUpView.last": "How the last request ended: `{topup_id, status: closed | abandoned, "
    "by}`, `by` the payment_ref of the purchase that closed it",
    "OpenTopUp.topup_id": "The request's id (`tu_…`): the idempotency key the payment side must "
    "reuse; every retry carries the same",
    "OpenTopUp.credits": "Credits asked for: target − available, or the policy's amount",
    "OpenTopUp.attempt": "Which time it is asked: 1, then 2–4 for the retries after 5 min, "
    "15 min and 1 h",
    "OpenTopUp.requested_at": "When this attempt asked (UTC)",
    "TopUpPolicyView.policy": "The tenant's default policy; null while none is set",
    "TopUpPolicyView.source": "Whose the policy is: `tenant` on these routes",
    # payment webhooks
    "WebhookSecretView.secret_id": "The secret's id: DELETE …/secrets/{secret_id} retires it",
    "WebhookSecretView.provider": "The payment provider: `stripe`",
    "WebhookSecretView.hint": "The secret's last 4 characters, to tell secrets apart",
    "InboxPage.items": "The events, oldest first",
    "InboxEvent.seq": "The row's place in the tenant's inbox: pass it as `after` to page",
    "InboxEvent.provider": "The payment provider: `stripe`",
    "InboxEvent.event_id": "The provider's event id (Stripe's `evt_…`): each is applied once",
    "InboxEvent.type": "The provider's event type: checkout.session.completed, charge.refunded, …",
    "InboxEvent.status": "received (kept, not yet applied), applied, ignored or failed",
    "InboxEvent.received_at": "When the ledger first received it (UTC)",
    "InboxEvent.payload": "The event exactly as the provider sent it",
    "InboxEvent.applied_at": "When it was applied, ignored or failed (absent while received)",
    "InboxEvent.detail": "Ignored: why; failed: what stopped it",
    "InboxEvent.payment_ref": "Applied: the payment_ref it purchased or reversed",
    "InboxEvent.account_id": "Applied: the account it credited or took back from",
    "InboxEvent.position": "Applied: the position of the entry it recorded",
    # outbound webhooks
    "EndpointView.endpoint_id": "The endpoint's id (`ep_…`)",
    "EndpointView.url": "Where its messages are POSTed",
    "EndpointView.event_types": "The message types it receives (exact, a prefix `entry.*`, or "
    "`*`); empty: every type",
    "EndpointView.description": "A note for people (empty when none)",
    "EndpointView.enabled": "false: disabled (by its failures, or a PATCH); nothing is queued or "
    "sent to it",
    "EndpointView.disabled_reason": "Present when its failures disabled it (every attempt failed "
    "for 24 h, 10 or more in a row): why",
    "EndpointView.consecutive_failures": "Attempts failed in a row (left out when 0)",
    "EndpointView.failing_since": "When its run of failed attempts began (absent when none)",
    "EndpointView.secret": "The signing secret (`whsec_…`): only in the answer that created the "
    "endpoint",
    "DeliveryPage.items": "The deliveries, oldest first",
    "DeliveryView.delivery_id": "The delivery's id: pass it as `after` to page, or to …/redeliver",
    "DeliveryView.message_id": "Its webhook-id: `msg_<position>` (`msg_<position>_low_balance`), "
    "the same on every attempt and for every endpoint",
    "DeliveryView.type": "The message type: entry.<entry type>, low_balance or topup.requested",
    "DeliveryView.account_id": "The account the message is of",
    "DeliveryView.position": "The position of the entry the message is of",
    "DeliveryView.status": "pending (due at due_at), delivered or failed",
    "DeliveryView.attempts": "Attempts made (a redelivery counts again from 0)",
    "DeliveryView.created_at": "When it was queued (UTC)",
    "DeliveryView.due_at": "While pending: when its next attempt is due",
    "DeliveryView.delivered_at": "When an attempt was answered 2xx",
    "DeliveryView.last_status": "The HTTP status of the last attempt's answer, if it had one",
    "DeliveryView.last_error": "Why the last attempt failed (absent once delivered)",
    "DeliveryView.attempt_log": "Every attempt, oldest first",
    "AttemptView.attempt": "Its number in the delivery, from 1",
    "AttemptView.at": "When it ended (UTC)",
    "AttemptView.duration_ms": "How long it took, in milliseconds",
    "AttemptView.status": "The HTTP status of the answer, if there was one",
    "AttemptView.error": "Why it failed: the status it answered, a refused address, a timeout, "
    "a connection error",
    "AttemptView.answer": "The first 1 KiB of the answer's body",
}

# Operations whose handlers have no docstring: what they do beyond their summary.
OPERATIONS: dict[str, str] = {
    "POST /v1/api-keys/{key_id}/rotate": "A successor of one of the caller's tenant's keys, "
    "with its scopes, name and expiry; its secret is in this answer only. The rotated key keeps "
    "working for grace_s seconds (default 3,600, at most 86,400), then answers 401. A key is "
    "rotated once; a revoked, expired or rotated one answers 409.",
    "POST /v1/tenants/{tenant_id}/api-keys/{key_id}/rotate": "The operator's rotation of a "
    "tenant's key, as POST /v1/api-keys/{key_id}/rotate.",
    "GET /v1/tenants/{tenant_id}": "The tenant as committed: name, settings, status, version.",
    "PATCH /v1/tenants/{tenant_id}": "Each setting given replaces that setting; the others stay. "
    "Changes reach new commands within 1 s on every replica.",
    "POST /v1/tenants": "The tenant and its first API key (every scope); the key's secret is in "
    "this answer only. A taken tenant_id answers 409.",
    "POST /v1/tenants/{tenant_id}/api-keys": "A key with the given scopes; its secret is in this "
    "answer only. At most 100 keys per tenant, revoked ones included.",
    "GET /v1/tenants/{tenant_id}/api-keys": "Every key of the tenant, revoked ones too, never a secret.",
    "DELETE /v1/tenants/{tenant_id}/api-keys/{key_id}": "The key answers 401 from then on: at once "
    "here, within 1 s on every replica. Revoking it again answers 204.",
    "POST /v1/api-keys": "A key of the caller's tenant with any scopes; its secret is in this answer only.",
    "GET /v1/api-keys": "Every key of the caller's tenant, never a secret.",
    "DELETE /v1/api-keys/{key_id}": "Revokes one of the caller's tenant's keys.",
    "GET /v1/accounts/{account_id}": "The account as committed: reflects every command already answered.",
    "GET /v1/accounts/{account_id}/holds/{hold_id}": "The hold's current record.",
    "GET /v1/accounts/{account_id}/entries": "A page of the account's entries, oldest first, from "
    "the read models (pass min_position to read your writes).",
    "GET /v1/accounts/{account_id}/balance": "Balance, available and held after the last entry "
    "recorded at or before as_of.",
    "GET /v1/usage": "Consumptions and captures counted, refunds under the refunded operation, "
    "grouped by operation, account and day over whole UTC days.",
    "GET /v1/history": "The tenant's entries in ledger order, paged; with Accept: "
    "application/x-ndjson the whole history, one entry per line.",
    "GET /v1/audit/verify": "Replays the tenant's history from the event store and compares every "
    "entry and account with the read models.",
    "POST /v1/batch": "Up to 1,000 account commands: each on its own, or atomically (all or nothing).",
    "GET /health/live": "200 while the process runs.",
    "GET /health/ready": "200 when the event store answers (and NATS, once connected); 503 otherwise.",
    "GET /metrics": "Prometheus text format: requests, durations, the writer's and relay's counters.",
}

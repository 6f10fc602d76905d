"""Every bound the ledger enforces, each with the reason it has that value."""

from datetime import timedelta

# One command moves at most this many credits (docs/api.md: 1 <= amount <= 10^15).
AMOUNT_MAX = 10**15
# Balances and lot sizes stay inside a signed 64-bit column of the read models.
BALANCE_MAX = 10**18
# Overdraft limits and signup bonuses are amounts too.
OVERDRAFT_LIMIT_MAX = AMOUNT_MAX
# Open lots per account: keeps the account's state (and its snapshot) small.
LOTS_PER_ACCOUNT_MAX = 1_000
# Active holds per account: same reason.
ACTIVE_HOLDS_PER_ACCOUNT_MAX = 1_000
# Hold lifetime (docs/api.md: default 300 s, max 86,400 s).
HOLD_EXPIRES_IN_S_DEFAULT = 300
HOLD_EXPIRES_IN_S_MAX = 86_400
# Lower "priority" burns first; the default sits in the middle of the range.
PRIORITY_DEFAULT = 100
PRIORITY_MAX = 1_000_000
# Client-chosen strings.
ACCOUNT_ID_LENGTH_MAX = 128
IDEMPOTENCY_KEY_LENGTH_MAX = 255
TEXT_LENGTH_MAX = 1_000  # reason, operation, resource, user_id, name
PAYMENT_REF_LENGTH_MAX = 255
METADATA_BYTES_MAX = 4_096  # encoded JSON size of one metadata object
METADATA_KEYS_MAX = 50
METADATA_DEPTH_MAX = 16  # nesting of metadata objects and lists
# Active API keys per tenant (revoked and expired ones do not count, nor a key in its
# rotation's grace period): keeps the tenant's state, loaded on every cold authentication,
# small.
API_KEYS_PER_TENANT_MAX = 100
# Ended (revoked or expired) keys a tenant keeps listing, the most recently ended: rotations
# may go on forever, the tenant's state stays bounded (the event store keeps them all).
API_KEYS_ENDED_KEPT = 100
# How long a rotated key keeps working beside its successor (POST .../rotate, `grace_s`).
API_KEY_ROTATION_GRACE_S_DEFAULT = 3_600
API_KEY_ROTATION_GRACE_S_MAX = 86_400
# Currencies a tenant may price credits in.
PURCHASE_RATES_MAX = 50
# Grants may not expire further out than this (and not in the past).
EXPIRY_HORIZON_MAX = timedelta(days=365 * 100)
# Take a snapshot of an account once this many events have been added since the last one:
# a cold load then replays at most this many events, whatever the history's length.
SNAPSHOT_INTERVAL = 200

"""Outbound webhooks: every ledger message delivered over HTTP to each tenant's endpoints, as
Standard Webhooks, at least once and in order per account (docs/adr/0009)."""

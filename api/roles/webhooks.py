"""`ledger webhooks`: the outbound webhook deliverer alone (docs/adr/0009)."""

from __future__ import annotations

from api.roles.embedded import database_url
from api.roles.signals import run_until_signalled
from api.settings import Settings
from events.webhooks.deliverer import Deliverer
from events.webhooks.http_client import Rules
from ledger.store.sealed import SecretBox
from ledger.store.transcoder import new_mapper


async def run_webhooks(settings: Settings) -> None:
    """The deliverer alone: active, or standby while another holds the lock."""
    if not settings.secret_key:
        raise SystemExit(
            "ledger webhooks needs LEDGER_SECRET_KEY (the key endpoint secrets are sealed with)"
        )
    deliverer = Deliverer(
        database_url(settings),
        settings.schema,
        new_mapper(),
        SecretBox(settings.secret_key),
        Rules(
            allow_http=settings.webhooks_allow_http, allow_private=settings.webhooks_allow_private
        ),
    )
    await run_until_signalled(deliverer.run)

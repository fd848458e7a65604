"""Payment-provider webhooks: one module per provider behind one small interface (base.Provider).

Adding a provider is one module with a PROVIDER object, one entry here, one key in the
webhook-secrets secret, and its tests.
"""

from __future__ import annotations

from braze_forwarder.ingest.webhooks import app_store, google_play, paddle, stripe
from braze_forwarder.ingest.webhooks.base import Provider

PROVIDERS: dict[str, Provider] = {
    provider.name: provider for provider in (stripe.PROVIDER, paddle.PROVIDER, app_store.PROVIDER, google_play.PROVIDER)
}

__all__ = ["PROVIDERS", "Provider"]

"""The providers' signing secrets, read from one Secrets Manager secret and cached.

    {"stripe": ["whsec_..."], "paddle": ["pdl_ntfset_..."]}

A list per provider, because a rolled secret stays valid next to its successor for a while and the
provider then signs with both. A provider missing from the secret, or with an empty list, has no
secret: every request for it is refused as unsigned (and a warning is logged), so events are
retried by the provider until the secret is set.

Secrets are never logged; errors name the provider and the shape expected, nothing else.
"""

from __future__ import annotations

import time

from aws_lambda_powertools.utilities import parameters

from braze_forwarder import aws
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.observability import logger

# A signature that matches no cached secret forces a re-read at most this often per provider, so a
# secret just added (or rolled) works within seconds, and forged requests cannot turn into a flood
# of Secrets Manager calls.
_REFRESH_ON_MISS_INTERVAL_SECONDS = 30.0
_MAX_SECRET_CHARS = 1024

_last_refresh_on_miss: dict[str, float] = {}


def secrets_for(provider: str, secret_arn: str, max_age_seconds: int, *, force_fetch: bool = False) -> tuple[str, ...]:
    aws.share_session_with_powertools()
    try:
        document = parameters.get_secret(secret_arn, transform="json", max_age=max_age_seconds, force_fetch=force_fetch)
    except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as exc:
        logger.error("cannot read the webhook-secrets secret", extra={"error": type(exc).__name__})
        raise _unavailable() from None
    if not isinstance(document, dict):
        logger.error('the webhook-secrets secret must be a JSON object: {"stripe": ["whsec_..."], ...}')
        raise _unavailable()
    entries = document.get(provider, [])
    if not isinstance(entries, list) or not all(
        isinstance(entry, str) and entry.strip() and len(entry) <= _MAX_SECRET_CHARS for entry in entries
    ):
        logger.error(
            "the webhook-secrets secret must hold a list of non-empty strings per provider",
            extra={"provider": provider},
        )
        raise _unavailable()
    if not entries:
        logger.warning("no signing secret is configured for this provider", extra={"provider": provider})
    return tuple(entries)


def may_refresh_on_miss(provider: str) -> bool:
    now = time.monotonic()
    if now - _last_refresh_on_miss.get(provider, float("-inf")) < _REFRESH_ON_MISS_INTERVAL_SECONDS:
        return False
    _last_refresh_on_miss[provider] = now
    return True


def reset() -> None:
    """Forget refresh timing (tests)."""
    _last_refresh_on_miss.clear()


def _unavailable() -> RequestRejected:
    # 503, not 401: the request may be genuine, and the provider's retry will succeed once the
    # secret is readable again.
    return RequestRejected(
        503,
        "webhook_secrets_unavailable",
        "the signing secrets cannot be read; nothing was accepted, retry later",
        {"Retry-After": "30"},
    )

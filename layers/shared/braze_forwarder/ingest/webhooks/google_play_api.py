"""The Google Play Developer API: what a purchase token stands for.

A real-time developer notification names a purchase token only; the price, the product and the
buyer's obfuscated account id are read from Google:

    subscriptions    GET {base}/androidpublisher/v3/applications/{package}/purchases/subscriptionsv2/tokens/{token}
    one-time         GET {base}/androidpublisher/v3/applications/{package}/purchases/products/{product}/tokens/{token}
                     and, for the amount paid (a ProductPurchase carries none),
                     GET {base}/androidpublisher/v3/applications/{package}/orders/{orderId}

authenticated as a service account (scope androidpublisher) whose JSON key is kept in Secrets
Manager (GOOGLE_PLAY_SERVICE_ACCOUNT_SECRET_ARN), with google-auth: it signs the JWT assertion and
trades it at the token URL for an access token, which it keeps until shortly before it expires.
Base URL and token URL are settings, so tests and the local stack point them at loopback stand-ins.

Failures: an answer of 404 or 410 means Google does not know (or no longer keeps) the purchase:
`None`, and the notification is kept for an operator. Anything else that is not a 2xx (5xx, 429,
401/403 of a wrong credential), a timeout or an unreadable answer raises LookupUnavailable: the
push is answered 503, nothing is claimed, and Pub/Sub delivers it again (it retries non-2xx pushes
with backoff for as long as it keeps the message, 7 days by default).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aws_lambda_powertools.utilities import parameters

from braze_forwarder import aws
from braze_forwarder.config import WebhookSettings
from braze_forwarder.observability import logger

if TYPE_CHECKING:
    from google.auth.transport.requests import AuthorizedSession

SCOPE = "https://www.googleapis.com/auth/androidpublisher"
_NOT_FOUND = frozenset({404, 410})
_MAX_ANSWER_BYTES = 1024 * 1024


class LookupUnavailable(Exception):
    """Google's API could not answer now; the message names the step, never a token."""


def subscription(settings: WebhookSettings, package: str, token: str) -> dict[str, Any] | None:
    path = f"purchases/subscriptionsv2/tokens/{quote(token, safe='')}"
    return _get(settings, package, path, "subscriptionsv2.get")


def product(settings: WebhookSettings, package: str, product_id: str, token: str) -> dict[str, Any] | None:
    path = f"purchases/products/{quote(product_id, safe='')}/tokens/{quote(token, safe='')}"
    return _get(settings, package, path, "products.get")


def order(settings: WebhookSettings, package: str, order_id: str) -> dict[str, Any] | None:
    return _get(settings, package, f"orders/{quote(order_id, safe='')}", "orders.get")


def _get(settings: WebhookSettings, package: str, path: str, step: str) -> dict[str, Any] | None:
    url = (
        f"{settings.google_play_api_base_url.rstrip('/')}/androidpublisher/v3/applications/"
        f"{quote(package, safe='')}/{path}"
    )
    from google.auth import exceptions

    try:
        response = _session(settings).get(url, timeout=settings.google_play_api_timeout_seconds, allow_redirects=False)
    except exceptions.GoogleAuthError as exc:
        logger.error("cannot get a Google access token", extra={"step": step, "error": type(exc).__name__})
        raise LookupUnavailable(f"{step}: no access token") from None
    except Exception as exc:  # requests' errors and what the transport raises under it
        logger.error("the Play Developer API did not answer", extra={"step": step, "error": type(exc).__name__})
        raise LookupUnavailable(f"{step}: no answer") from None
    if response.status_code in _NOT_FOUND:
        logger.warning("the Play Developer API does not know the purchase", extra={"step": step})
        return None
    if not 200 <= response.status_code < 300:
        logger.error("the Play Developer API refused", extra={"step": step, "status": response.status_code})
        raise LookupUnavailable(f"{step}: answered {response.status_code}")
    try:
        document = json.loads(response.content) if len(response.content) <= _MAX_ANSWER_BYTES else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        logger.error("the Play Developer API answered something unreadable", extra={"step": step})
        raise LookupUnavailable(f"{step}: unreadable answer")
    return document


_lock = threading.Lock()
_sessions: dict[tuple[str, str], AuthorizedSession] = {}


def _session(settings: WebhookSettings) -> AuthorizedSession:
    """One authorised session per credential: google-auth keeps its access token until it expires."""
    from google.auth import exceptions
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2 import service_account

    key = _service_account_key(settings)
    with _lock:
        cached = _sessions.get((key, settings.google_play_token_url))
        if cached is None:
            info = json.loads(key)
            try:
                credentials = service_account.Credentials.from_service_account_info(
                    # The token URL is a setting, not the key's own, so a stand-in can answer locally.
                    {**info, "token_uri": settings.google_play_token_url},
                    scopes=[SCOPE],
                )
            except (ValueError, TypeError, exceptions.GoogleAuthError) as exc:
                logger.error("the Google Play service-account key cannot be used", extra={"error": type(exc).__name__})
                raise LookupUnavailable("the service-account key cannot be used") from None
            _sessions.clear()  # a rotated key replaces the old session
            cached = _sessions[(key, settings.google_play_token_url)] = AuthorizedSession(
                credentials, refresh_timeout=settings.google_play_api_timeout_seconds
            )
        return cached


def _service_account_key(settings: WebhookSettings) -> str:
    arn = settings.google_play_service_account_secret_arn
    if not arn:
        logger.error("GOOGLE_PLAY_SERVICE_ACCOUNT_SECRET_ARN is not set: purchases cannot be looked up")
        raise LookupUnavailable("no service account is configured")
    aws.share_session_with_powertools()
    try:
        value = parameters.get_secret(arn, max_age=settings.webhook_secrets_max_age_seconds)
    except parameters.exceptions.GetParameterError as exc:
        logger.error("cannot read the Google Play service-account secret", extra={"error": type(exc).__name__})
        raise LookupUnavailable("the service-account secret cannot be read") from None
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if not (isinstance(info, dict) and info.get("type") == "service_account" and "private_key" in info):
        logger.error("the Google Play service-account secret is not a service-account JSON key")
        raise LookupUnavailable("the service-account secret is not a JSON key")
    return text


def reset() -> None:
    """Forget sessions (tests)."""
    with _lock:
        _sessions.clear()

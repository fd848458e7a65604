"""Google's OIDC push token: how a Pub/Sub push subscription proves a request is Google's.

Pub/Sub signs a JWT for the push subscription's service account and sends it as
`Authorization: Bearer <token>` (cloud.google.com/pubsub/docs/authenticate-push-subscriptions).
The token is checked with google-auth (google.auth.jwt.decode: RS256 signature against the key its
`kid` names, `iat`/`exp` with a small clock skew, `aud`), never with our own crypto; then the
issuer, the service account's `email` and `email_verified` are compared with the settings.

Google's keys are a JSON document of PEM certificates by key id, fetched from a configurable URL
(GOOGLE_PLAY_CERTS_URL; Google's https://www.googleapis.com/oauth2/v1/certs, a loopback stand-in
in tests and the local stack) and kept for the `max-age` Google's Cache-Control gives. A token
signed by a key not in the cached set (Google rotates its keys) fetches the set again, at most
every few seconds, before it is refused.

The token does not cover the body: a genuine token copied from one push could be replayed with
another body until it expires (an hour at most, checked). What such a body can claim is limited
twice over: a purchase's price and user are read from Google's Play Developer API with our own
credential, never from the body, and a message id already accepted is a duplicate.

Nothing of the token is logged: not the token, not the email in it.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import requests

from braze_forwarder.config import WebhookSettings
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest.webhooks.base import MAX_SIGNATURE_HEADER_CHARS, malformed_header, missing_signature
from braze_forwarder.observability import logger
from braze_forwarder.request_body import parse_json

# Google's ID tokens name either form (developers.google.com/identity/openid-connect).
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
# Google's ID tokens live an hour; a longer-lived token was not made by Pub/Sub.
MAX_TOKEN_LIFETIME_SECONDS = 3600
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*([0-9]{1,9})\s*(?:,|$)", re.IGNORECASE)
_DEFAULT_CERTS_MAX_AGE_SECONDS = 300
_LONGEST_CERTS_MAX_AGE_SECONDS = 24 * 3600
_REFETCH_ON_UNKNOWN_KEY_INTERVAL_SECONDS = 10.0
_MAX_CERTS_BYTES = 256 * 1024
_MAX_KEYS = 32


@dataclass(frozen=True, slots=True)
class GoogleOidcToken:
    """`Authorization: Bearer <Google-signed OIDC token>`; every setting named is a WebhookSettings field."""

    # For the API document: what the header carries.
    description: ClassVar[str] = (
        "Pub/Sub's OIDC token, `Bearer <JWT>`, signed by Google for the push subscription's service account."
    )
    header: str
    audience_setting: str
    service_account_setting: str
    certs_url_setting: str
    clock_skew_setting: str

    def verified(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, settings: WebhookSettings
    ) -> Any:
        token = self._bearer_token(headers)
        audience = getattr(settings, self.audience_setting)
        service_account = getattr(settings, self.service_account_setting)
        if not audience or not service_account:
            # Refused, not 5xx: Pub/Sub keeps retrying (up to its retention) until the settings are made.
            logger.warning("a push arrived but its audience or service account is not configured")
            raise RequestRejected(
                401,
                "push_not_configured",
                "this deployment has no push audience and service account configured to check the token against",
            )
        claims = self._checked_claims(token, audience, getattr(settings, self.certs_url_setting), now, settings)
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise RequestRejected(401, "wrong_issuer", "the Authorization token was not issued by Google")
        email, verified_email = claims.get("email"), claims.get("email_verified")
        if not (
            isinstance(email, str)
            and hmac.compare_digest(email.encode("utf-8", "surrogatepass"), service_account.encode())
            and verified_email is True
        ):
            raise RequestRejected(
                401,
                "wrong_service_account",
                "the Authorization token is not for the push subscription's service account, or its email is "
                "not verified",
            )
        return parse_json(body)

    def _bearer_token(self, headers: Mapping[str, str]) -> str:
        value = headers.get(self.header.lower())
        if value is None or not value.strip():
            raise missing_signature(self.header)
        if len(value) > MAX_SIGNATURE_HEADER_CHARS:
            raise malformed_header(self.header, f"it is longer than {MAX_SIGNATURE_HEADER_CHARS} characters")
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not token.isascii() or token.count(".") != 2:
            raise malformed_header(self.header, "expected Bearer followed by a JWT (three dot-separated parts)")
        return token

    def _checked_claims(
        self, token: str, audience: str, certs_url: str, now: float, settings: WebhookSettings
    ) -> Mapping[str, Any]:
        from google.auth import exceptions, jwt

        try:
            key_header = jwt.decode_header(token)
            unverified = jwt.decode(token, verify=False)
        except (ValueError, TypeError, exceptions.GoogleAuthError):
            raise malformed_header(self.header, "the token is not a JWT") from None
        key_id = key_header.get("kid")
        if key_header.get("alg") != "RS256" or not isinstance(key_id, str):
            raise _invalid_token(self.header)
        certificate = GOOGLE_KEYS.certificate(certs_url, key_id, settings)
        if certificate is None:
            raise _invalid_token(self.header)
        skew = getattr(settings, self.clock_skew_setting)
        try:
            claims: Mapping[str, Any] = jwt.decode(
                token, certs={key_id: certificate}, audience=audience, clock_skew_in_seconds=skew
            )
        except (ValueError, TypeError, exceptions.GoogleAuthError):
            # google-auth refused it; name why from what the token claims (only the type differs).
            raise _refusal(self.header, unverified, audience, now, skew) from None
        issued, expires = claims.get("iat"), claims.get("exp")
        if not (isinstance(issued, int) and isinstance(expires, int)) or expires - issued > MAX_TOKEN_LIFETIME_SECONDS:
            raise RequestRejected(
                401, "token_lifetime_too_long", "the Authorization token lives longer than Google's push tokens"
            )
        return claims


def _invalid_token(header: str) -> RequestRejected:
    return RequestRejected(401, "invalid_token", "the Authorization token is not signed by one of Google's keys")


def _refusal(header: str, claims: Mapping[str, Any], audience: str, now: float, skew: int) -> RequestRejected:
    expires, issued = claims.get("exp"), claims.get("iat")
    if isinstance(expires, (int, float)) and expires + skew < now:
        return RequestRejected(401, "expired_token", "the Authorization token has expired; a replay is refused")
    if isinstance(issued, (int, float)) and issued - skew > now:
        return RequestRejected(
            401, "token_not_yet_valid", "the Authorization token is issued in the future; check the sender's clock"
        )
    if claims.get("aud") != audience:
        return RequestRejected(
            401, "wrong_audience", "the Authorization token is for another audience than this endpoint's"
        )
    return _invalid_token(header)


class _GoogleKeys:
    """Google's public certificates by key id, cached for the max-age Google gives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._certs: dict[str, dict[str, str]] = {}
        self._expires: dict[str, float] = {}
        self._last_refetch: dict[str, float] = {}

    def certificate(self, url: str, key_id: str, settings: WebhookSettings) -> str | None:
        with self._lock:
            certs = self._certs.get(url)
            stale = certs is None or time.monotonic() >= self._expires.get(url, 0.0)
            # A key not in the set may be one Google just rotated in.
            if stale or (certs is not None and key_id not in certs and self._may_refetch(url)):
                certs = self._fetch(url, settings)
            assert certs is not None
            return certs.get(key_id)

    def reset(self) -> None:
        with self._lock:
            self._certs.clear()
            self._expires.clear()
            self._last_refetch.clear()

    def _may_refetch(self, url: str) -> bool:
        now = time.monotonic()
        if now - self._last_refetch.get(url, float("-inf")) < _REFETCH_ON_UNKNOWN_KEY_INTERVAL_SECONDS:
            return False
        self._last_refetch[url] = now
        return True

    def _fetch(self, url: str, settings: WebhookSettings) -> dict[str, str]:
        try:
            response = requests.get(url, timeout=settings.google_play_api_timeout_seconds, allow_redirects=False)
            response.raise_for_status()
            document = response.json() if len(response.content) <= _MAX_CERTS_BYTES else None
        except (requests.RequestException, ValueError) as exc:
            logger.error("cannot fetch Google's public keys", extra={"error": type(exc).__name__})
            cached = self._certs.get(url)
            if cached is not None:
                return cached  # keys Google published an hour ago still verify most tokens
            raise _keys_unavailable() from None
        if not (
            isinstance(document, dict)
            and 0 < len(document) <= _MAX_KEYS
            and all(isinstance(k, str) and isinstance(v, str) and "BEGIN" in v for k, v in document.items())
        ):
            logger.error("Google's public keys are not a JSON object of PEM certificates by key id")
            raise _keys_unavailable()
        self._certs[url] = document
        self._expires[url] = time.monotonic() + _max_age(response.headers.get("Cache-Control", ""))
        return document


def _max_age(cache_control: str) -> int:
    found = _MAX_AGE.search(cache_control)
    seconds = int(found.group(1)) if found else _DEFAULT_CERTS_MAX_AGE_SECONDS
    return min(seconds, _LONGEST_CERTS_MAX_AGE_SECONDS)


def _keys_unavailable() -> RequestRejected:
    # 503: the push may be genuine; Pub/Sub redelivers it.
    return RequestRejected(
        503,
        "google_keys_unavailable",
        "Google's public keys cannot be fetched to check the push token; nothing was accepted, retry",
        {"Retry-After": "30"},
    )


GOOGLE_KEYS = _GoogleKeys()

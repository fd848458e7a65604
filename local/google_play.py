"""Loopback stand-ins for Google, for the local stack and the tests only: Google's public keys,
the OAuth token endpoint and the Play Developer API, plus what Pub/Sub does (sign a push token).

    GET  /oauth2/v1/certs                       {kid: PEM certificate}, Cache-Control max-age
    POST /token                                 a JWT-bearer grant signed by the stand-in service
                                                account, checked with google-auth; an access token
    GET  /androidpublisher/v3/applications/{package}/purchases/subscriptionsv2/tokens/{token}
    GET  /androidpublisher/v3/applications/{package}/purchases/products/{product}/tokens/{token}
    GET  /androidpublisher/v3/applications/{package}/orders/{orderId}
                                                the purchases put here (404 for others), with the
                                                access token required; `fail_next(n)` answers 503

Keys are made when the stand-in starts (RSA 2048, cryptography), so nothing here is valid anywhere
else. The forwarder reaches it only through its settings (GOOGLE_PLAY_CERTS_URL,
GOOGLE_PLAY_API_BASE_URL, GOOGLE_PLAY_TOKEN_URL), which accept http only on loopback.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

PUSH_SERVICE_ACCOUNT = "rtdn-push@braze-forwarder-local.iam.gserviceaccount.com"
PUSH_AUDIENCE = "braze-forwarder-local-google-play"
PACKAGE_NAME = "com.example.brazeforwarder"
API_SERVICE_ACCOUNT = "play-api@braze-forwarder-local.iam.gserviceaccount.com"
CERTS_PATH = "/oauth2/v1/certs"
OAUTH_PATH = "/token"
_API_PREFIX = "/androidpublisher/v3/applications/"
# The purchase events/google_play_subscription_purchased.json names; the stack's stand-in knows it.
DEMO_PURCHASE_TOKEN = "local-demo-purchase-token.AO-J1OxSampleOnlyNotAPurchaseTokenOfGooglePlay0001"  # noqa: S105 (a sample purchase, not a credential)
DEMO_SUBSCRIPTION = {
    "kind": "androidpublisher#subscriptionPurchaseV2",
    "regionCode": "US",
    "startTime": "2026-11-22T07:38:40.000Z",
    "subscriptionState": "SUBSCRIPTION_STATE_ACTIVE",
    "latestOrderId": "GPA.3372-0000-0000-10004",
    "acknowledgementState": "ACKNOWLEDGEMENT_STATE_PENDING",
    "externalAccountIdentifiers": {"obfuscatedExternalAccountId": "user-1004"},
    "lineItems": [
        {
            "productId": "premium_monthly",
            "expiryTime": "2026-12-22T07:38:40.000Z",
            "latestSuccessfulOrderId": "GPA.3372-0000-0000-10004",
            "autoRenewingPlan": {
                "autoRenewEnabled": True,
                "recurringPrice": {"currencyCode": "USD", "units": "9", "nanos": 990000000},
            },
            "offerDetails": {"basePlanId": "monthly"},
        }
    ],
}


def _key_and_certificate(common_name: str) -> tuple[str, str]:
    """A new RSA key (PKCS#8 PEM) and a self-signed certificate for it (PEM), as Google publishes them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


class GoogleStandIn:
    """The stand-in's state; `start()` serves it on a free loopback port."""

    def __init__(self, *, certs_max_age_seconds: int = 3600) -> None:
        self.key_id = secrets.token_hex(20)
        self._push_key, push_certificate = _key_and_certificate("pubsub push stand-in")
        self.certs = {self.key_id: push_certificate}
        self.certs_max_age_seconds = certs_max_age_seconds
        api_key, self._api_certificate = _key_and_certificate("play api service account stand-in")
        self.api_key_id = secrets.token_hex(20)
        self._api_key = api_key
        self.subscriptions: dict[str, dict[str, Any]] = {DEMO_PURCHASE_TOKEN: DEMO_SUBSCRIPTION}
        self.products: dict[tuple[str, str], dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []  # paths asked, in order (no tokens: the test reads the kinds)
        self.certs_fetches = 0
        self._access_tokens: set[str] = set()
        self._failures = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ what the tests and demo use

    def service_account_key(self) -> str:
        """The JSON key of the stand-in's Play API service account, as Secrets Manager holds it."""
        return json.dumps(
            {
                "type": "service_account",
                "project_id": "braze-forwarder-local",
                "private_key_id": self.api_key_id,
                "private_key": self._api_key,
                "client_email": API_SERVICE_ACCOUNT,
                "client_id": "100000000000000000001",
                "token_uri": "https://oauth2.googleapis.com/token",  # replaced by GOOGLE_PLAY_TOKEN_URL
            }
        )

    def push_token(
        self,
        *,
        audience: str = PUSH_AUDIENCE,
        email: str = PUSH_SERVICE_ACCOUNT,
        email_verified: bool = True,
        issuer: str = "https://accounts.google.com",
        issued_at: int | None = None,
        lifetime_seconds: int = 3600,
        key_id: str | None = None,
        signing_key: str | None = None,
    ) -> str:
        """An OIDC token as Pub/Sub signs it for a push subscription's service account."""
        issued = int(time.time()) if issued_at is None else issued_at
        signer = crypt.RSASigner.from_string(signing_key or self._push_key, key_id or self.key_id)
        claims = {
            "aud": audience,
            "azp": "100000000000000000002",
            "email": email,
            "email_verified": email_verified,
            "exp": issued + lifetime_seconds,
            "iat": issued,
            "iss": issuer,
            "sub": "100000000000000000002",
        }
        return jwt.encode(signer, claims).decode()

    @staticmethod
    def push_body(notification: dict[str, Any], message_id: str) -> str:
        """The Pub/Sub push body that carries a DeveloperNotification."""
        data = base64.b64encode(json.dumps(notification).encode()).decode()
        return json.dumps(
            {
                "message": {
                    "data": data,
                    "messageId": message_id,
                    "message_id": message_id,
                    "publishTime": "2026-11-22T07:38:49.000Z",
                    "attributes": {},
                },
                "subscription": "projects/braze-forwarder-local/subscriptions/play-rtdn-push",
            }
        )

    def fail_next(self, count: int) -> None:
        """Answer the next `count` Play API requests with 503, as Google does when it is unavailable."""
        with self._lock:
            self._failures = count

    def environment(self) -> dict[str, str]:
        """The forwarder's settings that point it at this stand-in."""
        return {
            "GOOGLE_PLAY_PACKAGE_NAME": PACKAGE_NAME,
            "GOOGLE_PLAY_PUSH_AUDIENCE": PUSH_AUDIENCE,
            "GOOGLE_PLAY_PUSH_SERVICE_ACCOUNT": PUSH_SERVICE_ACCOUNT,
            "GOOGLE_PLAY_CERTS_URL": self.base_url + CERTS_PATH,
            "GOOGLE_PLAY_API_BASE_URL": self.base_url,
            "GOOGLE_PLAY_TOKEN_URL": self.base_url + OAUTH_PATH,
        }

    def start(self, port: int = 0) -> str:
        handler = type("Handler", (_Handler,), {"stand_in": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="google-stand-in", daemon=True
        ).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GoogleStandIn:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ answering

    def _token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or not form.get("assertion"):
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                # google-auth addresses the assertion to Google's token endpoint whatever URL it posts to.
                form["assertion"][0],
                certs={self.api_key_id: self._api_certificate},
                audience="https://oauth2.googleapis.com/token",
            )
        except ValueError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if claims.get("iss") != API_SERVICE_ACCOUNT or "androidpublisher" not in str(claims.get("scope")):
            return 400, {"error": "invalid_scope"}
        access_token = "ya29.stand-in-" + secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens.add(access_token)
        return 200, {"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"}

    def _api(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(path.split("/tokens/")[0])
            if self._failures > 0:
                self._failures -= 1
                return 503, {"error": {"code": 503, "message": "The service is currently unavailable."}}
            authorised = authorization.removeprefix("Bearer ") in self._access_tokens
        if not authorised:
            return 401, {"error": {"code": 401, "message": "Request had invalid authentication credentials."}}
        parts = [unquote(part) for part in path.removeprefix(_API_PREFIX).split("/")]
        found: dict[str, Any] | None = None
        if len(parts) == 5 and parts[1:3] == ["purchases", "subscriptionsv2"] and parts[3] == "tokens":
            found = self.subscriptions.get(parts[4])
        elif len(parts) == 6 and parts[1:3] == ["purchases", "products"] and parts[4] == "tokens":
            found = self.products.get((parts[3], parts[5]))
        elif len(parts) == 3 and parts[1] == "orders":
            found = self.orders.get(parts[2])
        if found is None or parts[0] != PACKAGE_NAME:
            return 404, {"error": {"code": 404, "message": "The purchase token was not found."}}
        return 200, found


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stand_in: GoogleStandIn

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == CERTS_PATH:
            self.stand_in.certs_fetches += 1
            headers = {"Cache-Control": f"public, max-age={self.stand_in.certs_max_age_seconds}, must-revalidate"}
            self._answer(200, self.stand_in.certs, headers)
        elif path.startswith(_API_PREFIX):
            self._answer(*self.stand_in._api(path, self.headers.get("Authorization", "")))
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        if urlsplit(self.path).path == OAUTH_PATH:
            self._answer(*self.stand_in._token(form))
        else:
            self._answer(404, {"error": "not found"})

    def _answer(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass

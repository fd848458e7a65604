"""Sign webhook bodies as Stripe and Paddle do, and wrap them in API Gateway HTTP API (v2) events.

Our own signers, written from the providers' documentation, not from the code under test; Stripe's
are also checked against the official `stripe` package in the tests.

The samples in events/webhook_*.json are signed with the SAMPLE secrets below at the event's own
time, so they are stale by now. To use one with `sam local invoke` or the local stack, sign it
again for the current time:

    PYTHONPATH=layers/shared:. python -m tests.webhook_signing events/webhook_stripe_invoice_paid.json > /tmp/e.json
    sam local invoke IngestApiFunction -e /tmp/e.json

and put the sample secret into the webhook-secrets secret the function reads.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# For the samples in events/ only: published here, so never valid anywhere else.
STRIPE_SAMPLE_SECRET = "whsec_sampleOnlyBrazeForwarderEvents0000"
PADDLE_SAMPLE_SECRET = "pdl_ntfset_01jsampleonlybrazeforwarder00_SampleOnlyNotASecret0000000"

SIGNATURE_HEADERS = {"stripe": "stripe-signature", "paddle": "paddle-signature"}
_USER_AGENTS = {"stripe": "Stripe/1.0 (+https://stripe.com/docs/webhooks)", "paddle": "Paddle"}


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def _as_bytes(body: str | bytes) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def stripe_header(body: str | bytes, secrets: str | Sequence[str], timestamp: int | None = None) -> str:
    """`t=<ts>,v1=<hex>[,v1=<hex>...]`: one v1 per secret, as Stripe sends while a secret is rolled."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    secrets = [secrets] if isinstance(secrets, str) else list(secrets)
    signed = f"{timestamp}.".encode() + _as_bytes(body)
    return ",".join([f"t={timestamp}", *(f"v1={_hex_hmac(secret, signed)}" for secret in secrets)])


def paddle_header(body: str | bytes, secrets: str | Sequence[str], timestamp: int | None = None) -> str:
    """`ts=<ts>;h1=<hex>[;h1=<hex>...]`, HMAC-SHA256 over `<ts>:<body>`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    secrets = [secrets] if isinstance(secrets, str) else list(secrets)
    signed = f"{timestamp}:".encode() + _as_bytes(body)
    return ";".join([f"ts={timestamp}", *(f"h1={_hex_hmac(secret, signed)}" for secret in secrets)])


def sign(provider: str, body: str | bytes, secrets: str | Sequence[str], timestamp: int | None = None) -> str:
    return (stripe_header if provider == "stripe" else paddle_header)(body, secrets, timestamp)


def api_event(
    provider: str,
    body: str,
    signature: str | None,
    *,
    base64_body: bool = False,
    request_id: str = "webhook-request-0001",
    time_epoch_ms: int | None = None,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event for POST /webhooks/{provider}."""
    path = f"/webhooks/{provider}"
    headers = {
        "content-type": "application/json; charset=utf-8",
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": _USER_AGENTS.get(provider, "example/1.0"),
        "x-forwarded-proto": "https",
    }
    if signature is not None:
        headers[SIGNATURE_HEADERS.get(provider, "signature")] = signature
    headers.update(extra_headers or {})
    epoch_ms = int(time.time() * 1000) if time_epoch_ms is None else time_epoch_ms
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/{provider}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.20",
                "userAgent": headers["user-agent"],
            },
            "requestId": request_id,
            "routeKey": "POST /webhooks/{provider}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000)),
            "timeEpoch": epoch_ms,
        },
        "pathParameters": {"provider": provider},
        "body": base64.b64encode(body.encode("utf-8")).decode("ascii") if base64_body else body,
        "isBase64Encoded": base64_body,
    }


def provider_of(event: dict[str, Any]) -> str:
    return event["pathParameters"]["provider"]


def body_of(event: dict[str, Any]) -> str:
    body = event["body"]
    return base64.b64decode(body).decode("utf-8") if event.get("isBase64Encoded") else body


def resigned(event: dict[str, Any], secrets: str | Sequence[str] | None = None, timestamp: int | None = None) -> dict:
    """A copy of a sample event, signed again (by default with the sample secret, for now)."""
    provider = provider_of(event)
    secrets = secrets or (STRIPE_SAMPLE_SECRET if provider == "stripe" else PADDLE_SAMPLE_SECRET)
    fresh = copy.deepcopy(event)
    fresh["headers"][SIGNATURE_HEADERS[provider]] = sign(provider, body_of(event), secrets, timestamp)
    return fresh


if __name__ == "__main__":
    for name in sys.argv[1:] or ["--help"]:
        if name.startswith("-"):
            print(__doc__)
            break
        print(json.dumps(resigned(json.loads(Path(name).read_text())), indent=2))

"""Google Play real-time developer notifications as Pub/Sub pushes them, signed by the stand-in's key
(local/google_play.py), and the purchases the stand-in's Play Developer API answers for them.

The shapes follow developer.android.com/google/play/billing/rtdn-reference and the Play Developer
API's purchases.subscriptionsv2 resource; the values are made up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from braze_forwarder.ingest.webhooks import google_oidc, google_play_api
from local.google_play import PACKAGE_NAME, GoogleStandIn
from local.resources import LocalStack
from tests.conftest import use_function_environment
from tests.webhook_signing import api_event

ACCOUNT = "braze-user-42"
SUBSCRIPTION_TOKEN = "sub-token-" + "a" * 120
PRODUCT_TOKEN = "product-token-" + "b" * 120
FIRST_ORDER = "GPA.3301-2202-1103-44000"


@dataclass
class Reply:
    status: int
    body: dict[str, Any]


def subscription_purchase(order_id: str = FIRST_ORDER, *, account: str | None = ACCOUNT) -> dict:
    """What purchases.subscriptionsv2.get answers for an active monthly plan whose latest order is `order_id`."""
    purchase: dict[str, Any] = {
        "kind": "androidpublisher#subscriptionPurchaseV2",
        "regionCode": "JP",
        "startTime": "2026-11-22T07:30:00.000Z",
        "subscriptionState": "SUBSCRIPTION_STATE_ACTIVE",
        "latestOrderId": order_id,
        "acknowledgementState": "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED",
        "lineItems": [
            {
                "productId": "premium_monthly",
                "expiryTime": "2026-12-22T07:30:00.000Z",
                "latestSuccessfulOrderId": order_id,
                "autoRenewingPlan": {
                    "autoRenewEnabled": True,
                    "recurringPrice": {"currencyCode": "JPY", "units": "1200", "nanos": 0},
                },
                "offerDetails": {"basePlanId": "monthly", "offerId": "intro"},
            }
        ],
    }
    if account:
        purchase["externalAccountIdentifiers"] = {"obfuscatedExternalAccountId": account}
    return purchase


def notification(**kind: Any) -> dict[str, Any]:
    """A DeveloperNotification; `kind` is its one notification field (and may override eventTimeMillis)."""
    return {"version": "1.0", "packageName": PACKAGE_NAME, "eventTimeMillis": "1795333129123", **kind}


def subscription(number: int, token: str = SUBSCRIPTION_TOKEN, **more: Any) -> dict[str, Any]:
    """A SubscriptionNotification of type `number` (2 RENEWED, 4 PURCHASED, ...) for `token`."""
    details = {
        "version": "1.0",
        "notificationType": number,
        "purchaseToken": token,
        "subscriptionId": "premium_monthly",
    }
    return notification(subscriptionNotification=details, **more)


def use_google_stand_in(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, google: GoogleStandIn) -> None:
    """IngestApiFunction's environment pointed at the stand-in, its service account key in the stack's
    secret, and the stand-in and the forwarder's Google caches as new, knowing SUBSCRIPTION_TOKEN."""
    use_function_environment(monkeypatch, stack, "IngestApiFunction", **google.environment())
    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.refs["GooglePlayServiceAccountSecret"], SecretString=google.service_account_key()
    )
    google_oidc.GOOGLE_KEYS.reset()
    google_play_api.reset()
    google.subscriptions.clear()
    google.products.clear()
    google.orders.clear()
    google.requests.clear()
    google.fail_next(0)
    google.subscriptions[SUBSCRIPTION_TOKEN] = subscription_purchase()


def push(
    google: GoogleStandIn,
    lambda_context: Any,
    notification: dict[str, Any] | None = None,
    *,
    message_id: str = "9001",
    token: str | None = None,
    body: str | None = None,
    authorization: str | None = None,
) -> Reply:
    """POST /webhooks/google_play as Pub/Sub pushes `notification` (or `body` verbatim) in message `message_id`."""
    from functions.ingest_api import app

    text = body if body is not None else google.push_body(notification or {}, message_id)
    event = api_event("google_play", text, None)
    event["headers"]["authorization"] = authorization or f"Bearer {token or google.push_token()}"
    result = app.lambda_handler(event, lambda_context)
    return Reply(result["statusCode"], json.loads(result["body"]))

"""Google Play notifications from Pub/Sub's push to a Braze profile, under Pub/Sub's redeliveries, a
second notification for one order, a Play Developer API failure and Braze faults with SQS's
redelivery: every payment and the refund arrive, none twice. Ingest and sender in-process (moto),
Google's keys and Play API the stand-in (local/google_play.py), Braze the sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from local.braze_sandbox import BrazeSandbox, SandboxConfig, ScriptedResponse
from local.google_play import GoogleStandIn
from tests.google_play_notifications import (
    ACCOUNT,
    FIRST_ORDER,
    SUBSCRIPTION_TOKEN,
    notification,
    push,
    subscription,
    subscription_purchase,
    use_google_stand_in,
)
from tests.store_delivery import deliver_after_a_failed_delivery, queued_messages

# Push tokens carry iat/exp checked against now; dedupe markers expire.
pytestmark = pytest.mark.clock

BRAZE_KEY = "braze-rest-key-google-play-0000"
ANONYMOUS_TOKEN = "anonymous-token-" + "c" * 120
ANONYMOUS_ORDER = "GPA.5555-6666-7777-88888"
PURCHASED, RENEWED, RECOVERED = 4, 2, 1


@pytest.fixture
def braze() -> Iterator[BrazeSandbox]:
    with BrazeSandbox(SandboxConfig(api_key=BRAZE_KEY, seed=11)) as sandbox:
        yield sandbox


@pytest.fixture
def google() -> Iterator[GoogleStandIn]:
    with GoogleStandIn() as stand_in:
        yield stand_in


def test_payments_and_a_refund_under_redeliveries_play_api_and_braze_faults_arrive_once_each(
    aws_stack, monkeypatch, lambda_context, braze, google
):
    use_google_stand_in(aws_stack, monkeypatch, google)
    started_ms = int(time.time() * 1000)
    answers: list[str] = []

    def send(message_id: str, number: int | None = None, *, token: str = SUBSCRIPTION_TOKEN, **kind) -> int:
        at = {"eventTimeMillis": str(started_ms + len(answers) * 1000)}
        body = subscription(number, token, **at) if number is not None else notification(**kind, **at)
        reply = push(google, lambda_context, body, message_id=message_id)
        answers.append(reply.body["message"] if reply.status == 200 else reply.body["type"])
        return reply.status

    send("buy", PURCHASED)
    send("recovered", RECOVERED)  # another notification for the first order: no second purchase
    for renewal in range(3):  # renewal orders are the first order's id with ..0, ..1, ...
        google.subscriptions[SUBSCRIPTION_TOKEN] = subscription_purchase(f"{FIRST_ORDER}..{renewal}")
        send(f"renewal-{renewal}", RENEWED)
        send(f"renewal-{renewal}", RENEWED)  # Pub/Sub redelivers the push
    last_renewal = f"{FIRST_ORDER}..3"
    google.subscriptions[SUBSCRIPTION_TOKEN] = subscription_purchase(last_renewal)
    google.fail_next(1)
    assert send("renewal-3", RENEWED) == 503  # the Play API is unavailable: Pub/Sub pushes again
    send("renewal-3", RENEWED)
    google.orders[last_renewal] = {
        "orderId": last_renewal,
        "total": {"currencyCode": "JPY", "units": "1200"},
        "lineItems": [{"productId": "premium_monthly", "total": {"currencyCode": "JPY", "units": "1200"}}],
    }
    voided = {"purchaseToken": SUBSCRIPTION_TOKEN, "orderId": last_renewal, "productType": 1, "refundType": 1}
    send("refund", voidedPurchaseNotification=voided)
    send("refund", voidedPurchaseNotification=voided)  # Pub/Sub redelivers the push
    google.subscriptions[ANONYMOUS_TOKEN] = subscription_purchase(ANONYMOUS_ORDER, account=None)
    send("anonymous", PURCHASED, token=ANONYMOUS_TOKEN)

    assert answers == [
        "queued",
        "ignored",
        *["queued", "duplicate"] * 3,
        "google_play_api_unavailable",
        "queued",
        "queued",
        "duplicate",
        "queued",
    ]
    messages = queued_messages(aws_stack.refs["EventsQueue"])
    assert len(messages) == 7

    faults = [
        ScriptedResponse(status=500),
        ScriptedResponse(status=429, body={"message": "Rate limit exceeded"}, headers={"X-Ratelimit-Retry-After": "1"}),
        ScriptedResponse(status=201, delay_seconds=1.5),  # slower than the read timeout, and not applied
    ]
    # Braze fails every attempt of the first delivery (a 500, a 429, a timeout): each message is failed
    # back to SQS, which delivers it again.
    deliver_after_a_failed_delivery(monkeypatch, aws_stack, braze, BRAZE_KEY, messages, faults)

    user = braze.profile(ACCOUNT)
    assert user is not None
    assert user["purchases"]["premium_monthly"]["count"] == 5  # the first purchase and four renewals
    assert user["total_revenue"] == pytest.approx(5 * 1200)
    events = user["custom_events"]
    assert events["subscription_purchased"]["count"] == 1 and events["subscription_renewed"]["count"] == 4
    assert events["purchase_refunded"]["count"] == 1
    assert "subscription_recovered" not in events
    assert user["attributes"]["google_play_subscription_state"] == "SUBSCRIPTION_STATE_ACTIVE"
    alias = braze.alias_profile(ANONYMOUS_ORDER, "google_play_order_id")
    assert alias is not None and alias["purchases"]["premium_monthly"]["count"] == 1
    assert alias["custom_events"]["subscription_purchased"]["count"] == 1

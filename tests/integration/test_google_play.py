"""POST /webhooks/google_play end to end in-process: a Pub/Sub push with a token signed by a key made
here, Google's keys and the Play Developer API on loopback (local/google_play.py), SQS, DynamoDB and S3
in moto."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from braze_forwarder import queue
from braze_forwarder.braze.validation import check_track_object
from braze_forwarder.ingest.webhooks import google_oidc
from braze_forwarder.ingest.webhooks.base import MappingError
from braze_forwarder.ingest.webhooks.google_play import SUBSCRIPTION_TYPES, google_money
from local.google_play import GoogleStandIn, _key_and_certificate
from tests.google_play_notifications import (
    ACCOUNT,
    PRODUCT_TOKEN,
    SUBSCRIPTION_TOKEN,
    Reply,
    notification,
    subscription,
    subscription_purchase,
    use_google_stand_in,
)
from tests.google_play_notifications import push as push_notification

# Tokens carry iat/exp checked against now; dedupe markers expire.
pytestmark = pytest.mark.clock


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleStandIn]:
    with GoogleStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def push(aws_stack, monkeypatch, lambda_context, google) -> Callable[..., Reply]:
    use_google_stand_in(aws_stack, monkeypatch, google)
    return functools.partial(push_notification, google, lambda_context)


def queued(stack) -> list[tuple[str, dict[str, Any]]]:
    sqs = boto3.client("sqs")
    found = []
    while messages := sqs.receive_message(QueueUrl=stack.refs["EventsQueue"], MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            envelope = queue.decode(message["Body"])
            assert envelope.source == "google_play" and envelope.received_at == "2026-11-22T07:38:49.123Z"
            found += [(item.array, item.object) for item in envelope.items]
            sqs.delete_message(QueueUrl=stack.refs["EventsQueue"], ReceiptHandle=message["ReceiptHandle"])
    for array, braze_object in found:
        assert check_track_object(array, braze_object, len(queue.encode_object(braze_object))) is None
    return found


def kept(stack) -> list[dict[str, Any]]:
    s3 = boto3.client("s3")
    bucket = stack.refs["RejectedObjectsBucket"]
    records = []
    for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        text = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode()
        records += [json.loads(line) for line in text.splitlines()]
    return records


# ---------------------------------------------------------------- subscriptions


@pytest.mark.parametrize("number", sorted(SUBSCRIPTION_TYPES))
def test_each_subscription_notification_type_becomes_its_event_and_attributes(push, aws_stack, number):
    name, paid = SUBSCRIPTION_TYPES[number]

    reply = push(subscription(number))

    assert reply.status == 200 and reply.body["message"] == "queued", reply.body
    objects = queued(aws_stack)
    [event] = [o for a, o in objects if a == "events"]
    assert event["name"] == f"subscription_{name}" and event["external_id"] == ACCOUNT
    assert event["properties"]["product_id"] == "premium_monthly"
    assert event["properties"]["state"] == "SUBSCRIPTION_STATE_ACTIVE"
    assert event["time"] == "2026-11-22T07:38:49.123Z"
    [attributes] = [o for a, o in objects if a == "attributes"]
    assert attributes["google_play_subscription_expires_at"] == "2026-12-22T07:30:00.000Z"
    purchases = [o for a, o in objects if a == "purchases"]
    if paid:
        [purchase] = purchases
        assert (purchase["product_id"], purchase["currency"], purchase["price"]) == ("premium_monthly", "JPY", 1200)
        assert purchase["properties"]["order_id"] == "GPA.3301-2202-1103-44000"
    else:
        assert purchases == []


def test_a_purchase_without_an_account_id_goes_to_an_alias_on_its_first_order(push, aws_stack, google):
    google.subscriptions[SUBSCRIPTION_TOKEN] = subscription_purchase("GPA.3301-2202-1103-44000..3", account=None)

    assert push(subscription(2)).status == 200

    objects = queued(aws_stack)
    alias = {"alias_name": "GPA.3301-2202-1103-44000", "alias_label": "google_play_order_id"}
    assert objects[0] == ("attributes", {"user_alias": alias, "_update_existing_only": False})
    assert all(o["user_alias"] == alias for _, o in objects)


def test_a_payment_is_counted_once_whichever_notification_brings_it(push, aws_stack):
    assert push(subscription(4), message_id="9001").body["message"] == "queued"
    assert push(subscription(4), message_id="9001").body["message"] == "duplicate"  # Pub/Sub redelivery
    # Another notification for the same order (here RECOVERED, e.g. after a missed one) counts no second purchase.
    second = push(subscription(1), message_id="9002")

    assert second.body == {"message": "ignored", "reason": "another event for the same payment already counted it"}
    assert [a for a, _ in queued(aws_stack)].count("purchases") == 1


def test_a_play_api_failure_is_retried_by_pubsub_and_then_delivered_once(push, aws_stack, google):
    google.fail_next(1)

    first = push(subscription(2))
    assert first.status == 503 and first.body["type"] == "google_play_api_unavailable"
    assert queued(aws_stack) == []
    records = boto3.client("dynamodb").scan(TableName=aws_stack.refs["IdempotencyTable"])["Items"]
    assert records == []  # nothing claimed: the redelivery is not a duplicate

    second = push(subscription(2))  # Pub/Sub redelivers the same message
    third = push(subscription(2))

    assert second.body["message"] == "queued" and third.body["message"] == "duplicate"
    assert [a for a, _ in queued(aws_stack)].count("purchases") == 1


def test_a_purchase_google_does_not_know_is_kept_for_an_operator(push, aws_stack):
    reply = push(subscription(4, token="unknown-token"))

    assert reply.status == 200 and reply.body["message"] == "kept"
    assert queued(aws_stack) == []
    [record] = kept(aws_stack)
    assert record["reason"]["type"] == "USER_NOT_FOUND" and "404/410" in record["reason"]["message"]


# ---------------------------------------------------------------- one-time products and refunds


def one_time(number: int) -> dict[str, Any]:
    return notification(
        oneTimeProductNotification={
            "version": "1.0",
            "notificationType": number,
            "purchaseToken": PRODUCT_TOKEN,
            "sku": "coins_500",
        }
    )


def put_product(google, state: int = 0) -> None:
    google.products[("coins_500", PRODUCT_TOKEN)] = {
        "kind": "androidpublisher#productPurchase",
        "purchaseTimeMillis": "1795333100000",
        "purchaseState": state,
        "orderId": "GPA.1111-2222-3333-44444",
        "productId": "coins_500",
        "quantity": 2,
        "obfuscatedExternalAccountId": ACCOUNT,
        "regionCode": "KW",
    }
    google.orders["GPA.1111-2222-3333-44444"] = {
        "orderId": "GPA.1111-2222-3333-44444",
        "total": {"currencyCode": "KWD", "units": "1", "nanos": 250500000},
        "lineItems": [{"productId": "coins_500", "total": {"currencyCode": "KWD", "units": "1", "nanos": 250500000}}],
    }


def test_a_one_time_product_becomes_a_purchase_with_the_amount_paid(push, aws_stack, google):
    put_product(google)

    reply = push(one_time(1))

    assert reply.body["message"] == "queued", reply.body
    [(array, purchase)] = queued(aws_stack)
    assert array == "purchases" and purchase["external_id"] == ACCOUNT
    # KWD has three decimals; 1.2505 rounds half to even at the third.
    assert (purchase["product_id"], purchase["currency"], purchase["price"]) == ("coins_500", "KWD", 1.25)
    assert purchase["properties"]["quantity"] == 2
    assert push(one_time(1), message_id="9003").body["message"] == "ignored"  # same order: counted once


def test_a_pending_one_time_purchase_is_not_yet_a_purchase(push, aws_stack, google):
    put_product(google, state=2)

    assert push(one_time(1)).body["message"] == "ignored"
    assert queued(aws_stack) == []


def test_a_canceled_one_time_purchase_is_an_event(push, aws_stack, google):
    put_product(google, state=1)

    assert push(one_time(2)).body["message"] == "queued"
    [(array, event)] = queued(aws_stack)
    assert array == "events" and event["name"] == "product_purchase_canceled"


@pytest.mark.parametrize("product_type", [1, 2])
def test_a_voided_purchase_is_a_refund_event(push, aws_stack, google, product_type):
    put_product(google)
    token = SUBSCRIPTION_TOKEN if product_type == 1 else PRODUCT_TOKEN
    voided = {
        "purchaseToken": token,
        "orderId": "GPA.1111-2222-3333-44444",
        "productType": product_type,
        "refundType": 1,
    }

    assert push(notification(voidedPurchaseNotification=voided)).body["message"] == "queued"

    [event] = [o for a, o in queued(aws_stack) if a == "events"]
    assert event["name"] == "purchase_refunded" and event["external_id"] == ACCOUNT
    assert event["properties"]["amount"] == 1.25 and event["properties"]["currency"] == "KWD"
    assert event["properties"]["refund_type"] == "full"


def test_a_test_notification_is_verified_and_ignored(push, aws_stack, google):
    reply = push(notification(testNotification={"version": "1.0"}))

    assert reply.body["message"] == "ignored" and "test notification" in reply.body["reason"]
    assert queued(aws_stack) == [] and google.requests == []


# ---------------------------------------------------------------- refusals: 4xx, nothing queued, nothing looked up


def other_key_token(google) -> str:
    key, _ = _key_and_certificate("not google")
    return google.push_token(signing_key=key)


REFUSALS: dict[str, tuple[Callable[[GoogleStandIn], dict[str, Any]], int, str]] = {
    "no token": (lambda g: {"authorization": " "}, 401, "missing_signature"),
    "not bearer": (lambda g: {"authorization": "Basic dXNlcjpwYXNz"}, 400, "malformed_signature_header"),
    "not a jwt": (lambda g: {"authorization": "Bearer a.b.c"}, 400, "malformed_signature_header"),
    "bad signature": (lambda g: {"token": other_key_token(g)}, 401, "invalid_token"),
    "unknown key": (lambda g: {"token": g.push_token(key_id="0" * 40)}, 401, "invalid_token"),
    "expired": (lambda g: {"token": g.push_token(issued_at=int(time.time()) - 7200)}, 401, "expired_token"),
    "replayed an hour later": (
        lambda g: {"token": g.push_token(issued_at=int(time.time()) - 3620)},
        401,
        "expired_token",
    ),
    "from the future": (
        lambda g: {"token": g.push_token(issued_at=int(time.time()) + 600)},
        401,
        "token_not_yet_valid",
    ),
    "too long-lived": (lambda g: {"token": g.push_token(lifetime_seconds=86400)}, 401, "token_lifetime_too_long"),
    "wrong audience": (lambda g: {"token": g.push_token(audience="someone-else")}, 401, "wrong_audience"),
    "wrong email": (
        lambda g: {"token": g.push_token(email="attacker@evil.iam.gserviceaccount.com")},
        401,
        "wrong_service_account",
    ),
    "unverified email": (lambda g: {"token": g.push_token(email_verified=False)}, 401, "wrong_service_account"),
    "wrong issuer": (lambda g: {"token": g.push_token(issuer="https://evil.example")}, 401, "wrong_issuer"),
    "wrong package": (
        lambda g: {"body": g.push_body({**subscription(4), "packageName": "com.other.app"}, "9001")},
        400,
        "wrong_package",
    ),
    "not a push": (lambda g: {"body": json.dumps({"hello": "world"})}, 400, "invalid_event"),
    "data not base64": (
        lambda g: {"body": json.dumps({"message": {"data": "%%%", "messageId": "1"}})},
        400,
        "invalid_event",
    ),
    "no purchase token": (
        lambda g: {"body": g.push_body(notification(subscriptionNotification={"notificationType": 4}), "9001")},
        400,
        "invalid_event",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_refusal_is_a_4xx_with_type_and_reason_and_nothing_is_queued(push, aws_stack, google, case):
    make, status, error_type = REFUSALS[case]
    arguments = make(google)
    authorization = arguments.pop("authorization", None)

    reply = push(subscription(4), authorization=authorization, **arguments)

    assert (reply.status, reply.body["type"]) == (status, error_type), reply.body
    assert reply.body["reason"]
    assert queued(aws_stack) == [] and kept(aws_stack) == []
    assert google.requests == []  # nothing looked up for a refused push


def test_a_rotated_google_key_is_fetched_again(push, aws_stack, google):
    assert push(subscription(4)).status == 200
    key, certificate = _key_and_certificate("rotated")
    google.certs["rotated-key"] = certificate
    try:
        reply = push(subscription(3), message_id="9010", token=google.push_token(key_id="rotated-key", signing_key=key))
    finally:
        del google.certs["rotated-key"]

    assert reply.status == 200 and reply.body["message"] == "queued"


def test_googles_keys_are_kept_for_the_max_age_google_gives(push, aws_stack, google, monkeypatch):
    google.certs_fetches = 0
    assert push(subscription(3), message_id="9020").status == 200
    assert push(subscription(3), message_id="9021").status == 200
    assert google.certs_fetches == 1  # max-age=3600: the second push uses the cached keys

    monkeypatch.setattr(google, "certs_max_age_seconds", 0)
    google_oidc.GOOGLE_KEYS.reset()
    assert push(subscription(3), message_id="9022").status == 200
    assert push(subscription(3), message_id="9023").status == 200
    assert google.certs_fetches == 3  # max-age=0: fetched for each push


def test_a_service_account_key_that_cannot_be_used_is_a_503_and_nothing_is_claimed(push, aws_stack):
    broken = json.dumps({"type": "service_account", "private_key": "not a key", "client_email": "x@y"})
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws_stack.refs["GooglePlayServiceAccountSecret"], SecretString=broken
    )

    reply = push(subscription(4))

    assert reply.status == 503 and reply.body["type"] == "google_play_api_unavailable"
    assert queued(aws_stack) == []
    assert boto3.client("dynamodb").scan(TableName=aws_stack.refs["IdempotencyTable"])["Items"] == []


# ---------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("money", "expected"),
    [
        ({"currencyCode": "USD", "units": "4", "nanos": 990000000}, ("USD", 4.99)),
        ({"currencyCode": "JPY", "units": "1200"}, ("JPY", 1200)),
        ({"currencyCode": "KWD", "units": 3, "nanos": 1500000}, ("KWD", 3.002)),
        ({"currencyCode": "EUR", "nanos": 5000000}, ("EUR", 0.0)),  # half to even at the cent
    ],
)
def test_money_is_read_with_the_currencys_own_decimals(money, expected):
    assert google_money(money, "price") == expected


@pytest.mark.parametrize(
    "money", [None, {"units": "1"}, {"currencyCode": "USD", "units": "1.5"}, {"currencyCode": "USD", "nanos": 10**9}]
)
def test_money_that_cannot_be_read_is_a_mapping_error(money):
    with pytest.raises(MappingError):
        google_money(money, "price")


# ---------------------------------------------------------------- cold start


def test_the_ingest_function_loads_google_auth_only_for_a_google_play_push():
    """google-auth and cryptography cost ~150 ms of import (docs/google-play.md): /users/track never pays it."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    check = (
        "import sys; import functions.ingest_api.app; "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(('google.', 'cryptography'))}))"
    )
    environment = {"PYTHONPATH": f"{root / 'layers' / 'shared'}:{root}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=root, env=environment, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_push_to_a_stack_without_the_push_settings_is_refused(push, aws_stack, google, monkeypatch):
    from braze_forwarder.config import settings

    monkeypatch.setenv("GOOGLE_PLAY_PUSH_AUDIENCE", "")
    settings.cache_clear()

    reply = push(subscription(4))

    assert (reply.status, reply.body["type"]) == (401, "push_not_configured")
    assert queued(aws_stack) == [] and google.requests == []

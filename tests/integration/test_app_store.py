"""POST /webhooks/app_store end to end in-process: a notification signed by a test chain → handler → SQS,
DynamoDB, S3 (moto). The chain is built here (local.app_store_ca) and trusted through the setting a
deployment leaves at Apple's root only."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from braze_forwarder import queue
from braze_forwarder.braze.validation import check_track_object
from local.app_store_ca import SigningChain, build_chain, resigned_body
from tests.app_store_notifications import (
    APP_ACCOUNT_TOKEN,
    DAY_MS,
    ORIGINAL_TRANSACTION,
    notification_body,
    now_ms,
    settings_for,
)
from tests.conftest import load_event, use_function_environment
from tests.integration.test_webhooks import dedupe_records, kept, queued
from tests.webhook_signing import api_event

# signedDate is checked against now and dedupe markers expire: run on other days too (tests/clock.py).
pytestmark = pytest.mark.clock

CHAIN = build_chain()
OTHER_CHAIN = build_chain(name="Another test")


@dataclass
class Reply:
    status: int
    body: dict[str, Any]


@pytest.fixture
def post(aws_stack, monkeypatch, lambda_context) -> Callable[..., Reply]:
    use_function_environment(monkeypatch, aws_stack, "IngestApiFunction", **settings_for(CHAIN))
    from functions.ingest_api import app

    def send(body: str) -> Reply:
        result = app.lambda_handler(api_event("app_store", body, None), lambda_context)
        return Reply(result["statusCode"], json.loads(result["body"]))

    return send


def objects(envelopes: list[queue.Envelope], array: str) -> list[dict[str, Any]]:
    return [item.object for envelope in envelopes for item in envelope.items if item.array == array]


# ---------------------------------------------------------------- every mapped type

# (type, subtype) → (Braze event name or None, purchases, app_store_subscription_status or None)
MAPPED = [
    ("SUBSCRIBED", "INITIAL_BUY", "subscription_started", 1, "active"),
    ("SUBSCRIBED", "RESUBSCRIBE", "subscription_resubscribed", 1, "active"),
    ("DID_RENEW", None, "subscription_renewed", 1, "active"),
    ("DID_RENEW", "BILLING_RECOVERY", "subscription_renewed", 1, "active"),
    ("OFFER_REDEEMED", "INITIAL_BUY", "subscription_offer_redeemed", 1, "active"),
    ("OFFER_REDEEMED", "UPGRADE", "subscription_offer_redeemed", 1, "active"),
    ("OFFER_REDEEMED", "DOWNGRADE", "subscription_offer_redeemed", 0, None),
    ("OFFER_REDEEMED", None, "subscription_offer_redeemed", 0, None),
    ("ONE_TIME_CHARGE", None, None, 1, None),
    ("DID_CHANGE_RENEWAL_PREF", "UPGRADE", "subscription_plan_changed", 1, "active"),
    ("DID_CHANGE_RENEWAL_PREF", "DOWNGRADE", "subscription_plan_changed", 0, None),
    ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", "subscription_auto_renew_disabled", 0, None),
    ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED", "subscription_auto_renew_enabled", 0, None),
    ("DID_FAIL_TO_RENEW", None, "subscription_billing_retry", 0, "billing_retry"),
    ("DID_FAIL_TO_RENEW", "GRACE_PERIOD", "subscription_grace_period_started", 0, "grace_period"),
    ("GRACE_PERIOD_EXPIRED", None, "subscription_grace_period_expired", 0, "billing_retry"),
    ("EXPIRED", "VOLUNTARY", "subscription_expired", 0, "expired"),
    ("EXPIRED", "BILLING_RETRY", "subscription_expired", 0, "expired"),
    ("EXPIRED", "PRICE_INCREASE", "subscription_expired", 0, "expired"),
    ("EXPIRED", "PRODUCT_NOT_FOR_SALE", "subscription_expired", 0, "expired"),
    ("REFUND", None, "purchase_refunded", 0, "refunded"),
    ("REFUND_DECLINED", None, "refund_declined", 0, None),
    ("REFUND_REVERSED", None, "refund_reversed", 0, "active"),
    ("REVOKE", None, "purchase_revoked", 0, "revoked"),
    ("PRICE_INCREASE", "PENDING", "subscription_price_increase", 0, None),
    ("PRICE_INCREASE", "ACCEPTED", "subscription_price_increase", 0, None),
    ("RENEWAL_EXTENDED", None, "subscription_renewal_extended", 0, "active"),
]


@pytest.mark.parametrize(("kind", "subtype", "event_name", "purchases", "status"), MAPPED)
def test_each_mapped_notification_is_queued_once_valid_for_braze_at_apples_signed_date(
    post, aws_stack, kind, subtype, event_name, purchases, status
):
    signed = now_ms() - 3_600_000  # signed an hour ago: a retry; its values stay at that time
    extra = {"type": "Consumable", "expiresDate": None} if kind == "ONE_TIME_CHARGE" else {}
    body = notification_body(CHAIN, kind, subtype, signed_ms=signed, transaction_fields=extra)

    reply = post(body)

    assert (reply.status, reply.body["message"]) == (200, "queued"), reply.body
    [envelope] = queued(aws_stack)
    signed_at = datetime.fromtimestamp(signed / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{signed % 1000:03d}Z"
    assert envelope.source == "app_store" and envelope.received_at == signed_at
    for item in envelope.items:
        assert check_track_object(item.array, item.object, len(queue.encode_object(item.object))) is None
        assert item.object["external_id"] == APP_ACCOUNT_TOKEN
        if item.array != "attributes":
            assert item.object["time"] == signed_at
    events = objects([envelope], "events")
    assert [e["name"] for e in events] == ([event_name] if event_name else [])
    bought = objects([envelope], "purchases")
    assert len(bought) == purchases
    if purchases:
        assert (bought[0]["product_id"], bought[0]["currency"], bought[0]["price"]) == ("pro.monthly", "USD", 4.99)
        assert bought[0]["properties"]["transaction_id"] == "2000000000000042"
    statuses = [a.get("app_store_subscription_status") for a in objects([envelope], "attributes")]
    assert (status in statuses) if status else not any(statuses)


@pytest.mark.parametrize(
    ("kind", "subtype"), [("TEST", None), ("CONSUMPTION_REQUEST", None), ("METADATA_UPDATE", None)]
)
def test_test_and_unmapped_notifications_are_verified_then_ignored(post, aws_stack, kind, subtype):
    reply = post(notification_body(CHAIN, kind, subtype, with_transaction=kind != "TEST", with_renewal=False))

    assert (reply.status, reply.body["message"]) == (200, "ignored")
    assert queued(aws_stack) == []


def test_the_sample_in_events_signed_again_by_a_trusted_chain_is_queued(post, aws_stack):
    # What the demo does with events/app_store_did_renew.json (local/demo.py).
    sample = load_event("app_store_did_renew.json")

    reply = post(resigned_body(sample["body"], CHAIN))

    assert (reply.status, reply.body["message"]) == (200, "queued")
    [purchase] = objects(queued(aws_stack), "purchases")
    assert (purchase["external_id"], purchase["price"], purchase["currency"]) == (APP_ACCOUNT_TOKEN, 4.99, "USD")


def test_the_sample_as_recorded_is_refused_its_chain_is_not_trusted(post, aws_stack):
    reply = post(load_event("app_store_did_renew.json")["body"])

    assert (reply.status, reply.body["type"]) == (401, "untrusted_root")


def test_an_external_purchase_token_notification_is_verified_then_ignored(post, aws_stack):
    token = {"bundleId": "com.example.braze.forwarder", "appAppleId": 1, "externalPurchaseId": "SANDBOX_abc"}
    notification = {
        "notificationType": "EXTERNAL_PURCHASE_TOKEN",
        "notificationUUID": "0b2f4c1e-1",
        "version": "2.0",
        "signedDate": now_ms(),
        "externalPurchaseToken": token,
    }
    body = json.dumps({"signedPayload": CHAIN.sign(notification)})

    sandbox = post(body)

    assert (sandbox.status, sandbox.body["type"]) == (400, "wrong_environment")  # a Sandbox token
    token["externalPurchaseId"] = "abc"
    reply = post(json.dumps({"signedPayload": CHAIN.sign(notification)}))

    assert (reply.status, reply.body["message"]) == (200, "ignored")


def test_a_free_trial_start_sends_the_event_and_no_purchase(post, aws_stack):
    body = notification_body(CHAIN, "SUBSCRIBED", "INITIAL_BUY", transaction_fields={"price": 0, "offerType": 1})

    assert post(body).status == 200

    envelopes = queued(aws_stack)
    assert objects(envelopes, "purchases") == []
    assert [e["name"] for e in objects(envelopes, "events")] == ["subscription_started"]


@pytest.mark.parametrize(
    ("currency", "milliunits", "quantity", "price"),
    [("JPY", 1_200_000, 1, 1200.0), ("KWD", 1_490, 1, 1.49), ("EUR", 990, 3, 2.97), ("BHD", 2_345, 1, 2.345)],
)
def test_prices_arrive_in_the_currencys_own_decimals(post, aws_stack, currency, milliunits, quantity, price):
    fields = {"currency": currency, "price": milliunits, "quantity": quantity, "type": "Consumable"}
    body = notification_body(CHAIN, "ONE_TIME_CHARGE", transaction_fields=fields, with_renewal=False)

    assert post(body).status == 200

    [purchase] = objects(queued(aws_stack), "purchases")
    assert (purchase["currency"], purchase["price"], purchase["properties"]["quantity"]) == (currency, price, quantity)


def test_without_an_app_account_token_the_user_is_an_alias_on_the_original_transaction(post, aws_stack, monkeypatch):
    body = notification_body(
        CHAIN, "DID_RENEW", transaction_fields={"appAccountToken": None}, renewal_fields={"appAccountToken": None}
    )

    assert post(body).status == 200

    envelopes = queued(aws_stack)
    alias = {"alias_name": ORIGINAL_TRANSACTION, "alias_label": "app_store_original_transaction_id"}
    [creates, *rest] = [item for envelope in envelopes for item in envelope.items]
    assert creates.array == "attributes" and creates.object == {"user_alias": alias, "_update_existing_only": False}
    assert all(item.object["user_alias"] == alias for item in rest)


def test_the_app_account_token_can_be_turned_off(post, aws_stack, monkeypatch):
    monkeypatch.setenv("APP_STORE_USE_APP_ACCOUNT_TOKEN", "false")

    assert post(notification_body(CHAIN, "DID_RENEW")).status == 200

    [purchase] = objects(queued(aws_stack), "purchases")
    assert "external_id" not in purchase and purchase["user_alias"]["alias_name"] == ORIGINAL_TRANSACTION


# ---------------------------------------------------------------- counted once


def test_a_retried_notification_is_a_duplicate_and_queues_nothing_more(post, aws_stack):
    body = notification_body(CHAIN, "DID_RENEW")

    first, second = post(body), post(body)

    assert (first.body["message"], second.body["message"]) == ("queued", "duplicate")
    assert len(objects(queued(aws_stack), "purchases")) == 1


def test_two_notifications_of_one_transaction_count_its_money_once(post, aws_stack):
    # An offer code's first purchase may arrive as SUBSCRIBED and as OFFER_REDEEMED: one payment.
    first = post(notification_body(CHAIN, "SUBSCRIBED", "INITIAL_BUY"))
    second = post(notification_body(CHAIN, "OFFER_REDEEMED", "INITIAL_BUY"))

    assert first.body["message"] == "queued"
    assert (second.body["message"], second.body["reason"]) == (
        "ignored",
        "another event for the same payment already counted it",
    )
    assert len(objects(queued(aws_stack), "purchases")) == 1


def test_each_renewal_is_its_own_payment(post, aws_stack):
    post(notification_body(CHAIN, "DID_RENEW", transaction_fields={"transactionId": "2000000000000100"}))
    post(notification_body(CHAIN, "DID_RENEW", transaction_fields={"transactionId": "2000000000000101"}))

    assert len(objects(queued(aws_stack), "purchases")) == 2


# ---------------------------------------------------------------- refused: 4xx, a type and a reason, nothing queued


def _mixed_chain() -> SigningChain:
    """This test chain's root and intermediate with another chain's leaf: the names match, the signature does not."""
    return SigningChain(OTHER_CHAIN.leaf_key, (OTHER_CHAIN.certificates[0], *CHAIN.certificates[1:]))


def _lapsed_chain() -> SigningChain:
    past = datetime.now(UTC) - timedelta(days=400)
    return build_chain(not_before=past, not_after=past + timedelta(days=30))


def _forged_signature() -> str:
    body = json.loads(notification_body(CHAIN, "DID_RENEW"))
    header, payload, _ = body["signedPayload"].split(".")
    other = OTHER_CHAIN.sign({"x": 1}).split(".")[2]  # a valid ES256 signature, of something else
    return json.dumps({"signedPayload": f"{header}.{payload}.{other}"})


def _hs256() -> str:
    token = jwt.encode({"signedDate": now_ms()}, "a-shared-secret-of-32-bytes-long!", algorithm="HS256")
    return json.dumps({"signedPayload": token})


def _short_chain() -> str:
    body = json.loads(notification_body(CHAIN, "DID_RENEW"))
    payload = jwt.decode(body["signedPayload"], options={"verify_signature": False})
    token = jwt.encode(payload, CHAIN.leaf_key, algorithm="ES256", headers={"x5c": CHAIN.x5c[:2]})
    return json.dumps({"signedPayload": token})


REFUSALS: dict[str, tuple[Callable[[], str], int, str]] = {
    "broken chain": (lambda: notification_body(_mixed_chain(), "DID_RENEW"), 401, "broken_certificate_chain"),
    "two certificates": (_short_chain, 401, "broken_certificate_chain"),
    "wrong root": (lambda: notification_body(OTHER_CHAIN, "DID_RENEW"), 401, "untrusted_root"),
    "wrong leaf extension": (
        lambda: notification_body(_chain_without("leaf"), "DID_RENEW"),
        401,
        "wrong_certificate",
    ),
    "wrong intermediate extension": (
        lambda: notification_body(_chain_without("intermediate"), "DID_RENEW"),
        401,
        "wrong_certificate",
    ),
    "bad signature": (_forged_signature, 401, "invalid_signature"),
    "not ES256": (_hs256, 401, "unsupported_algorithm"),
    "certificate lapsed at signedDate": (
        lambda: notification_body(_lapsed_chain(), "DID_RENEW"),
        401,
        "certificate_not_valid",
    ),
    "nested info signed by another root": (
        lambda: notification_body(CHAIN, "DID_RENEW", signing_chain_inner=OTHER_CHAIN),
        401,
        "untrusted_root",
    ),
    "wrong bundle id": (
        lambda: notification_body(CHAIN, "DID_RENEW", bundle_id="com.example.other"),
        400,
        "wrong_bundle_id",
    ),
    "sandbox in production": (
        lambda: notification_body(CHAIN, "DID_RENEW", environment="Sandbox"),
        400,
        "wrong_environment",
    ),
    "nested transaction of another environment": (
        lambda: notification_body(CHAIN, "DID_RENEW", transaction_fields={"environment": "Sandbox"}),
        400,
        "wrong_app",
    ),
    "replayed after the dedupe window": (
        lambda: notification_body(CHAIN, "DID_RENEW", signed_ms=now_ms() - 8 * DAY_MS),
        401,
        "stale_notification",
    ),
    "signed in the future": (
        lambda: notification_body(CHAIN, "DID_RENEW", signed_ms=now_ms() + 3_600_000),
        401,
        "future_notification",
    ),
    "not a JWS": (lambda: json.dumps({"signedPayload": "not.a.jws"}), 400, "malformed_notification"),
    "no signedPayload": (lambda: json.dumps({"signed": "x"}), 400, "malformed_notification"),
    "not JSON": (lambda: "signedPayload=x", 400, "malformed_notification"),
}

_CHAINS_WITHOUT: dict[str, SigningChain] = {}


def _chain_without(which: str) -> SigningChain:
    # Same root as CHAIN would need the root's key; a chain of its own, trusted in the test below.
    if which not in _CHAINS_WITHOUT:
        _CHAINS_WITHOUT[which] = build_chain(leaf_oid=which != "leaf", intermediate_oid=which != "intermediate")
    return _CHAINS_WITHOUT[which]


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_refusal_is_4xx_with_a_type_and_reason_and_nothing_is_queued(post, aws_stack, monkeypatch, case):
    make_body, status, expected = REFUSALS[case]
    body = make_body()
    if case.startswith("wrong") and "extension" in case:
        # The chain is trusted: what is refused is only the missing Apple extension.
        which = "leaf" if "leaf" in case else "intermediate"
        monkeypatch.setenv("APP_STORE_TRUSTED_ROOT_SHA256", f"{CHAIN.root_sha256},{_chain_without(which).root_sha256}")
    if case == "certificate lapsed at signedDate":
        monkeypatch.setenv("APP_STORE_TRUSTED_ROOT_SHA256", _trusted_lapsed(body))

    reply = post(body)

    assert (reply.status, reply.body["type"]) == (status, expected), reply.body
    assert reply.body["reason"]
    assert queued(aws_stack) == [] and dedupe_records(aws_stack) == {} and kept(aws_stack) == []


def _trusted_lapsed(body: str) -> str:
    import base64
    import hashlib

    header = jwt.get_unverified_header(json.loads(body)["signedPayload"])
    return hashlib.sha256(base64.b64decode(header["x5c"][2])).hexdigest()


def test_sandbox_is_taken_where_the_setting_lists_it(post, aws_stack, monkeypatch):
    monkeypatch.setenv("APP_STORE_ENVIRONMENTS", "Production,Sandbox")

    reply = post(notification_body(CHAIN, "DID_RENEW", environment="Sandbox"))

    assert (reply.status, reply.body["message"]) == (200, "queued")
    [purchase] = objects(queued(aws_stack), "purchases")
    assert purchase["properties"]["environment"] == "Sandbox"


def test_apples_root_alone_is_trusted_by_default(post, aws_stack, monkeypatch):
    monkeypatch.delenv("APP_STORE_TRUSTED_ROOT_SHA256")

    reply = post(notification_body(CHAIN, "DID_RENEW"))

    assert (reply.status, reply.body["type"]) == (401, "untrusted_root")


def test_without_a_bundle_id_every_notification_is_refused(post, aws_stack, monkeypatch):
    monkeypatch.setenv("APP_STORE_BUNDLE_ID", "")

    reply = post(notification_body(CHAIN, "DID_RENEW"))

    assert (reply.status, reply.body["type"]) == (401, "provider_not_configured")
    assert queued(aws_stack) == []


def test_the_webhook_secrets_secret_is_not_needed(post, aws_stack, monkeypatch):
    # App Store requests are proven by the certificate chain; the secret being unreadable does not matter.
    monkeypatch.setenv("WEBHOOK_SECRETS_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")

    assert post(notification_body(CHAIN, "DID_RENEW")).status == 200

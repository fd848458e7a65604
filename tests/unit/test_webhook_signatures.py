"""Stripe-Signature and Paddle-Signature verification on raw bytes: what passes, and the exact 4xx of
everything that does not."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import stripe as stripe_sdk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braze_forwarder.config import WebhookSettings
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest.webhooks import paddle, stripe
from tests.conftest import load_event
from tests.webhook_signing import (
    PADDLE_SAMPLE_SECRET,
    STRIPE_SAMPLE_SECRET,
    body_of,
    paddle_header,
    stripe_header,
)

# Signature timestamps are checked against now —
# make test runs these on other days (tests/clock.py).
pytestmark = pytest.mark.clock

SETTINGS = WebhookSettings(
    events_queue_url="q",
    ingest_keys_secret_arn="k",
    idempotency_table="t",
    user_order_table="order",
    webhook_secrets_arn="w",
    rejected_bucket="b",
)
STRIPE_BODY = body_of(load_event("webhook_stripe_payment_intent_succeeded.json")).encode()
PADDLE_BODY = body_of(load_event("webhook_paddle_transaction_completed.json")).encode()
OLD_SECRET = "whsec_previousSecretStillValidFor24h000"


def verify_stripe(header: str | None, body: bytes = STRIPE_BODY, secrets=(STRIPE_SAMPLE_SECRET,), now=None):
    headers = {} if header is None else {"stripe-signature": header}
    return stripe.PROVIDER.verify(body, headers, list(secrets), time.time() if now is None else now, SETTINGS)


def verify_paddle(header: str | None, body: bytes = PADDLE_BODY, secrets=(PADDLE_SAMPLE_SECRET,), now=None):
    headers = {} if header is None else {"paddle-signature": header}
    return paddle.PROVIDER.verify(body, headers, list(secrets), time.time() if now is None else now, SETTINGS)


def rejection(call) -> RequestRejected:
    with pytest.raises(RequestRejected) as raised:
        call()
    return raised.value


# ---------------------------------------------------------------- Stripe: what passes


def test_a_stripe_signature_over_the_raw_body_verifies_and_yields_the_event():
    event = verify_stripe(stripe_header(STRIPE_BODY, STRIPE_SAMPLE_SECRET))

    assert (event.provider, event.id, event.type) == ("stripe", "evt_3QxSampleBrazeFwd0001", "payment_intent.succeeded")
    assert event.livemode is False
    assert event.occurred_at == "2026-11-22T07:38:20Z"


def test_a_header_made_by_the_official_stripe_library_verifies():
    header = stripe_sdk.WebhookSignature.generate_signature_header(STRIPE_BODY.decode(), STRIPE_SAMPLE_SECRET)

    assert verify_stripe(header).id == "evt_3QxSampleBrazeFwd0001"


def test_the_official_stripe_library_accepts_what_our_test_signer_makes():
    # The independent check that the test signer itself is right.
    header = stripe_header(STRIPE_BODY, STRIPE_SAMPLE_SECRET)

    event = stripe_sdk.Webhook.construct_event(STRIPE_BODY, header, STRIPE_SAMPLE_SECRET)

    assert event.id == "evt_3QxSampleBrazeFwd0001"


def test_during_a_secret_roll_either_signature_may_match_either_secret():
    both = stripe_header(STRIPE_BODY, [STRIPE_SAMPLE_SECRET, OLD_SECRET])  # Stripe signs with both

    assert verify_stripe(both, secrets=[OLD_SECRET]).id
    assert verify_stripe(both, secrets=[STRIPE_SAMPLE_SECRET]).id
    assert verify_stripe(stripe_header(STRIPE_BODY, OLD_SECRET), secrets=[STRIPE_SAMPLE_SECRET, OLD_SECRET]).id


def test_unknown_schemes_next_to_v1_are_ignored():
    header = (
        stripe_header(STRIPE_BODY, STRIPE_SAMPLE_SECRET)
        + ",v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    )

    assert verify_stripe(header).id


def test_timestamps_inside_the_window_pass_on_both_sides():
    now = time.time()
    for skew in (-299, 299):
        assert verify_stripe(stripe_header(STRIPE_BODY, STRIPE_SAMPLE_SECRET, int(now) + skew), now=now).id


# ---------------------------------------------------------------- Stripe: what does not


def test_a_body_changed_by_one_byte_or_reserialised_fails():
    header = stripe_header(STRIPE_BODY, STRIPE_SAMPLE_SECRET)
    compact = json.dumps(json.loads(STRIPE_BODY), separators=(",", ":")).encode()

    for body in (STRIPE_BODY.replace(b"4999", b"4998", 1), compact):
        assert rejection(lambda body=body: verify_stripe(header, body)).type == "invalid_signature"


def test_a_wrong_secret_is_401_invalid_signature():
    error = rejection(lambda: verify_stripe(stripe_header(STRIPE_BODY, "whsec_someoneElse")))

    assert (error.status, error.type) == (401, "invalid_signature")


def test_no_configured_secret_refuses_everything():
    assert rejection(lambda: verify_stripe(stripe_header(STRIPE_BODY, STRIPE_SAMPLE_SECRET), secrets=[])).status == 401


@pytest.mark.parametrize(
    ("skew", "expected"), [(-301, "stale_timestamp"), (301, "future_timestamp"), (-86400, "stale_timestamp")]
)
def test_a_signature_outside_the_window_is_refused_in_both_directions(skew, expected):
    now = time.time()
    header = stripe_header(STRIPE_BODY, STRIPE_SAMPLE_SECRET, int(now) + skew)

    error = rejection(lambda: verify_stripe(header, now=now))

    assert (error.status, error.type) == (401, expected)


def test_the_official_library_would_accept_a_future_timestamp_that_we_refuse():
    # WEBHOOKS_AND_RELIABILITY.md §1.2: stripe-python checks only the past side.
    header = stripe_header(STRIPE_BODY, STRIPE_SAMPLE_SECRET, int(time.time()) + 3600)

    stripe_sdk.WebhookSignature.verify_header(STRIPE_BODY, header, STRIPE_SAMPLE_SECRET, tolerance=300)
    assert rejection(lambda: verify_stripe(header)).type == "future_timestamp"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "t=abc,v1=00",
        "t=,v1=00",
        "t=1795333101",
        "v1=00",
        "t=1795333101,t=1795333102,v1=00",
        "t=1795333101,v1",
        "t=١٧٩٥٣٣٣١٠١,v1=00",  # Arabic-Indic digits: int() would take them, the scheme does not
        "t=1795333101," + ",".join(["v1=00"] * 17),
        "t=1795333101,v1=" + "0" * 5000,
    ],
    ids=[
        "no-pairs",
        "t-not-number",
        "t-empty",
        "no-v1",
        "no-t",
        "two-t",
        "bare-v1",
        "unicode-digits",
        "too-many",
        "too-long",
    ],
)
def test_malformed_headers_are_400_malformed_signature_header(header):
    error = rejection(lambda: verify_stripe(header))

    assert (error.status, error.type) == (400, "malformed_signature_header")
    assert "Stripe-Signature" in error.reason


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_header_is_401_missing_signature(header):
    assert rejection(lambda: verify_stripe(header)).type == "missing_signature"


@pytest.mark.parametrize("signature", ["é", "\u00e9" * 64, "\ud800", "v" * 64, "🙂"])
def test_non_ascii_or_non_hex_signatures_are_401_never_a_type_error(signature):
    # hmac.compare_digest raises TypeError for non-ASCII str (the stripe library's 500).
    header = f"t={int(time.time())},v1={signature}"

    error = rejection(lambda: verify_stripe(header))

    assert (error.status, error.type) == (401, "invalid_signature")


@given(header=st.text(max_size=300), body=st.binary(max_size=300))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_stripe_header_and_body_gives_a_4xx_and_nothing_else(header, body):
    try:
        verify_stripe(header, body)
    except RequestRejected as error:
        assert 400 <= error.status < 500
    else:  # pragma: no cover - would need a forged HMAC
        pytest.fail("an unsigned request verified")


def test_a_verified_body_that_is_not_an_event_is_400_invalid_event():
    for body in (b"[]", b'{"id": "evt_1", "type": "x.y"}', b'{"object": "event"}'):
        error = rejection(lambda body=body: verify_stripe(stripe_header(body, STRIPE_SAMPLE_SECRET), body))
        assert (error.status, error.type) == (400, "invalid_event")


def test_a_thin_v2_event_is_400_unsupported():
    body = json.dumps(
        {"id": "evt_test_65R", "object": "v2.core.event", "type": "v1.billing.meter.error_report_triggered"}
    )

    error = rejection(lambda: verify_stripe(stripe_header(body, STRIPE_SAMPLE_SECRET), body.encode()))

    assert (error.status, error.type) == (400, "unsupported_event")


def test_strict_json_rules_apply_after_the_signature():
    body = b'{"id": "evt_1", "id": "evt_2"}'

    assert rejection(lambda: verify_stripe(stripe_header(body, STRIPE_SAMPLE_SECRET), body)).type == "duplicate_key"


# ---------------------------------------------------------------- Paddle


def test_a_paddle_signature_over_ts_colon_body_verifies():
    event = verify_paddle(paddle_header(PADDLE_BODY, PADDLE_SAMPLE_SECRET))

    assert (event.provider, event.id, event.type) == (
        "paddle",
        "evt_01hv8x2acma2gz8fbdkgyyj5qr",
        "transaction.completed",
    )
    assert event.livemode is None
    assert event.occurred_at == "2026-11-22T07:39:12.345Z"


def test_paddle_signs_ts_colon_body_not_ts_dot_body():
    ts = int(time.time())
    import hashlib
    import hmac

    dotted = hmac.new(PADDLE_SAMPLE_SECRET.encode(), f"{ts}.".encode() + PADDLE_BODY, hashlib.sha256).hexdigest()

    assert rejection(lambda: verify_paddle(f"ts={ts};h1={dotted}")).type == "invalid_signature"


def test_paddle_rotation_sends_several_h1_and_any_may_match():
    header = paddle_header(PADDLE_BODY, ["pdl_ntfset_old", PADDLE_SAMPLE_SECRET])

    assert verify_paddle(header, secrets=["pdl_ntfset_old"]).id
    assert verify_paddle(header, secrets=[PADDLE_SAMPLE_SECRET]).id


@pytest.mark.parametrize(("skew", "expected"), [(-301, "stale_timestamp"), (301, "future_timestamp")])
def test_paddle_window_applies_both_ways_and_follows_its_setting(skew, expected):
    now = time.time()
    header = paddle_header(PADDLE_BODY, PADDLE_SAMPLE_SECRET, int(now) + skew)

    assert rejection(lambda: verify_paddle(header, now=now)).type == expected
    wide = dataclasses.replace(SETTINGS, paddle_tolerance_seconds=600)
    assert paddle.PROVIDER.verify(PADDLE_BODY, {"paddle-signature": header}, [PADDLE_SAMPLE_SECRET], now, wide).id


@pytest.mark.parametrize(
    "header", ["ts=1;h1", "h1=00", "ts=1", "ts=x;h1=00", "ts=1;ts=2;h1=00", "ts=1,h1=00"], ids=lambda h: h
)
def test_malformed_paddle_headers_are_400(header):
    assert rejection(lambda: verify_paddle(header)).type == "malformed_signature_header"


def test_a_wrong_or_non_ascii_paddle_signature_is_401():
    ts = int(time.time())
    for signature in ("0" * 64, "é", "\ud800"):
        assert (
            rejection(lambda signature=signature: verify_paddle(f"ts={ts};h1={signature}")).type == "invalid_signature"
        )


@given(header=st.text(max_size=300), body=st.binary(max_size=300))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_paddle_header_and_body_gives_a_4xx_and_nothing_else(header, body):
    with pytest.raises(RequestRejected) as raised:
        verify_paddle(header, body)
    assert 400 <= raised.value.status < 500

"""Property-based fuzzing of POST /webhooks/app_store: never a 5xx, whatever the body, and also whatever a
notification signed by a trusted chain holds (Apple's fields of any type, any shape); a refusal is a
4xx with a type and a reason and queues nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.app_store_ca import build_chain
from tests.app_store_notifications import notification_body, renewal, settings_for, transaction
from tests.conftest import LambdaContextStub, use_function_environment
from tests.fuzz.test_fuzz_ingest import json_values, queued, raw_bodies
from tests.webhook_signing import api_event

# signedDate is checked against now (tests/clock.py).
pytestmark = pytest.mark.clock

CHAIN = build_chain()
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
TYPES = ["SUBSCRIBED", "DID_RENEW", "ONE_TIME_CHARGE", "REFUND", "EXPIRED", "DID_FAIL_TO_RENEW", "TEST", "x"]
TRANSACTION_FIELDS = [*transaction(0), "revocationReason", "revocationDate", "offerType"]
RENEWAL_FIELDS = [*renewal(0), "gracePeriodExpiresDate", "expirationIntent"]


@pytest.fixture(scope="module")
def fuzz_stack():
    from moto import mock_aws

    from local.resources import create_resources

    with mock_aws():
        yield create_resources(boto3.session.Session(region_name="us-east-1"))


@pytest.fixture
def call(fuzz_stack, monkeypatch):
    environment = settings_for(CHAIN, APP_STORE_ENVIRONMENTS="Production,Sandbox")
    use_function_environment(monkeypatch, fuzz_stack, "IngestApiFunction", **environment)
    from functions.ingest_api import app

    def post(body: str) -> tuple[dict[str, Any], int]:
        before = queued(fuzz_stack)
        result = app.lambda_handler(api_event("app_store", body, None), LambdaContextStub())
        return result, queued(fuzz_stack) - before

    return post


def assert_well_formed(result: dict[str, Any], newly_queued: int) -> None:
    status = result["statusCode"]
    assert status < 500, result
    body = json.loads(result["body"])
    if status >= 400:
        assert isinstance(body.get("type"), str) and body["type"]
        assert isinstance(body.get("reason"), str) and body["reason"]
        assert newly_queued == 0, "a refused notification queued messages"
    else:
        assert status == 200 and body["message"] in {"queued", "kept", "ignored", "duplicate"}


@FUZZ
@given(body=raw_bodies)
def test_raw_bodies_of_any_kind(call, body):
    assert_well_formed(*call(body.decode("utf-8", "surrogateescape")))


@FUZZ
@given(payload=st.one_of(json_values, st.text(max_size=400), st.just("a.b.c"), st.just("e30.e30.")))
def test_signed_payloads_of_any_shape(call, payload):
    assert_well_formed(*call(json.dumps({"signedPayload": payload})))


@FUZZ
@given(
    kind=st.sampled_from(TYPES),
    subtype=st.one_of(st.none(), st.sampled_from(["INITIAL_BUY", "VOLUNTARY", "GRACE_PERIOD", "UPGRADE"])),
    transaction_fields=st.dictionaries(st.sampled_from(TRANSACTION_FIELDS), json_values, max_size=5),
    renewal_fields=st.dictionaries(st.sampled_from(RENEWAL_FIELDS), json_values, max_size=4),
)
def test_trusted_notifications_whose_fields_hold_anything(call, kind, subtype, transaction_fields, renewal_fields):
    # Signed by a trusted chain, so verification passes and every field reaches the mapping.
    body = notification_body(
        CHAIN,
        kind,
        subtype,
        signed_ms=int(time.time() * 1000),
        transaction_fields=transaction_fields,
        renewal_fields=renewal_fields,
    )
    assert_well_formed(*call(body))


@FUZZ
@given(
    notification=st.dictionaries(
        st.sampled_from(
            ["notificationType", "subtype", "notificationUUID", "data", "summary", "signedDate", "version"]
        ),
        json_values,
        max_size=7,
    )
)
def test_trusted_notifications_of_any_shape(call, notification):
    assert_well_formed(*call(json.dumps({"signedPayload": CHAIN.sign(notification)})))

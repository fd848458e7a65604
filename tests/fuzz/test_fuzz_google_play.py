"""Property-based fuzzing of POST /webhooks/google_play: whatever the push holds, behind a genuine token or
with any Authorization header, the answer is never a 5xx, a refusal names a type and a reason, and a
refused push queues nothing. Google's keys and the Play Developer API are the loopback stand-ins."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braze_forwarder.ingest.webhooks import google_oidc, google_play_api
from local.google_play import PACKAGE_NAME, GoogleStandIn
from tests.conftest import LambdaContextStub, use_function_environment
from tests.fuzz.test_fuzz_ingest import queued
from tests.webhook_signing import api_event

# Push tokens carry iat/exp checked against now.
pytestmark = pytest.mark.clock

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False), st.text(max_size=200)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=30,
)
kind_objects = st.fixed_dictionaries(
    {},
    optional={
        "notificationType": st.one_of(st.integers(-5, 25), json_values),
        "purchaseToken": st.one_of(st.text(max_size=300), json_values),
        "subscriptionId": st.one_of(st.text(max_size=50), json_values),
        "sku": st.one_of(st.text(max_size=50), json_values),
        "orderId": st.one_of(st.text(max_size=50), json_values),
        "productType": st.one_of(st.integers(0, 3), json_values),
        "refundType": st.one_of(st.integers(0, 3), json_values),
    },
)
notifications = st.fixed_dictionaries(
    {"packageName": st.one_of(st.just(PACKAGE_NAME), json_values)},
    optional={
        "version": json_values,
        "eventTimeMillis": st.one_of(st.integers(-10, 10**16), st.text(max_size=20), json_values),
        "subscriptionNotification": st.one_of(kind_objects, json_values),
        "oneTimeProductNotification": st.one_of(kind_objects, json_values),
        "voidedPurchaseNotification": st.one_of(kind_objects, json_values),
        "testNotification": json_values,
    },
)
pushes = st.one_of(
    st.builds(
        lambda notification, message_id, publish: {
            "message": {
                "data": base64.b64encode(json.dumps(notification).encode()).decode(),
                "messageId": message_id,
                "publishTime": publish,
            },
            "subscription": "projects/p/subscriptions/s",
        },
        notifications,
        st.one_of(st.text(max_size=40), st.integers()),
        st.one_of(st.text(max_size=30), json_values),
    ),
    st.fixed_dictionaries({}, optional={"message": json_values, "subscription": json_values}),
    json_values,
)
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def google():
    with GoogleStandIn() as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def fuzz_stack(google):
    from moto import mock_aws

    from local.resources import create_resources

    with mock_aws():
        stack = create_resources(boto3.session.Session(region_name="us-east-1"))
        boto3.client("secretsmanager").put_secret_value(
            SecretId=stack.refs["GooglePlayServiceAccountSecret"], SecretString=google.service_account_key()
        )
        yield stack


@pytest.fixture
def call(fuzz_stack, google, monkeypatch):
    use_function_environment(monkeypatch, fuzz_stack, "IngestApiFunction", **google.environment())
    google_oidc.GOOGLE_KEYS.reset()
    google_play_api.reset()
    token = google.push_token()
    from functions.ingest_api import app

    def post(body: str, authorization: str | None = None) -> tuple[dict[str, Any], int]:
        event = api_event("google_play", body, None)
        event["headers"]["authorization"] = f"Bearer {token}" if authorization is None else authorization
        before = queued(fuzz_stack)
        result = app.lambda_handler(event, LambdaContextStub())
        return result, queued(fuzz_stack) - before

    return post


def assert_well_formed(result: dict[str, Any], newly_queued: int) -> None:
    assert result["statusCode"] < 500, result
    body = json.loads(result["body"])
    if result["statusCode"] >= 400:
        assert isinstance(body.get("type"), str) and body["type"]
        assert isinstance(body.get("reason"), str) and body["reason"]
        assert newly_queued == 0, "a refused push queued messages"


@FUZZ
@given(push=pushes)
def test_pushes_of_any_shape_behind_a_genuine_token(call, push):
    assert_well_formed(*call(json.dumps(push)))


@FUZZ
@given(body=st.one_of(st.text(max_size=500), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_raw_bodies_behind_a_genuine_token(call, body):
    assert_well_formed(*call(body))


@FUZZ
@given(
    authorization=st.one_of(
        st.text(max_size=600),
        st.builds(lambda t: f"Bearer {t}", st.text(max_size=600)),
        st.builds(
            lambda a, b, c: f"Bearer {a}.{b}.{c}",
            st.text("abcXYZ019-_=", max_size=200),
            st.text("abcXYZ019-_=", max_size=200),
            st.text("abcXYZ019-_=", max_size=100),
        ),
    )
)
def test_any_authorization_header(call, authorization):
    body = GoogleStandIn.push_body({"packageName": PACKAGE_NAME, "testNotification": {"version": "1.0"}}, "1")
    result, newly_queued = call(body, authorization)
    assert_well_formed(result, newly_queued)
    assert result["statusCode"] in {400, 401}

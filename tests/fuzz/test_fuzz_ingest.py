"""Property-based fuzzing of the ingest routes: whatever arrives, the answer is never a 5xx, always
JSON with a machine-readable type and a reason when refused, and a refused request queues nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braze_forwarder.ingest.auth import hash_key
from tests.conftest import LambdaContextStub, load_event, use_function_environment

KEY = "k_fuzz_0123456789abcdef0123456789abcdef"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.text(max_size=300),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=6),
    max_leaves=40,
)
identifiers = st.fixed_dictionaries(
    {},
    optional={
        "external_id": st.one_of(st.text(max_size=1100), st.integers(), st.none()),
        "user_alias": json_values,
        "braze_id": json_values,
        "email": st.one_of(st.emails(), st.text(max_size=40)),
        "phone": st.text(max_size=20),
    },
)
objects = st.builds(
    lambda ids, extra: {**extra, **ids}, identifiers, st.dictionaries(st.text(max_size=30), json_values, max_size=6)
)
track_bodies = st.fixed_dictionaries(
    {},
    optional={
        array: st.one_of(st.lists(objects, max_size=8), json_values) for array in ("attributes", "events", "purchases")
    },
)
identify_bodies = st.fixed_dictionaries(
    {},
    optional={
        array: st.one_of(st.lists(objects, max_size=8), json_values)
        for array in ("aliases_to_identify", "emails_to_identify", "phone_numbers_to_identify")
    },
)
prioritizations = st.one_of(
    st.lists(st.sampled_from(["identified", "unidentified", "most_recently_updated", "least_recently_updated"])),
    json_values,
)
user_data_items = st.one_of(
    objects,
    st.text(max_size=1100),
    st.fixed_dictionaries({"alias_name": st.text(max_size=300), "alias_label": st.text(max_size=5)}),
    st.fixed_dictionaries({"email": st.one_of(st.emails(), st.text(max_size=40)), "prioritization": prioritizations}),
    st.fixed_dictionaries({"identifier_to_merge": objects, "identifier_to_keep": objects}),
    json_values,
)
user_data_bodies = st.fixed_dictionaries(
    {},
    optional={
        array: st.one_of(st.lists(user_data_items, max_size=55), json_values)
        for array in ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers", "merge_updates")
    },
)
raw_bodies = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=2000).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda depth: ("[" * depth + "]" * depth).encode()),
    st.integers(1, 3000).map(lambda depth: ('{"a":' * depth + "1" + "}" * depth).encode()),
    st.sampled_from([b'{"events": [NaN]}', b'{"a": 1, "a": 2}', b"\xff\xfe{}", b'{"events": [' + b"9" * 5000 + b"]}"]),
)


@pytest.fixture(scope="module")
def fuzz_stack():
    """One moto stack for the whole module: hypothesis runs many examples per test."""
    from moto import mock_aws

    from local.resources import create_resources

    with mock_aws():
        stack = create_resources(boto3.session.Session(region_name="us-east-1"))
        boto3.client("secretsmanager").put_secret_value(
            SecretId=stack.refs["IngestKeysSecret"],
            SecretString=json.dumps({"clients": [{"name": "fuzzer", "key_sha256": hash_key(KEY)}]}),
        )
        yield stack


@pytest.fixture
def call(fuzz_stack, monkeypatch):
    use_function_environment(monkeypatch, fuzz_stack, "IngestApiFunction")
    from functions.ingest_api import app

    def post(
        path: str, body: bytes, *, as_base64: bool, headers: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], int]:
        event = load_event("ingest_track.json")
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["routeKey"] = event["requestContext"]["routeKey"] = f"POST {path}"
        event["headers"] = {"authorization": f"Bearer {KEY}", **(headers or {})}
        if as_base64:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = body.decode("utf-8", "surrogateescape"), False
        before = queued(fuzz_stack)
        result = app.lambda_handler(event, LambdaContextStub())
        return result, queued(fuzz_stack) - before

    return post


def queued(stack) -> int:
    # Deletes and merges wait behind the ordering fence: delayed messages count as queued.
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=stack.refs["EventsQueue"], AttributeNames=names)[
        "Attributes"
    ]
    return sum(int(attributes[name]) for name in names)


def assert_well_formed(result: dict[str, Any], newly_queued: int) -> None:
    status = result["statusCode"]
    assert status < 500, result
    body = json.loads(result["body"])
    assert isinstance(body, dict)
    if status >= 400:
        assert isinstance(body.get("message"), str) and body["message"]  # Braze's, for its clients
        assert isinstance(body.get("type"), str) and body["type"]
        assert isinstance(body.get("reason"), str) and body["reason"]
        assert newly_queued == 0, "a refused request queued messages"
    elif result.get("headers", {}).get("Idempotent-Replayed") == "true":
        assert status == 202 and newly_queued == 0  # a retry answers as before and queues nothing
    else:
        assert status == 202 and newly_queued >= 1


FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@FUZZ
@given(body=track_bodies)
def test_track_bodies_of_any_shape(call, body):
    assert_well_formed(*call("/users/track", json.dumps(body).encode(), as_base64=False))


@FUZZ
@given(body=identify_bodies)
def test_identify_bodies_of_any_shape(call, body):
    assert_well_formed(*call("/users/identify", json.dumps(body).encode(), as_base64=False))


@FUZZ
@given(body=user_data_bodies, path=st.sampled_from(["/users/delete", "/users/alias/new", "/users/merge"]))
def test_delete_alias_and_merge_bodies_of_any_shape(call, body, path):
    assert_well_formed(*call(path, json.dumps(body).encode(), as_base64=False))


@FUZZ
@given(
    body=raw_bodies,
    path=st.sampled_from(["/users/track", "/users/identify", "/users/delete", "/users/alias/new", "/users/merge"]),
    as_base64=st.booleans(),
)
def test_raw_bytes_of_any_kind(call, body, path, as_base64):
    assert_well_formed(*call(path, body, as_base64=as_base64))


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(["authorization", "Authorization", "idempotency-key", "content-type", "x-anything"]),
        st.text(max_size=600),
        max_size=4,
    )
)
def test_headers_of_any_kind(call, headers):
    body = json.dumps({"events": [{"external_id": "u", "name": "e", "time": "2026-11-22T07:00:00Z"}]}).encode()
    result, newly_queued = call("/users/track", body, as_base64=False, headers=headers)
    assert_well_formed(result, newly_queued)

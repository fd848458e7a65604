"""The ingest API end to end in-process: API Gateway event → handler → SQS (moto)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from braze_forwarder import queue
from braze_forwarder.ingest.auth import hash_key
from tests.conftest import ingest_event, load_event, metric_values, use_function_environment

# Idempotency-Key records expire; envelopes carry received_at —
# make test runs these on other days (tests/clock.py).
pytestmark = pytest.mark.clock

CLIENT_KEY = "k_test_0123456789abcdef0123456789abcdef"
OTHER_CLIENT_KEY = "k_test_fedcba9876543210fedcba9876543210"


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@pytest.fixture
def api(aws_stack, monkeypatch, lambda_context) -> Callable[..., Reply]:
    use_function_environment(monkeypatch, aws_stack, "IngestApiFunction")
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws_stack.refs["IngestKeysSecret"],
        SecretString=json.dumps(
            {
                "clients": [
                    {"name": "ios-backend", "key_sha256": hash_key(CLIENT_KEY)},
                    {"name": "web-backend", "key_sha256": hash_key(OTHER_CLIENT_KEY)},
                ]
            }
        ),
    )
    from functions.ingest_api import app

    def post(
        path: str = "/users/track",
        body: Any = None,
        *,
        raw: str | None = None,
        key: str | None = CLIENT_KEY,
        headers: dict[str, str] | None = None,
        base64_body: bool = False,
    ) -> Reply:
        text = raw if raw is not None else json.dumps(body)
        event = ingest_event(path, text, headers, key)
        if base64_body:
            event["body"], event["isBase64Encoded"] = base64.b64encode(text.encode()).decode(), True
        result = app.lambda_handler(event, lambda_context)
        return Reply(result["statusCode"], json.loads(result["body"]), result.get("headers", {}))

    return post


def queued_envelopes(stack) -> list[queue.Envelope]:
    sqs = boto3.client("sqs")
    envelopes = []
    while True:
        messages = sqs.receive_message(QueueUrl=stack.refs["EventsQueue"], MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return envelopes
        for message in messages:
            envelopes.append(queue.decode(message["Body"]))
            sqs.delete_message(QueueUrl=stack.refs["EventsQueue"], ReceiptHandle=message["ReceiptHandle"])


def event_obj(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"external_id": f"user-{i}", "name": "played", "time": "2026-11-22T07:39:12Z", **extra}


# ---------------------------------------------------------------- the sample request


def test_sample_track_request_queues_valid_objects_and_lists_the_invalid_one(api, aws_stack):
    body = json.loads(load_event("ingest_track.json")["body"])

    reply = api("/users/track", body)

    assert reply.status == 202
    assert reply.body["message"] == "success"
    assert (reply.body["attributes_queued"], reply.body["events_queued"], reply.body["purchases_queued"]) == (
        2,
        1,
        1,
    )
    assert reply.body["errors"] == [
        {
            "input_array": "events",
            "index": 1,
            "type": "BAD_EVENT_NAME",
            "reason": reply.body["errors"][0]["reason"],
        }
    ]
    [envelope] = queued_envelopes(aws_stack)
    assert envelope.kind == "track" and envelope.source == "ios-backend"
    assert envelope.correlation_id == "demo-request-id-0001"
    assert [(i.array, i.index) for i in envelope.items] == [
        ("attributes", 0),
        ("attributes", 1),
        ("events", 0),
        ("purchases", 0),
    ]
    assert envelope.items[0].object == body["attributes"][0]


def test_sample_identify_request_is_queued_as_identify(api, aws_stack):
    body = json.loads(load_event("ingest_identify.json")["body"])

    reply = api("/users/identify", body)

    assert reply.status == 202
    assert reply.body == {"message": "success", "aliases_queued": 1, "errors": []}
    [envelope] = queued_envelopes(aws_stack)
    assert envelope.kind == "identify"
    assert envelope.items[0].array == "aliases_to_identify"


def test_request_with_only_invalid_objects_is_400_and_queues_nothing(api, aws_stack):
    reply = api("/users/track", {"events": [{"name": "no-identifier", "time": "2026-11-22T07:39:12Z"}]})

    assert reply.status == 400
    assert reply.body["type"] == "no_valid_objects"
    assert reply.body["errors"][0]["type"] == "MISSING_IDENTIFIER"
    assert queued_envelopes(aws_stack) == []


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-key",
        f"Basic {CLIENT_KEY}",
        f'Bearer "{CLIENT_KEY}"',
        "Bearer " + "x" * 600,
    ],
    ids=["missing", "empty", "no-key", "wrong-key", "wrong-scheme", "quoted", "oversized"],
)
def test_requests_without_a_valid_key_get_the_same_401(api, aws_stack, authorization):
    headers = {} if authorization is None else {"authorization": authorization}

    reply = api("/users/track", {"events": [event_obj()]}, key=None, headers=headers)

    assert reply.status == 401
    assert reply.body == {"message": "Unauthorized", "type": "unauthorized", "reason": "missing or invalid API key"}
    assert queued_envelopes(aws_stack) == []


def test_each_client_key_names_its_client_in_the_envelope(api, aws_stack):
    api("/users/track", {"events": [event_obj()]}, key=OTHER_CLIENT_KEY)

    [envelope] = queued_envelopes(aws_stack)
    assert envelope.source == "web-backend"


def test_a_key_added_to_the_secret_works_without_waiting_for_the_cache(api, aws_stack):
    new_key = "k_test_new_0000000000000000000000000000"
    assert api("/users/track", {"events": [event_obj()]}).status == 202  # the secret is now cached
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws_stack.refs["IngestKeysSecret"],
        SecretString=json.dumps({"clients": [{"name": "android-backend", "key_sha256": hash_key(new_key)}]}),
    )

    reply = api("/users/track", {"events": [event_obj()]}, key=new_key)

    assert reply.status == 202


def test_header_names_are_matched_whatever_their_case(api, aws_stack):
    reply = api("/users/track", {"events": [event_obj()]}, key=None, headers={"Authorization": f"Bearer {CLIENT_KEY}"})

    assert reply.status == 202


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("raw", "expected_type"),
    [
        ("{", "malformed_json"),
        ('{"events": [NaN]}', "invalid_number"),
        ('{"events": [{"price": Infinity}]}', "invalid_number"),
        # Past a double's range: json.loads reads these as infinities, which no queue message can carry.
        ('{"attributes": [{"external_id": "a", "score": 1e400}]}', "invalid_number"),
        (
            '{"events": [{"external_id": "a", "name": "n", "time": "2026-11-22T07:00Z", "properties": {"p": -1e999}}]}',
            "invalid_number",
        ),
        ('{"events": [], "events": []}', "duplicate_key"),
        ('{"events": [{"external_id": "a", "external_id": "b"}]}', "duplicate_key"),
        # Objects that are valid but for the repeat: caught after encoding, by the colon count.
        (
            '{"events": [{"external_id": "a", "name": "n", "time": "2026-11-22T07:00:00Z",'
            ' "properties": {"p": "x:y", "p": 1}}]}',
            "duplicate_key",
        ),
        (
            '{"events": [{"external_id": "a", "external_id": "b", "name": "n", "time": "2026-11-22T07:00:00Z"}]}',
            "duplicate_key",
        ),
        (
            '{"events": [{"external_id": "a", "\\u0065xternal_id": "a", "name": "n", "time": "2026-11-22T07:00:00Z"}]}',
            "duplicate_key",
        ),
        # An escaped colon defeats the count: the strict parse decides.
        (
            '{"events": [{"external_id": "\\u003a", "external_id": "a", "name": "n", "time": "2026-11-22T07:00:00Z"}]}',
            "duplicate_key",
        ),
        (
            '{"api_key": "x", "api_key": "y","events": [{"braze_id": "a", "name": "n", "time": "2026-11-22T07:00Z"}]}',
            "duplicate_key",
        ),
        ("[" * 5000 + "]" * 5000, "nesting_too_deep"),
        ('{"attributes": [{"external_id": "a", "x": ' + "[" * 40 + "]" * 40 + "}]}", "nesting_too_deep"),
        ('{"events": [' + "1" * 5000 + "]}", "malformed_json"),
        ("[]", "invalid_body"),
        ('"text"', "invalid_body"),
        ('{"events": {}}', "invalid_body"),
        ('{"events": "x"}', "invalid_body"),
        ("{}", "empty_request"),
        ('{"events": []}', "empty_request"),
        ('{"users": []}', "unknown_field"),
        ("\ufeff{}", "malformed_json"),
    ],
    ids=lambda value: value[:30] if isinstance(value, str) else value,
)
def test_malformed_bodies_get_a_400_with_a_type_and_reason(api, aws_stack, raw, expected_type):
    reply = api("/users/track", raw=raw)

    assert reply.status == 400
    assert reply.body["type"] == expected_type
    assert reply.body["reason"]
    assert queued_envelopes(aws_stack) == []


def test_body_over_the_cap_is_413(api, aws_stack, monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "2048")
    body = {"events": [event_obj(i) for i in range(40)]}

    reply = api("/users/track", body)

    assert reply.status == 413
    assert reply.body["type"] == "payload_too_large"


def test_base64_bodies_are_decoded_first(api, aws_stack):
    reply = api("/users/track", {"events": [event_obj()]}, base64_body=True)

    assert reply.status == 202
    assert len(queued_envelopes(aws_stack)) == 1


@pytest.mark.parametrize("raw_body", ["not base64 !!!", base64.b64encode(b"\xff\xfe{}").decode()])
def test_bad_base64_or_non_utf8_is_400(api, aws_stack, raw_body, lambda_context):
    from functions.ingest_api import app

    event = load_event("ingest_track.json")
    event["headers"]["authorization"] = f"Bearer {CLIENT_KEY}"
    event.pop("body")
    event["body"], event["isBase64Encoded"] = raw_body, True
    event["headers"].pop("idempotency-key")

    result = app.lambda_handler(event, lambda_context)

    assert result["statusCode"] == 400
    assert json.loads(result["body"])["type"] in {"invalid_base64", "invalid_encoding"}


def test_unknown_route_is_404_json(api):
    reply = api("/users/export/ids", {"external_ids": ["a"]})

    assert reply.status == 404
    assert reply.body["type"] == "not_found"


def test_legacy_api_key_field_is_dropped_not_queued(api, aws_stack):
    reply = api("/users/track", {"api_key": "braze-rest-key-in-body", "events": [event_obj()]})

    assert reply.status == 202
    [message_body] = [e for e in queued_envelopes(aws_stack)]
    assert "braze-rest-key-in-body" not in json.dumps([i.object for i in message_body.items])


# ---------------------------------------------------------------- queueing


def test_large_requests_are_split_into_messages_under_the_size_cap(api, aws_stack, monkeypatch):
    monkeypatch.setenv("MAX_MESSAGE_BYTES", str(16 * 1024))
    padding = "p" * 200
    body = {"events": [event_obj(i, properties={"padding": padding}) for i in range(300)]}

    reply = api("/users/track", body)

    assert reply.status == 202 and reply.body["events_queued"] == 300
    envelopes = queued_envelopes(aws_stack)
    assert len(envelopes) > 1
    positions = sorted(item.index for envelope in envelopes for item in envelope.items)
    assert positions == list(range(300))


def test_an_object_too_large_for_any_message_is_rejected_alone(api, aws_stack, monkeypatch):
    monkeypatch.setenv("MAX_MESSAGE_BYTES", str(16 * 1024))
    big = {"external_id": "user-big", **{f"attr_{n}": "v" * 250 for n in range(100)}}

    reply = api("/users/track", {"attributes": [big, {"external_id": "user-small", "a": 1}]})

    assert reply.status == 202
    assert reply.body["attributes_queued"] == 1
    assert [(e["index"], e["type"]) for e in reply.body["errors"]] == [(0, "OBJECT_TOO_LARGE")]


def test_queue_that_refuses_answers_503_with_retry_after_and_claims_nothing(api, aws_stack):
    boto3.client("sqs").delete_queue(QueueUrl=aws_stack.refs["EventsQueue"])

    reply = api("/users/track", {"events": [event_obj()]})

    assert reply.status == 503
    assert reply.body["type"] == "queue_unavailable"
    assert reply.headers.get("Retry-After") == "5"
    assert "success" not in json.dumps(reply.body)


def test_failed_batch_entries_are_retried(api, aws_stack, monkeypatch):
    from braze_forwarder import aws

    sqs = aws.client("sqs")
    real_send = sqs.send_message_batch
    calls = []

    def flaky_send(**kwargs):
        calls.append(len(kwargs["Entries"]))
        if len(calls) == 1:  # SQS answers 200 with the first entry failed, as it may under load
            real_send(QueueUrl=kwargs["QueueUrl"], Entries=kwargs["Entries"][1:])
            return {
                "Successful": [],
                "Failed": [{"Id": kwargs["Entries"][0]["Id"], "SenderFault": False, "Code": "InternalError"}],
            }
        return real_send(**kwargs)

    monkeypatch.setattr(sqs, "send_message_batch", flaky_send)
    monkeypatch.setenv("MAX_MESSAGE_BYTES", str(16 * 1024))
    body = {"events": [event_obj(i, properties={"padding": "p" * 200}) for i in range(100)]}

    reply = api("/users/track", body)

    assert reply.status == 202
    assert calls[1] == 1  # only the failed entry went again
    positions = sorted(item.index for envelope in queued_envelopes(aws_stack) for item in envelope.items)
    assert positions == list(range(100))


def _queue_failing_after(monkeypatch, accepted_messages: int) -> dict[str, int]:
    """SQS accepts the first `accepted_messages` messages, then refuses every entry (a partial outage)."""
    from braze_forwarder import aws

    sqs = aws.client("sqs")
    real_send = sqs.send_message_batch
    state = {"accepted": 0, "budget": accepted_messages}

    def partly(**kwargs):
        entries = kwargs["Entries"]
        room = max(0, state["budget"] - state["accepted"])
        if room:
            real_send(QueueUrl=kwargs["QueueUrl"], Entries=entries[:room])
            state["accepted"] += min(room, len(entries))
        failed = entries[room:]
        return {
            "Successful": [],
            "Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in failed],
        }

    monkeypatch.setattr(sqs, "send_message_batch", partly)
    return state


def _queued_indexes(stack) -> list[int]:
    return sorted(item.index for envelope in queued_envelopes(stack) for item in envelope.items)


@pytest.mark.parametrize("key", [None, "order-77"], ids=["no-key", "idempotency-key"])
def test_a_retry_after_a_partial_queue_failure_queues_only_what_was_not_queued(api, aws_stack, monkeypatch, key):
    monkeypatch.setenv("MAX_MESSAGE_BYTES", str(16 * 1024))
    body = {"events": [event_obj(i, properties={"padding": "p" * 200}) for i in range(100)]}
    headers = {"idempotency-key": key} if key else {}
    state = _queue_failing_after(monkeypatch, accepted_messages=2)

    first = api("/users/track", body, headers=headers)

    assert first.status == 503 and state["accepted"] == 2
    state["budget"] = 10**6  # SQS is back
    second = api("/users/track", body, headers=headers)

    assert second.status == 202 and second.body["events_queued"] == 100
    assert _queued_indexes(aws_stack) == list(range(100))  # each object once, none twice


def test_after_the_retry_the_same_body_again_is_a_new_request(api, aws_stack, monkeypatch):
    monkeypatch.setenv("MAX_MESSAGE_BYTES", str(16 * 1024))
    body = {"events": [event_obj(i, properties={"padding": "p" * 200}) for i in range(100)]}
    state = _queue_failing_after(monkeypatch, accepted_messages=2)
    assert api("/users/track", body).status == 503
    state["budget"] = 10**6
    assert api("/users/track", body).status == 202

    assert api("/users/track", body).status == 202  # a legitimate repeat: queued whole

    assert _queued_indexes(aws_stack) == sorted(list(range(100)) * 2)


def test_a_retry_that_fails_again_keeps_what_both_queued(api, aws_stack, monkeypatch):
    monkeypatch.setenv("MAX_MESSAGE_BYTES", str(16 * 1024))
    body = {
        "events": [event_obj(i, properties={f"pad{k}": "p" * 200 for k in range(4)}) for i in range(100)]
    }  # six messages
    state = _queue_failing_after(monkeypatch, accepted_messages=1)
    assert api("/users/track", body).status == 503
    state["budget"] = 3
    assert api("/users/track", body).status == 503
    state["budget"] = 10**6

    assert api("/users/track", body).status == 202

    assert _queued_indexes(aws_stack) == list(range(100))


def test_when_nothing_failed_recently_a_request_reads_and_writes_no_store(api, aws_stack, monkeypatch):
    from braze_forwarder import aws

    dynamodb = aws.client("dynamodb")
    calls: list[str] = []
    for name in ("get_item", "put_item", "delete_item", "update_item"):
        real = getattr(dynamodb, name)
        monkeypatch.setattr(dynamodb, name, lambda _real=real, _name=name, **kw: (calls.append(_name), _real(**kw))[1])

    for n in range(5):
        assert api("/users/track", {"events": [event_obj(n)]}).status == 202

    assert calls == ["get_item"]  # the marker, read once per execution environment every 2 s at most


def test_identical_bodies_without_a_partial_failure_are_each_queued(api, aws_stack):
    body = {
        "purchases": [
            {"external_id": "u-1", "product_id": "tea", "currency": "EUR", "price": 3, "time": "2026-11-22T07:00:00Z"}
        ]
    }

    assert api("/users/track", body).status == 202
    assert api("/users/track", body).status == 202

    assert len(queued_envelopes(aws_stack)) == 2  # two real purchases, not merged


# ---------------------------------------------------------------- idempotency


def test_a_retry_with_the_same_idempotency_key_answers_the_same_and_queues_nothing(api, aws_stack):
    body = {"events": [event_obj(1), event_obj(2)]}
    first = api("/users/track", body, headers={"idempotency-key": "order-42"})

    second = api("/users/track", body, headers={"idempotency-key": "order-42"})

    assert first.status == second.status == 202
    assert second.body == first.body
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert len(queued_envelopes(aws_stack)) == 1


def test_the_same_idempotency_key_with_another_body_is_422(api, aws_stack):
    api("/users/track", {"events": [event_obj(1)]}, headers={"idempotency-key": "order-43"})

    reply = api("/users/track", {"events": [event_obj(2)]}, headers={"idempotency-key": "order-43"})

    assert reply.status == 422
    assert reply.body["type"] == "idempotency_key_reused"
    assert len(queued_envelopes(aws_stack)) == 1


def test_idempotency_keys_are_scoped_to_the_client(api, aws_stack):
    body = {"events": [event_obj(1)]}
    api("/users/track", body, headers={"idempotency-key": "shared-key"})

    reply = api("/users/track", body, headers={"idempotency-key": "shared-key"}, key=OTHER_CLIENT_KEY)

    assert reply.status == 202 and "Idempotent-Replayed" not in reply.headers
    assert len(queued_envelopes(aws_stack)) == 2


def test_a_request_that_failed_to_queue_runs_again_on_retry(api, aws_stack):
    sqs = boto3.client("sqs")
    url = aws_stack.refs["EventsQueue"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    sqs.delete_queue(QueueUrl=url)
    body = {"events": [event_obj(1)]}
    assert api("/users/track", body, headers={"idempotency-key": "retry-me"}).status == 503
    sqs.create_queue(QueueName=url.rsplit("/", 1)[1], Attributes={"VisibilityTimeout": attributes["VisibilityTimeout"]})

    reply = api("/users/track", body, headers={"idempotency-key": "retry-me"})

    assert reply.status == 202
    assert len(queued_envelopes(aws_stack)) == 1


@pytest.mark.parametrize("bad_key", ["", "has space", "x" * 256, "naïve"])
def test_malformed_idempotency_keys_are_400(api, aws_stack, bad_key):
    reply = api("/users/track", {"events": [event_obj()]}, headers={"idempotency-key": bad_key})

    assert reply.status == 400
    assert reply.body["type"] == "invalid_idempotency_key"


# ---------------------------------------------------------------- observability


def test_no_key_email_phone_or_name_reaches_the_logs(api, aws_stack, logs):
    secrets = ["ada.lovelace@example.com", "+447700900123", "Lovelace-Surname"]
    body = {
        "attributes": [{"external_id": "u1", "email": secrets[0], "phone": secrets[1], "last_name": secrets[2]}],
        "events": [{"email": "not-an-email", "name": "x", "time": "2026-11-22T07:39:12Z"}],
    }

    api("/users/track", body)
    api("/users/track", body, key="wrong-key-" + CLIENT_KEY)
    api("/users/track", raw='{"email": "' + secrets[0] + '", "email": 1}')

    output = logs()
    assert '"client":"ios-backend"' in output  # the client name is logged…
    for value in [*secrets, CLIENT_KEY, "not-an-email"]:
        assert value not in output  # …and nothing a user or a key is


def test_metrics_count_accepted_and_rejected_objects_by_type(api, aws_stack, capsys):
    api("/users/track", {"events": [event_obj(1), {"name": "x", "time": "2026-11-22T07:39:12Z"}]})

    printed = capsys.readouterr().out
    [rejected_line] = [json.loads(line) for line in printed.splitlines() if '"ObjectsRejected"' in line]
    assert rejected_line["type"] == "MISSING_IDENTIFIER"
    assert metric_values(printed, "ObjectsRejected") == [1.0]
    assert metric_values(printed, "ObjectsAccepted") == [1.0]

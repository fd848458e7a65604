"""The sender end to end in-process: SQS event → handler → Braze stand-in over real HTTP, with moto
for the ledger, the rejected-objects bucket and the key's secret."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from braze_forwarder import queue
from local.braze_sandbox import BrazeSandbox, SandboxConfig, ScriptedResponse
from tests.conftest import (
    LambdaContextStub,
    load_event,
    metric_values,
    use_sender_environment,
)

# Rate-limit resets are epoch times compared with now; ledger records expire —
# make test runs these on other days (tests/clock.py).
pytestmark = pytest.mark.clock

BRAZE_KEY = "braze-rest-key-0123456789"


@pytest.fixture
def braze() -> Iterator[BrazeSandbox]:
    with BrazeSandbox(SandboxConfig(api_key=BRAZE_KEY, seed=1)) as sandbox:
        yield sandbox


@pytest.fixture
def send(aws_stack, monkeypatch, braze) -> Callable[..., dict[str, Any]]:
    use_sender_environment(monkeypatch, aws_stack, braze.url, BRAZE_KEY)
    from functions.braze_sender import app

    app.reset()

    def run(*bodies: str, remaining_ms: int = 60_000) -> dict[str, Any]:
        event = load_event("braze_sender_sqs.json")
        template = event["Records"][0]
        event["Records"] = [{**template, "messageId": f"msg-{n}", "body": body} for n, body in enumerate(bodies)]
        return app.lambda_handler(event, LambdaContextStub(remaining_millis=remaining_ms))

    yield run
    app.reset()


def envelope(objects: list[tuple[str, dict[str, Any]]], kind: str = "track") -> str:
    items = [(array, index, queue.encode_object(obj)) for index, (array, obj) in enumerate(objects)]
    [body] = queue.build_messages(kind, items, source="tests", correlation_id="corr-1", max_message_bytes=1024 * 1024)
    return body


def events(first: int, count: int, users: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "events",
            {
                "external_id": f"user-{n % (users or 10**9)}",
                "name": "played",
                "time": "2026-11-22T07:00:00Z",
                "properties": {"seq": n},
            },
        )
        for n in range(first, first + count)
    ]


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def processed_seqs(braze: BrazeSandbox) -> Counter[int]:
    """How often Braze accepted each object (by its seq property) — 2xx answers only."""
    seen: Counter[int] = Counter()
    for request in braze.requests:
        if request.path == "/users/track" and request.status and 200 <= request.status < 300:
            for obj in (request.json or {}).get("events", []):
                seen[obj["properties"]["seq"]] += 1
    return seen


def track_calls(braze: BrazeSandbox) -> list[Any]:
    return [r for r in braze.requests if r.path == "/users/track"]


def rejected_records(stack) -> list[dict[str, Any]]:
    s3 = boto3.client("s3")
    bucket = stack.refs["RejectedObjectsBucket"]
    records = []
    for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode()
        records.extend(json.loads(line) for line in body.splitlines())
    return records


def ledger_items(stack) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=stack.refs["DeliveryLedgerTable"])["Items"]


# ---------------------------------------------------------------- packing and plain success


def test_a_backlog_goes_out_in_full_calls_and_every_object_once(send, braze, aws_stack):
    bodies = [envelope(events(n * 50, 50)) for n in range(6)]  # 300 objects in 6 messages

    response = send(*bodies)

    assert failed_ids(response) == []
    assert [len(r.json["events"]) for r in track_calls(braze)] == [75, 75, 75, 75]
    assert processed_seqs(braze) == Counter(range(300))
    assert ledger_items(aws_stack) == []  # the happy path writes nothing to the ledger
    assert rejected_records(aws_stack) == []


def test_per_array_mode_fills_each_array_to_the_limit(send, braze, monkeypatch):
    monkeypatch.setenv("BRAZE_TRACK_BATCH_MODE", "per_array")
    braze.config.track_batch_mode = "per_array"
    attributes = [("attributes", {"external_id": f"a-{n}", "level": n}) for n in range(75)]

    send(envelope(events(0, 75) + attributes))

    [call] = track_calls(braze)
    assert (len(call.json["events"]), len(call.json["attributes"])) == (75, 75)


def test_identify_objects_go_to_users_identify_50_per_call(send, braze):
    aliases = [
        (
            "aliases_to_identify",
            {"external_id": f"user-{n}", "user_alias": {"alias_name": f"d{n}", "alias_label": "device"}},
        )
        for n in range(120)
    ]

    assert failed_ids(send(envelope(aliases, kind="identify"))) == []

    calls = [r for r in braze.requests if r.path == "/users/identify"]
    assert [len(r.json["aliases_to_identify"]) for r in calls] == [50, 50, 20]


def test_one_users_objects_reach_braze_in_arrival_order(send, braze):
    send(envelope(events(0, 160, users=1)))

    calls = track_calls(braze)
    assert [len(c.json["events"]) for c in calls] == [75, 75, 10]
    order = [e["properties"]["seq"] for c in calls for e in c.json["events"]]
    assert order == list(range(160))


# ---------------------------------------------------------------- per-object errors


def test_objects_named_in_a_2xx_errors_list_are_kept_as_rejected_and_not_retried(send, braze, aws_stack):
    braze.script(
        ScriptedResponse(
            status=201,
            process=True,
            errors_for=lambda body: [{"type": "BLACKLISTED_EXTERNAL_USER_ID", "input_array": "events", "index": 2}],
        )
    )

    response = send(envelope(events(0, 5)))

    assert failed_ids(response) == []
    [record] = rejected_records(aws_stack)
    assert record["reason"]["type"] == "BLACKLISTED_EXTERNAL_USER_ID"
    assert record["object"]["properties"]["seq"] == 2
    assert record["origin"]["sqs_message_id"] == "msg-0"
    assert record["origin"]["source"] == "tests" and record["origin"]["correlation_id"] == "corr-1"
    assert (record["origin"]["array"], record["origin"]["index"]) == ("events", 2)
    assert len(track_calls(braze)) == 1


def test_a_400_is_split_until_the_refused_object_stands_alone(send, braze, aws_stack):
    braze.script(
        ScriptedResponse(status=400, body={"message": "Bad Request"}),  # the call of 4
        ScriptedResponse(status=201, process=True),  # objects 0-1
        ScriptedResponse(status=400, body={"message": "Bad Request"}),  # objects 2-3
        ScriptedResponse(status=201, process=True),  # object 2
        ScriptedResponse(status=400, body={"message": "'time' is invalid"}),  # object 3
    )

    response = send(envelope(events(0, 4)))

    assert failed_ids(response) == []
    assert processed_seqs(braze) == Counter([0, 1, 2])
    [record] = rejected_records(aws_stack)
    assert record["object"]["properties"]["seq"] == 3
    assert record["braze"]["status"] == 400 and "'time' is invalid" in record["reason"]["message"]


def test_a_413_splits_the_call(send, braze):
    braze.script(ScriptedResponse(status=413, body={"message": "Payload Too Large"}))

    response = send(envelope(events(0, 10)))

    assert failed_ids(response) == []
    assert processed_seqs(braze) == Counter(range(10))
    assert [len(c.json["events"]) for c in track_calls(braze)] == [10, 5, 5]


# ---------------------------------------------------------------- retries and rate limits


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Ratelimit-Retry-After": "1"},
        {"x-ratelimit-reset": "1"},
        {"X-RateLimit-Reset": str(int(time.time()) + 2)},
        {},
    ],
    ids=["retry-after", "reset-seconds", "reset-epoch", "no-headers"],
)
def test_429_waits_as_braze_says_then_delivers(send, braze, headers):
    braze.script(ScriptedResponse(status=429, body={"message": "Rate limit exceeded"}, headers=headers))

    response = send(envelope(events(0, 3)))

    assert failed_ids(response) == []
    first, second = track_calls(braze)
    assert first.status == 429 and 200 <= second.status < 300
    if headers:
        assert second.time - first.time >= 0.9  # it waited what Braze asked, not less
    assert processed_seqs(braze) == Counter(range(3))


@pytest.mark.parametrize(
    "fault",
    [
        ScriptedResponse(status=500),
        ScriptedResponse(status=503),
        ScriptedResponse(status=201, delay_seconds=1.5),  # slower than the read timeout
        ScriptedResponse(drop_connection=True),
    ],
    ids=["500", "503", "slow", "dropped"],
)
def test_server_errors_timeouts_and_dropped_connections_are_retried(send, braze, fault):
    braze.script(fault)

    response = send(envelope(events(0, 3)))

    assert failed_ids(response) == []
    assert processed_seqs(braze) == Counter(range(3))


def test_a_call_that_keeps_failing_fails_only_its_own_messages(send, braze, monkeypatch):
    monkeypatch.setenv("BRAZE_MAX_IN_FLIGHT", "1")
    # Message 0 and 1 share no user; each fills one call. The first call fails every attempt.
    braze.script(*[ScriptedResponse(status=500) for _ in range(3)])

    response = send(envelope(events(0, 75)), envelope(events(75, 75)))

    assert failed_ids(response) == ["msg-0"]
    assert processed_seqs(braze) == Counter(range(75, 150))


def test_a_partly_delivered_message_sends_only_the_rest_when_it_comes_back(send, braze, aws_stack):
    body = envelope(events(0, 150))  # one message, two calls
    braze.script(ScriptedResponse(status=201, process=True), *[ScriptedResponse(status=500) for _ in range(3)])

    first = send(body)
    second = send(body)

    assert failed_ids(first) == ["msg-0"] and failed_ids(second) == []
    assert processed_seqs(braze) == Counter(range(150))  # every object exactly once
    [entry] = ledger_items(aws_stack)
    assert len(entry["done"]["NS"]) == 75


def test_an_unexpected_error_in_one_call_fails_only_its_objects_and_the_rest_is_recorded(
    send, braze, aws_stack, monkeypatch
):
    from braze_forwarder.braze.client import BrazeClient

    real_post = BrazeClient.post
    calls = []

    def post_failing_the_second_call(self, path, body, api_key):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return real_post(self, path, body, api_key)

    monkeypatch.setattr(BrazeClient, "post", post_failing_the_second_call)
    body = envelope(events(0, 150))  # one message, two calls

    first = send(body)
    monkeypatch.setattr(BrazeClient, "post", real_post)
    second = send(body)

    assert failed_ids(first) == ["msg-0"] and failed_ids(second) == []
    assert processed_seqs(braze) == Counter(range(150))  # nothing went out twice


def test_no_call_starts_when_the_invocation_is_out_of_time(send, braze):
    response = send(envelope(events(0, 3)), remaining_ms=1000)

    assert failed_ids(response) == ["msg-0"]
    assert braze.requests == []


# ---------------------------------------------------------------- the key and configuration errors


def test_a_401_rereads_the_rotated_key_once_and_delivers(send, braze, aws_stack):
    secret_id = aws_stack.refs["BrazeApiKeySecret"]
    secrets = boto3.client("secretsmanager")
    secrets.put_secret_value(SecretId=secret_id, SecretString="old-rotated-away-key")
    parameters.get_secret(secret_id, max_age=300)  # the old key is now cached
    secrets.put_secret_value(SecretId=secret_id, SecretString=BRAZE_KEY)

    response = send(envelope(events(0, 3)))

    assert failed_ids(response) == []
    assert track_calls(braze)[0].status == 401
    assert processed_seqs(braze) == Counter(range(3))


def test_concurrent_calls_of_a_cold_start_read_the_key_once(send, braze, monkeypatch):
    from braze_forwarder import aws

    monkeypatch.setenv("BRAZE_MAX_IN_FLIGHT", "8")  # the template's default

    reads = []

    def read_slowly(model: Any, **_: Any) -> None:
        if model.name == "GetSecretValue":
            reads.append(model.name)
            time.sleep(0.2)  # a real round trip's worth: the other threads ask for the key meanwhile

    aws.share_session_with_powertools()
    aws.client("secretsmanager").meta.events.register("before-call", read_slowly)
    # A track call and an identify call: two endpoint families, sent at once from two threads.
    alias = {"external_id": "user-identified", "user_alias": {"alias_name": "d1", "alias_label": "device"}}

    response = send(envelope(events(0, 3)), envelope([("aliases_to_identify", alias)], kind="identify"))

    assert failed_ids(response) == []
    assert sorted(r.path for r in braze.requests) == ["/users/identify", "/users/track"]
    assert reads == ["GetSecretValue"]  # one read, however many threads wanted the key first


def test_a_wrong_key_fails_the_batch_after_one_reread_and_says_what_to_fix(send, braze, aws_stack, logs):
    boto3.client("secretsmanager").put_secret_value(SecretId=aws_stack.refs["BrazeApiKeySecret"], SecretString="wrong")

    response = send(envelope(events(0, 3)), envelope(events(3, 3)))

    assert sorted(failed_ids(response)) == ["msg-0", "msg-1"]
    assert [r.status for r in track_calls(braze)] == [401, 401]
    output = logs()
    assert output.count('"level":"ERROR","location":"_note_failure') == 1  # logged once…
    assert "401 Unauthorized twice" in output  # …saying what to fix…
    assert '"wrong"' not in output  # …and not the key


@pytest.mark.parametrize("status", [403, 404])
def test_403_and_404_fail_the_batch_as_configuration_errors(send, braze, status):
    braze.script(ScriptedResponse(status=status, body={"message": "Access Denied"}))

    response = send(envelope(events(0, 3)))

    assert failed_ids(response) == ["msg-0"]
    assert len(track_calls(braze)) == 1


def test_the_braze_key_never_reaches_the_logs(send, braze, logs):
    braze.script(ScriptedResponse(status=500), ScriptedResponse(status=401))

    send(envelope(events(0, 3)))

    output = logs()
    assert "msg-0" in output or "BrazeCalls" in output  # the logs were captured…
    assert BRAZE_KEY not in output  # …and the key is not in them


# ---------------------------------------------------------------- what cannot be read


def test_a_message_that_is_not_an_envelope_is_kept_not_retried(send, braze, aws_stack):
    response = send("not json at all", envelope(events(0, 2)))

    assert failed_ids(response) == []
    [record] = rejected_records(aws_stack)
    assert record["reason"]["type"] == "INVALID_ENVELOPE"
    assert record["raw_message"] == "not json at all"
    assert processed_seqs(braze) == Counter(range(2))


def test_metrics_report_calls_deliveries_and_packing_efficiency(send, braze, capsys):
    send(envelope(events(0, 150)))

    printed = capsys.readouterr().out
    assert metric_values(printed, "BrazeCalls") == [2.0]
    assert metric_values(printed, "ObjectsDelivered") == [150.0]
    assert metric_values(printed, "PackingEfficiency") == [100.0]

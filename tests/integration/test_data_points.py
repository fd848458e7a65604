"""Data-point savings end to end: SQS event → sender handler → Braze sandbox over real HTTP, with moto
for the ledger, the rejected-objects bucket, the key's secret and the last-sent store.

The sandbox applies attributes as Braze documents them and counts data points per BRAZE_API.md §10,
so "the same profile for fewer data points" is checked on an independent model of Braze.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from braze_forwarder import queue
from local.braze_sandbox import BrazeSandbox, SandboxConfig, ScriptedResponse
from tests.conftest import (
    LambdaContextStub,
    load_event,
    metric_values,
    use_sender_environment,
)

# The last-sent store's records expire —
# make test runs these on other days (tests/clock.py).
pytestmark = pytest.mark.clock

BRAZE_KEY = "braze-rest-key-0123456789"
GROUP = "8f4c2d3e-1a2b-4c5d-8e9f-0a1b2c3d4e5f"
T1, T2, T3 = "2026-11-22T07:00:00.000Z", "2026-11-22T07:00:01.000Z", "2026-11-22T07:00:02.000Z"


@pytest.fixture
def braze() -> Iterator[BrazeSandbox]:
    with BrazeSandbox(SandboxConfig(api_key=BRAZE_KEY, seed=1)) as sandbox:
        yield sandbox


@pytest.fixture
def send(aws_stack, monkeypatch, braze) -> Iterator[Callable[..., dict[str, Any]]]:
    use_sender_environment(monkeypatch, aws_stack, braze.url, BRAZE_KEY)
    from functions.braze_sender import app

    app.reset()

    def run(*bodies: str) -> dict[str, Any]:
        event = load_event("braze_sender_sqs.json")
        template = event["Records"][0]
        event["Records"] = [{**template, "messageId": f"msg-{n}", "body": body} for n, body in enumerate(bodies)]
        return app.lambda_handler(event, LambdaContextStub(remaining_millis=60_000))

    yield run
    app.reset()


@pytest.fixture
def delta(monkeypatch) -> None:
    """Delta sending on (the template's default is off); the table comes from the template."""
    monkeypatch.setenv("DELTA_SENDING_ENABLED", "true")


def envelope(objects: list[tuple[str, dict[str, Any]]], received_at: str = T1) -> str:
    items = [(array, index, queue.encode_object(obj)) for index, (array, obj) in enumerate(objects)]
    [body] = queue.build_messages(
        "track", items, source="tests", correlation_id="corr-1", max_message_bytes=1024 * 1024, received_at=received_at
    )
    return body


def attributes(**values: Any) -> tuple[str, dict[str, Any]]:
    return ("attributes", {"external_id": "u-1", **values})


def event(n: int) -> tuple[str, dict[str, Any]]:
    return ("events", {"external_id": f"player-{n}", "name": "played", "time": "2026-11-22T07:00:00Z"})


def sent_attributes(braze: BrazeSandbox) -> list[list[dict[str, Any]]]:
    """The attributes array of every /users/track call Braze accepted, in order."""
    return [
        r.json.get("attributes", [])
        for r in braze.requests
        if r.path == "/users/track" and r.status is not None and 200 <= r.status < 300
    ]


def profile(braze: BrazeSandbox, external_id: str = "u-1") -> dict[str, Any]:
    found = braze.profile(external_id)
    assert found is not None
    return found


def what_profiles_hold(found: dict[str, Any]) -> dict[str, Any]:
    return {key: found[key] for key in ("attributes", "subscription_groups", "push_tokens")}


def stored(stack) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=stack.refs["AttributeStateTable"])["Items"]


def rejected_records(stack) -> list[dict[str, Any]]:
    s3 = boto3.client("s3")
    bucket = stack.refs["RejectedObjectsBucket"]
    records = []
    for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode()
        records.extend(json.loads(line) for line in body.splitlines())
    return records


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


REPEATED_UPDATES = [
    [attributes(plan="free", visits={"inc": 1}, car={"make": "x"}, _merge_objects=True)],
    [attributes(plan="pro", visits={"inc": 2}, car={"model": "y"}, _merge_objects=True)],
    [attributes(first_name="Ann", visits={"inc": 3}, tags=["a", "b"]), attributes(tags={"add": ["c"]})],
    [attributes(tags={"add": ["d"]}, plan=None)],
]


# ---------------------------------------------------------------- coalescing (always on)


def test_ten_updates_of_one_user_become_one_object_and_the_same_profile(send, braze):
    bodies = [
        envelope(
            [
                attributes(
                    level=n, plan=["free", "pro"][n % 2], visits={"inc": 1}, car={f"k{n % 3}": n}, _merge_objects=True
                )
            ],
            received_at=f"2026-11-22T07:00:0{n}.000Z",
        )
        for n in range(10)
    ]

    assert failed_ids(send(*bodies)) == []
    [[coalesced_object]] = sent_attributes(braze)
    coalesced = profile(braze)
    braze.reset()
    for body in bodies:
        send(body)
    one_by_one = profile(braze)

    assert coalesced_object == {
        "external_id": "u-1",
        "_merge_objects": True,
        "level": 9,
        "plan": "pro",
        "visits": {"inc": 10},
        "car": {"k0": 9, "k1": 7, "k2": 8},
    }
    assert what_profiles_hold(coalesced) == what_profiles_hold(one_by_one)
    assert (coalesced["data_points"], one_by_one["data_points"]) == (6, 40)


def test_repeated_updates_of_one_user_become_few_objects_and_the_same_profile(send, braze, capsys):
    bodies = [
        envelope(objects, received_at) for objects, received_at in zip(REPEATED_UPDATES, [T1, T1, T2, T3], strict=True)
    ]

    assert failed_ids(send(*bodies)) == []
    coalesced = profile(braze)
    [call] = sent_attributes(braze)
    printed = capsys.readouterr().out
    braze.reset()
    for body in bodies:  # the same objects, one invocation each: nothing to coalesce
        assert failed_ids(send(body)) == []
    one_by_one = profile(braze)

    # Five objects, three sent: each `add` keeps its place after the whole array, and the first
    # object no longer sets `plan`, which the last one unsets anyway.
    assert call == [
        {
            "external_id": "u-1",
            "_merge_objects": True,
            "visits": {"inc": 6},
            "car": {"make": "x", "model": "y"},
            "first_name": "Ann",
            "tags": ["a", "b"],
        },
        {"external_id": "u-1", "tags": {"add": ["c"]}},
        {"external_id": "u-1", "tags": {"add": ["d"]}, "plan": None},
    ]
    assert what_profiles_hold(coalesced) == what_profiles_hold(one_by_one)
    assert coalesced["attributes"] == {
        "visits": 6,
        "car": {"make": "x", "model": "y"},
        "first_name": "Ann",
        "tags": ["a", "b", "c", "d"],
    }
    assert coalesced["data_points"] < one_by_one["data_points"]
    assert metric_values(printed, "ObjectsDelivered") == [5.0]  # every object of every message is done
    assert metric_values(printed, "DataPointsSent") == [coalesced["data_points"]]
    assert metric_values(printed, "DataPointsSavedCoalescing") == [one_by_one["data_points"] - coalesced["data_points"]]


def test_an_older_message_later_in_the_batch_does_not_overwrite_a_newer_value(send, braze):
    newer = envelope([attributes(plan="pro")], received_at=T2)
    older = envelope([attributes(plan="free")], received_at=T1)

    assert failed_ids(send(newer, older)) == []

    assert sent_attributes(braze) == [[{"external_id": "u-1", "plan": "pro"}]]
    assert profile(braze)["attributes"]["plan"] == "pro"


def test_a_rejected_coalesced_object_is_kept_as_its_members_each_with_its_own_object(send, braze, aws_stack):
    braze.script(
        ScriptedResponse(
            status=201,
            process=True,
            errors_for=lambda body: [{"type": "BLACKLISTED_EXTERNAL_USER_ID", "input_array": "attributes", "index": 0}],
        )
    )
    first = [attributes(plan="free")]
    second = [attributes(plan="pro", level=3)]

    response = send(envelope(first, T1), envelope(second, T2))

    assert failed_ids(response) == []  # kept, not retried
    records = sorted(rejected_records(aws_stack), key=lambda r: r["origin"]["sqs_message_id"])
    assert [r["object"] for r in records] == [first[0][1], second[0][1]]  # replayable as the client sent them
    assert [r["origin"]["sqs_message_id"] for r in records] == ["msg-0", "msg-1"]
    assert all(r["reason"]["type"] == "BLACKLISTED_EXTERNAL_USER_ID" and r["coalesced_with"] == 1 for r in records)


def test_members_of_a_delivered_coalesced_object_are_in_the_ledger_when_their_message_comes_back(
    send, braze, aws_stack
):
    # Message 0: the user's attributes and 75 events; message 1: the user's newer attributes. The
    # coalesced object and 74 events fill the first call, which succeeds; the last event's call fails.
    braze.script(ScriptedResponse(status=201, process=True), *[ScriptedResponse(status=500) for _ in range(3)])

    response = send(
        envelope([attributes(plan="free"), *[event(n) for n in range(75)]], T1), envelope([attributes(plan="pro")], T2)
    )

    assert failed_ids(response) == ["msg-0"]
    [entry] = boto3.client("dynamodb").scan(TableName=aws_stack.refs["DeliveryLedgerTable"])["Items"]
    assert sorted(int(n) for n in entry["done"]["NS"]) == list(range(75))  # the attributes object (0) included
    assert profile(braze)["attributes"]["plan"] == "pro"


# ---------------------------------------------------------------- delta sending


def test_delta_sending_is_off_by_default_and_then_sends_everything_again(send, braze, aws_stack):
    body = envelope([attributes(plan="pro")])

    send(body)
    send(body)

    assert sent_attributes(braze) == [[{"external_id": "u-1", "plan": "pro"}]] * 2
    assert stored(aws_stack) == []


def test_a_second_identical_batch_sends_no_attribute(send, braze, aws_stack, delta, capsys):
    bodies = [
        envelope([*objects, event(n)], received_at)
        for n, (objects, received_at) in enumerate(zip(REPEATED_UPDATES[:2], [T1, T2], strict=True))
    ]
    send(*bodies)
    points_after_first = braze.stats()["data_points"]
    capsys.readouterr()

    assert failed_ids(send(*bodies)) == []

    # Only the increment (an operation) and the merge of `car` (a partial nested update) go again.
    assert sent_attributes(braze)[-1] == [
        {"external_id": "u-1", "_merge_objects": True, "visits": {"inc": 3}, "car": {"make": "x", "model": "y"}}
    ]
    printed = capsys.readouterr().out
    assert braze.stats()["data_points"] == points_after_first + 1 + 2 + 2  # inc, car's two keys, two events
    assert metric_values(printed, "DataPointsSavedDelta") == [1.0]  # plan
    [item] = stored(aws_stack)
    assert "external_id" not in json.dumps(item) and "u-1" not in json.dumps(item)  # no identifier at rest
    assert item["a.plan"]["S"].endswith(f"|{_ms(T2)}") and item["a.visits"]["S"].startswith("-|")


def test_plain_values_only_a_second_time_make_no_call_at_all(send, braze, delta):
    body = envelope([attributes(plan="pro", level=3, car={"make": "x"})])
    send(body)

    assert failed_ids(send(body)) == []

    assert len(sent_attributes(braze)) == 1
    assert profile(braze)["attributes"] == {"plan": "pro", "level": 3, "car": {"make": "x"}}


def test_an_older_value_arriving_after_a_newer_one_is_not_sent(send, braze, delta, capsys):
    send(envelope([attributes(plan="pro")], received_at=T2))
    capsys.readouterr()

    send(envelope([attributes(plan="free", visits={"inc": 1})], received_at=T1))

    assert sent_attributes(braze)[-1] == [{"external_id": "u-1", "visits": {"inc": 1}}]
    assert profile(braze)["attributes"] == {"plan": "pro", "visits": 1}
    assert metric_values(capsys.readouterr().out, "StaleValuesDropped") == [1.0]


def test_the_store_learns_a_value_only_once_braze_accepted_it(send, braze, aws_stack, delta):
    braze.script(*[ScriptedResponse(status=500) for _ in range(3)])
    body = envelope([attributes(plan="pro")])

    assert failed_ids(send(body)) == ["msg-0"]
    # A 5xx may come after Braze applied the object: the store must not say the profile holds an
    # older value, nor that it holds this one. It keeps only the time.
    [item] = stored(aws_stack)
    assert item["a.plan"]["S"] == f"-|{_ms(T1)}"

    assert failed_ids(send(body)) == []  # the retry is sent, not taken for a duplicate
    assert sent_attributes(braze) == [[{"external_id": "u-1", "plan": "pro"}]]
    [item] = stored(aws_stack)
    assert not item["a.plan"]["S"].startswith("-|")


def test_a_change_back_is_sent_when_recording_the_change_failed(send, braze, aws_stack, delta, monkeypatch, capsys):
    from braze_forwarder.delivery import attribute_state

    send(envelope([attributes(plan="free")], received_at=T1))
    real_write = attribute_state.DynamoAttributeStore.write

    def no_known_values(store, user, entries):
        if any(written.digest is not None for written in entries.values()):
            raise RuntimeError("the store refused the write")  # after Braze accepted the value
        real_write(store, user, entries)

    monkeypatch.setattr(attribute_state.DynamoAttributeStore, "write", no_known_values)
    assert failed_ids(send(envelope([attributes(plan="pro")], received_at=T2))) == []
    assert metric_values(capsys.readouterr().out, "AttributeStateWriteErrors") == [1.0]
    monkeypatch.setattr(attribute_state.DynamoAttributeStore, "write", real_write)

    assert failed_ids(send(envelope([attributes(plan="free")], received_at=T3))) == []

    assert profile(braze)["attributes"] == {"plan": "free"}  # not left at "pro"
    assert sent_attributes(braze)[-1] == [{"external_id": "u-1", "plan": "free"}]


def test_an_unchanged_or_new_value_costs_no_extra_store_write(send, braze, aws_stack, delta, monkeypatch):
    from braze_forwarder.delivery import attribute_state

    writes: list[dict[str, Any]] = []
    real_write = attribute_state.DynamoAttributeStore.write
    monkeypatch.setattr(
        attribute_state.DynamoAttributeStore,
        "write",
        lambda store, user, entries: (writes.append(dict(entries)), real_write(store, user, entries)),
    )

    send(envelope([attributes(plan="free")], received_at=T1))  # new: nothing stored to go stale
    send(envelope([attributes(plan="free")], received_at=T2))  # unchanged: nothing sent
    assert len(writes) == 1

    send(envelope([attributes(plan="pro")], received_at=T3))  # a change of a known value
    assert [sorted((n, w.digest is None) for n, w in e.items()) for e in writes[1:]] == [
        [("plan", True)],  # marked unknown before sending
        [("plan", False)],  # and recorded once Braze accepted it
    ]


def test_non_billable_fields_always_go_through(send, braze, delta):
    free = {
        "email_subscribe": "opted_in",
        "push_subscribe": "subscribed",
        "subscription_groups": [{"subscription_group_id": GROUP, "subscription_state": "subscribed"}],
    }
    body = envelope([attributes(plan="pro", **free)])
    send(body)
    points = braze.stats()["data_points"]

    send(body)

    assert sent_attributes(braze)[-1] == [{"external_id": "u-1", **free}]
    assert braze.stats()["data_points"] == points  # free of charge


def test_an_unreadable_store_sends_everything(send, braze, aws_stack, delta, monkeypatch, capsys):
    from braze_forwarder.delivery import attribute_state

    def unreadable(store, users):
        raise RuntimeError("the store cannot be read")

    monkeypatch.setattr(attribute_state.DynamoAttributeStore, "read", unreadable)
    body = envelope([attributes(plan="pro")])

    assert failed_ids(send(body)) == []

    assert sent_attributes(braze) == [[{"external_id": "u-1", "plan": "pro"}]]
    printed = capsys.readouterr().out
    assert metric_values(printed, "AttributeStateReadErrors") == [1.0]
    [item] = stored(aws_stack)
    assert not item["a.plan"]["S"].startswith("-|")  # marked unknown first, then recorded


def test_an_unreachable_store_holds_back_attributes_until_it_is_back(
    send, braze, aws_stack, delta, monkeypatch, capsys
):
    # Not readable, and the values it may hold cannot be marked unknown: sending would risk a stale
    # "last sent" value that a later change back would be compared with. Events still go.
    from braze_forwarder.delivery import attribute_state

    def unreachable(*_args):
        raise RuntimeError("the store cannot be reached")

    body = envelope([attributes(plan="pro"), event(1)])
    with monkeypatch.context() as outage:
        outage.setattr(attribute_state.DynamoAttributeStore, "read", unreachable)
        outage.setattr(attribute_state.DynamoAttributeStore, "write", unreachable)

        assert failed_ids(send(body)) == ["msg-0"]

    assert sent_attributes(braze) == [[]]
    printed = capsys.readouterr().out
    assert metric_values(printed, "AttributeStateReadErrors") == [1.0]
    assert metric_values(printed, "AttributeStateWriteErrors") == [1.0]

    assert failed_ids(send(body)) == []  # the ledger keeps the event from going twice
    assert profile(braze)["attributes"] == {"plan": "pro"}
    assert sum(1 for r in braze.requests if r.path == "/users/track" and r.json.get("events")) == 1


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)

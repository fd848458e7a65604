"""The soak's kill points, each on its own: the sender's handler in-process, moto for the ledger and
the rejected-objects bucket, the Braze sandbox over loopback HTTP. A killed invocation must end as a
crashed Lambda does: nothing recorded after the kill point, nothing sent, the handler raising."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from braze_forwarder import queue
from braze_forwarder.delivery import ordering
from braze_forwarder.user_order import OrderRecord, OrderStore, user_digest
from local.braze_sandbox import BrazeSandbox, SandboxConfig, ScriptedResponse
from soak.kills import (
    AFTER_BRAZE_2XX,
    AFTER_HANDLER_RETURN,
    AFTER_LEDGER_WRITE,
    BEFORE_HANDLER,
    Killed,
    KillPlan,
    KillSwitch,
)
from tests.conftest import LambdaContextStub, use_sender_environment

BRAZE_KEY = "braze-rest-key-kills"


class Function:
    """The part of a LocalFunction the kill switch uses: a handler it can wrap."""

    def __init__(self, handler: Callable[[Any, Any], Any]) -> None:
        self.handler = handler

    def wrap_handler(self, wrapper: Callable[[Any], Any]) -> None:
        self.handler = wrapper(self.handler)


@pytest.fixture
def braze() -> Iterator[BrazeSandbox]:
    with BrazeSandbox(SandboxConfig(api_key=BRAZE_KEY, seed=3, blocked_external_ids={"blocked"})) as sandbox:
        yield sandbox


@pytest.fixture
def sender(aws_stack, monkeypatch, braze) -> Iterator[Callable[..., Any]]:
    """install(plan) → (switch, invoke); invoke(*bodies, receive_count=1) runs the wrapped handler."""
    use_sender_environment(
        monkeypatch, aws_stack, braze.url, BRAZE_KEY, BRAZE_READ_TIMEOUT_SECONDS="2", BRAZE_MAX_ATTEMPTS="1"
    )
    from functions.braze_sender import app

    app.reset()

    def install(plan: KillPlan) -> tuple[KillSwitch, Callable[..., Any]]:
        switch = KillSwitch(plan)
        function = Function(app.lambda_handler)
        switch.install(function)

        def invoke(*bodies: str, receive_count: int = 1) -> Any:
            event = {
                "Records": [
                    {
                        "messageId": f"msg-{n}",
                        "receiptHandle": f"handle-{n}",
                        "body": body,
                        "attributes": {"ApproximateReceiveCount": str(receive_count)},
                        "messageAttributes": {},
                        "eventSource": "aws:sqs",
                    }
                    for n, body in enumerate(bodies)
                ]
            }
            return function.handler(event, LambdaContextStub(remaining_millis=20_000))

        return switch, invoke

    yield install
    app.reset()


def envelope(count: int, first: int = 0, user: str = "user") -> str:
    objects = [
        (
            "events",
            n,
            queue.encode_object(
                {"external_id": f"{user}-{n}" if user != "blocked" else user, "name": "played",
                 "time": "2026-05-01T12:00:00Z", "properties": {"soak_id": f"s-{first + n}"}}
            ),
        )
        for n in range(count)
    ]  # fmt: skip
    [body] = queue.build_messages("track", objects, source="tests", correlation_id=None, max_message_bytes=1 << 20)
    return body


def track_calls(braze: BrazeSandbox) -> list[Any]:
    return [request for request in braze.requests if request.path == "/users/track"]


def ledger_items(stack) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=stack.refs["DeliveryLedgerTable"])["Items"]


def kept_records(stack) -> list[dict[str, Any]]:
    s3 = boto3.client("s3")
    bucket = stack.refs["RejectedObjectsBucket"]
    keys = [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    ]


def test_killed_before_the_handler_nothing_runs(sender, braze, aws_stack):
    switch, invoke = sender(KillPlan(forced=[BEFORE_HANDLER]))

    with pytest.raises(Killed):
        invoke(envelope(10))

    assert track_calls(braze) == []
    [invocation] = switch.killed()
    assert (invocation.kill_point, invocation.calls) == (BEFORE_HANDLER, 0)
    assert invocation.bodies  # kept: the report reads the objects of killed invocations


def test_killed_after_a_2xx_nothing_records_it_and_nothing_more_is_sent(sender, braze, aws_stack):
    switch, invoke = sender(KillPlan(forced=[AFTER_BRAZE_2XX]))
    # 150 objects: two calls one after the other (one in flight); the first holds a blocked user,
    # whose rejection would be kept in S3 if the invocation lived to write it.
    bodies = [envelope(1, user="blocked"), envelope(149, first=1)]

    with pytest.raises(Killed):
        invoke(*bodies)

    [call] = track_calls(braze)
    assert call.processed and call.status == 201
    assert [error["type"] for error in call.errors] == ["BLACKLISTED_EXTERNAL_USER_ID"]
    assert kept_records(aws_stack) == []
    assert ledger_items(aws_stack) == []
    [invocation] = switch.killed()
    assert (invocation.kill_point, invocation.calls, invocation.answers_2xx) == (AFTER_BRAZE_2XX, 1, 1)


def test_calls_in_flight_at_a_kill_reach_braze_but_their_answers_are_dropped(sender, braze, monkeypatch):
    monkeypatch.setenv("BRAZE_MAX_IN_FLIGHT", "3")
    switch, invoke = sender(KillPlan(forced=[AFTER_BRAZE_2XX]))
    # Whichever call arrives first is answered first, once the other two have arrived; they are
    # still on the wire when that answer kills the invocation.
    braze.script(
        ScriptedResponse(201, process=True, delay_seconds=0.3),
        ScriptedResponse(201, process=True, delay_seconds=0.8),
        ScriptedResponse(201, process=True, delay_seconds=0.8),
    )

    with pytest.raises(Killed):
        invoke(*(envelope(75, first=75 * n, user=f"u{n}") for n in range(5)))  # five calls

    [invocation] = switch.killed()
    assert invocation.in_flight_at_kill == 2
    assert invocation.answers_after_kill == {201: 2}  # Braze has them; nobody read the answers
    assert len(track_calls(braze)) == 3  # the two calls not yet sent never were
    assert all(call.processed for call in track_calls(braze))


def test_killed_after_a_ledger_write_the_write_stands(sender, braze, aws_stack):
    switch, invoke = sender(KillPlan(forced=[AFTER_LEDGER_WRITE]))
    # One message of 100 objects in two calls; the second fails (one attempt), so the message is
    # partly delivered and its first 75 positions go to the ledger before it returns to the queue.
    braze.script(ScriptedResponse(201, process=True), ScriptedResponse(500))

    with pytest.raises(Killed):
        invoke(envelope(100))

    [item] = ledger_items(aws_stack)
    assert sorted(int(n) for n in item["done"]["NS"]) == list(range(75))
    [invocation] = switch.killed()
    assert (invocation.kill_point, invocation.ledger_writes) == (AFTER_LEDGER_WRITE, 1)


@pytest.mark.clock
def test_the_ledger_kill_may_land_on_a_held_group_s_write_before_its_copy_is_queued(sender, braze, aws_stack):
    """The gap the held group's record closes on the other side: recorded, then dead before SQS has
    the copy. Nothing is marked done and no copy is queued; the returning message sends it."""
    body = envelope(2)
    a_minute_before = ordering._plus(queue.decode(body).order_time, -60)
    OrderStore(aws_stack.refs["UserOrderTable"]).put(
        [OrderRecord("delete", user_digest(("external_id", "user-0")), a_minute_before)]
    )
    switch, invoke = sender(KillPlan(forced=[AFTER_LEDGER_WRITE]))

    with pytest.raises(Killed):
        invoke(body)  # user-0's event is held (its delete not in Braze): the first ledger write

    [item] = ledger_items(aws_stack)
    assert item["held"]["SS"] == ["0"] and "done" not in item
    [invocation] = switch.killed()
    assert (invocation.kill_point, invocation.ledger, switch.hold_writes) == (AFTER_LEDGER_WRITE, {}, 1)
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws_stack.refs["EventsQueue"], AttributeNames=["All"]
    )["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesDelayed"]) == ("0", "0")
    assert track_calls(braze) == []


def test_killed_after_the_handler_returned_its_answer_is_lost(sender, braze, aws_stack):
    switch, invoke = sender(KillPlan(forced=[AFTER_HANDLER_RETURN]))

    with pytest.raises(Killed):
        invoke(envelope(1, user="blocked"), envelope(5, first=1))

    assert [call.status for call in track_calls(braze)] == [201]  # all of it went out
    assert len(kept_records(aws_stack)) == 1  # and was recorded: only the SQS delete is missing
    [invocation] = switch.killed()
    assert invocation.kill_point == AFTER_HANDLER_RETURN


def test_forced_points_land_in_order_and_the_next_invocation_lives(sender, braze):
    switch, invoke = sender(KillPlan(forced=[BEFORE_HANDLER]))

    with pytest.raises(Killed):
        invoke(envelope(3))
    answer = invoke(envelope(3, first=3))

    assert answer == {"batchItemFailures": []}
    assert [invocation.dead for invocation in switch.invocations] == [True, False]


def test_a_batch_holding_a_message_on_its_last_receives_is_spared(sender, braze):
    switch, invoke = sender(KillPlan(forced=[BEFORE_HANDLER], spare_from_receive=3))

    assert invoke(envelope(3), receive_count=3) == {"batchItemFailures": []}
    with pytest.raises(Killed):
        invoke(envelope(3, first=3), receive_count=2)  # the forced kill waited for this one

    assert [(invocation.spared, invocation.dead) for invocation in switch.invocations] == [(True, False), (False, True)]


def test_a_forced_2xx_kill_the_invocation_never_reaches_waits_for_the_next(sender, braze):
    switch, invoke = sender(KillPlan(forced=[AFTER_BRAZE_2XX]))
    braze.script(ScriptedResponse(500))  # the only call fails: no 2xx to die after

    answer = invoke(envelope(3))

    assert answer == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert switch.killed() == [] and switch.unlanded() == {AFTER_BRAZE_2XX: 1}
    assert not switch.forced_landed()
    with pytest.raises(Killed):
        invoke(envelope(3, first=3))
    assert switch.unlanded() == {} and switch.forced_landed()


def test_random_kills_follow_the_seed(sender, braze):
    def points(seed: int) -> list[str | None]:
        switch, invoke = sender(KillPlan(rate=0.5, seed=seed))
        for n in range(8):
            with contextlib.suppress(Killed):
                invoke(envelope(2, first=2 * n))
        return [invocation.planned for invocation in switch.invocations]

    first = points(11)
    assert first == points(11)
    assert any(first) and not all(first)


def test_the_kill_points_wrap_the_senders_parts_and_patch_no_module(sender, braze, aws_stack):
    from braze_forwarder.delivery import sender as sender_module
    from functions.braze_sender import app

    modules = {module: dict(vars(module)) for module in (sender_module, app)}
    switch, invoke = sender(KillPlan(forced=[AFTER_BRAZE_2XX]))
    with pytest.raises(Killed):
        invoke(envelope(3))

    assert {module: dict(vars(module)) for module in modules} == modules
    real, wrapped = app.sender_parts(), switch._parts()
    assert (wrapped.client._real, wrapped.ledger._real, wrapped.rejects._real) == (
        real.client,
        real.ledger,
        real.rejects,
    )
    assert (wrapped.api_key, wrapped.attributes) == (real.api_key, real.attributes)
    assert switch.invocations[0].kill_point == AFTER_BRAZE_2XX and len(track_calls(braze)) == 1


def test_a_forced_kill_another_kill_beat_is_tried_again(sender, braze):
    switch, invoke = sender(KillPlan(forced=[AFTER_LEDGER_WRITE, AFTER_HANDLER_RETURN]))
    assert invoke(envelope(3)) == {"batchItemFailures": []}  # arms the ledger kill; no ledger write here
    braze.script(ScriptedResponse(201, process=True), ScriptedResponse(500))

    with pytest.raises(Killed):
        invoke(envelope(100, first=3))  # partly delivered: the armed ledger kill comes first
    with pytest.raises(Killed):
        invoke(envelope(3, first=103))

    assert [invocation.kill_point for invocation in switch.invocations] == [
        None,
        AFTER_LEDGER_WRITE,
        AFTER_HANDLER_RETURN,
    ]
    assert switch.unlanded() == {} and switch.forced_landed()


def test_a_call_without_an_answer_is_noted_with_its_objects(sender, braze, monkeypatch):
    monkeypatch.setenv("BRAZE_READ_TIMEOUT_SECONDS", "0.3")
    braze.config.timeout_rate, braze.config.timeout_sleep_seconds = 1.0, 1.0  # processed, answered too late
    switch, invoke = sender(KillPlan())

    invoke(envelope(2))

    [(sent, gave_up, ids)] = switch.unanswered
    assert sent < gave_up and ids == {"s-0", "s-1"}
    [call] = track_calls(braze)
    assert call.processed and sent <= call.time <= gave_up

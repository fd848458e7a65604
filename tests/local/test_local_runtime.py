"""The pieces of the local stack that need no servers: running a handler as Lambda would, reading a
ReportBatchItemFailures response, and schedules."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from local.event_sources import Schedule, _reported_failures
from local.resources import LocalStack
from local.runtime import LocalFunction, LocalRuntimeError, merged_environment

pytestmark = pytest.mark.local

HANDLERS = """
import time

def ok(event, context):
    return {"event": event, "remaining": context.get_remaining_time_in_millis(), "name": context.function_name,
            "memory": context.memory_limit_in_mb, "request_id": context.aws_request_id}

def slow(event, context):
    time.sleep(event.get("sleep", 5))
    return "late"

def broken(event, context):
    raise ValueError("no such thing")

def unsendable(event, context):
    return {"when": object()}
"""


def function_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **functions: dict[str, Any]) -> LocalStack:
    package = f"fn_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "app.py").write_text(textwrap.dedent(HANDLERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    resources = {
        logical_id: {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": f"{package}/", **properties}}
        for logical_id, properties in functions.items()
    }
    template = {"Globals": {"Function": {"Timeout": 3, "MemorySize": 256}}, "Resources": resources}
    return LocalStack(template=template, stack_name="test", region="us-east-1")


def finished_in_the_background(function: LocalFunction) -> None:
    """The handler's thread cannot be stopped: wait until it has returned (it releases the environment)."""
    assert function._environment_lock.acquire(timeout=10)
    function._environment_lock.release()


def test_a_handler_gets_a_lambda_context_from_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = function_stack(tmp_path, monkeypatch, Fn={"Handler": "app.ok", "Timeout": 7})
    function = LocalFunction(stack, "Fn", tmp_path)

    invocation = function.invoke({"a": 1})

    assert not invocation.failed
    value = invocation.value
    assert value["event"] == {"a": 1}
    assert 6000 < value["remaining"] <= 7000  # Timeout from the function, overriding Globals
    assert value["memory"] == 256  # MemorySize from Globals
    assert value["name"] == "test-Fn"
    assert value["request_id"] == invocation.request_id


def test_a_handler_past_its_timeout_is_reported_as_lambda_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = function_stack(tmp_path, monkeypatch, Fn={"Handler": "app.slow", "Timeout": 1})
    function = LocalFunction(stack, "Fn", tmp_path)

    invocation = function.invoke({"sleep": 1.5})

    assert invocation.timed_out and invocation.failed
    assert invocation.error is not None
    assert invocation.error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in invocation.error["errorMessage"]
    finished_in_the_background(function)


def test_a_caller_that_waits_less_than_the_timeout_abandons_the_invocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = function_stack(tmp_path, monkeypatch, Fn={"Handler": "app.slow", "Timeout": 10})
    function = LocalFunction(stack, "Fn", tmp_path)

    invocation = function.invoke({"sleep": 1}, wait_seconds=0.2)

    assert invocation.abandoned and not invocation.timed_out
    finished_in_the_background(function)


def test_errors_are_lambdas_error_payloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = function_stack(tmp_path, monkeypatch, Broken={"Handler": "app.broken"}, Odd={"Handler": "app.unsendable"})

    raised = LocalFunction(stack, "Broken", tmp_path).invoke({})
    unsendable = LocalFunction(stack, "Odd", tmp_path).invoke({})

    assert raised.error is not None and unsendable.error is not None
    assert (raised.error["errorType"], raised.error["errorMessage"]) == ("ValueError", "no such thing")
    assert raised.error["stackTrace"]
    assert unsendable.error["errorType"] == "Runtime.MarshalError"


def test_a_missing_handler_stops_the_start_with_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = function_stack(tmp_path, monkeypatch, Fn={"Handler": "app.nowhere"})

    with pytest.raises(LocalRuntimeError, match="has no function nowhere"):
        LocalFunction(stack, "Fn", tmp_path).load()


def test_two_functions_that_need_different_values_for_one_variable_refuse_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = function_stack(
        tmp_path,
        monkeypatch,
        A={"Handler": "app.ok", "Environment": {"Variables": {"SHARED": "1", "ONLY_A": "x"}}},
        B={"Handler": "app.ok", "Environment": {"Variables": {"SHARED": "2"}}},
        C={"Handler": "app.ok", "Environment": {"Variables": {"ONLY_A": "x"}}},
    )
    functions = {name: LocalFunction(stack, name, tmp_path) for name in ("A", "B", "C")}

    with pytest.raises(LocalRuntimeError, match="SHARED is '1' for A but '2' for B"):
        merged_environment(functions)
    assert merged_environment({"A": functions["A"], "C": functions["C"]}) == {"SHARED": "1", "ONLY_A": "x"}


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zz"}]}, {"a", "b"}),  # not in the batch: all failed
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": [{"id": "a"}]}, {"a", "b"}),
        ("not json", {"a", "b"}),
    ],
)
def test_report_batch_item_failures_is_read_as_lambda_reads_it(response: Any, failed: set[str]) -> None:
    assert _reported_failures(response, {"a", "b"}) == failed


def test_schedules_run_rate_expressions_and_fill_the_schedulers_placeholders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = function_stack(tmp_path, monkeypatch, Fn={"Handler": "app.ok"})
    function = LocalFunction(stack, "Fn", tmp_path)
    hourly = {"ScheduleExpression": "rate(2 hours)", "Input": '{"at": "<aws.scheduler.scheduled-time>"}'}

    rate = Schedule(stack, function, "Hourly", "ScheduleV2", hourly)
    cron = Schedule(stack, function, "Daily", "ScheduleV2", {"ScheduleExpression": "cron(0 6 * * ? *)"})
    off = Schedule(stack, function, "Off", "ScheduleV2", {"ScheduleExpression": "rate(1 day)", "State": "DISABLED"})
    rule = Schedule(stack, function, "Rule", "Schedule", {"Schedule": "rate(5 minutes)"})

    assert rate.period_seconds == 7200 and cron.period_seconds is None
    assert "not emulated" in cron.describe() and "disabled" in off.describe()
    assert json.loads(json.dumps(rate.event()))["at"].endswith("Z")
    assert cron.event() == {}
    assert rule.period_seconds == 300 and rule.event()["detail-type"] == "Scheduled Event"


def test_the_pollers_of_one_queue_receive_one_at_a_time() -> None:
    """moto's ReceiveMessage is not atomic across threads: two at once can hand out one message twice."""
    import threading
    import time

    from local.event_sources import SqsEventSource

    class Sqs:
        def __init__(self) -> None:
            self.inside = 0
            self.most = 0
            self.calls = 0
            self.lock = threading.Lock()

        def receive_message(self, **_: Any) -> dict[str, Any]:
            with self.lock:
                self.inside += 1
                self.calls += 1
                self.most = max(self.most, self.inside)
            time.sleep(0.02)
            with self.lock:
                self.inside -= 1
            return {"Messages": []}

    class Function:
        logical_id = "Fn"

    sqs = Sqs()
    source = SqsEventSource(
        Function(),  # type: ignore[arg-type]
        "Queue",
        "arn:aws:sqs:us-east-1:123456789012:q",
        "http://127.0.0.1/q",
        {"BatchSize": 10, "ScalingConfig": {"MaximumConcurrency": 5}},
        lambda: sqs,
        "us-east-1",
    )
    source.start()
    time.sleep(0.3)
    source.stop(timeout=3)

    assert source.pollers == 5 and sqs.calls >= 5
    assert sqs.most == 1

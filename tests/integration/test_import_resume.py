"""A range resumed after its worker died with a chunk half-way to the queue (docs/imports.md, "Exactly
once into the queue"): it does not send that chunk's envelopes again until it knows they were never
queued — found in the delivery ledger (skipped), the events queue empty (sent), or the wait bound
over (sent, counted) — and meanwhile its task waits on ImportTasksQueue, the range keeping its place.

moto for S3, SQS and DynamoDB, the Braze sandbox behind the real sender. Time is the test's: the
worker reads `WorkerParts.clock`, a deferred task's DelaySeconds move it, nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import boto3
import pytest

from braze_forwarder import queue
from braze_forwarder.config import ImportSettings, settings
from braze_forwarder.imports import commands, records, worker
from braze_forwarder.observability import metrics
from local.braze_sandbox import BrazeSandbox, SandboxConfig
from local.rate_budget_drill import drill_settings
from local.resources import LocalStack
from tests.conftest import metric_values, use_function_environment
from tests.integration.test_bulk_imports import (
    BRAZE_KEY,
    RANGE_BYTES,
    Harness,
    WorkerKilled,
    drain_through_sender,
    rows_twice,
    users_ndjson,
)

pytestmark = pytest.mark.clock

ROWS = 3_000  # three ranges of about 1,000 rows
CHUNK_ROWS = 200  # five or six chunks a range: a range that skipped ahead would show
RECHECK_SECONDS = 60
WAIT_SECONDS = 900


@dataclass
class Clock:
    """Epoch seconds as the worker reads them; they move only when a deferred task's delay passes."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class Scenario:
    """The real worker parts, with the test's clock, a kill at one send, and deferred tasks held back."""

    harness: Harness
    clock: Clock = field(default_factory=Clock)
    deferred: list[tuple[str, int]] = field(default_factory=list)  # (task, DelaySeconds) not yet due
    sent: list[str] = field(default_factory=list)  # envelope ids in the order SQS took them
    sends: int = 0

    def parts(self, die_at_send: int | None = None, *, after_sqs_took_it: bool = True) -> worker.WorkerParts:
        real = worker.real_parts(self.harness.config)

        def send(bodies: Sequence[str]) -> None:
            self.sends += 1
            dies = self.sends == die_at_send
            if dies and not after_sqs_took_it:
                raise WorkerKilled()  # after the range noted the chunk, before SQS took it
            real.send(bodies)
            self.sent += [json.loads(body)["id"] for body in bodies]
            if dies:
                raise WorkerKilled()

        def requeue(body: str, delay_seconds: int) -> None:
            if delay_seconds:
                self.deferred.append((body, delay_seconds))
            else:
                real.requeue(body, 0)

        return dataclasses.replace(real, send=send, requeue=requeue, clock=self.clock)

    def delays_pass(self) -> None:
        """The deferred tasks' DelaySeconds are over: the clock moves on and they are on the queue again."""
        due, self.deferred = self.deferred, []
        self.clock.now += max(delay for _, delay in due)
        for body, _ in due:
            self.harness.sqs.send_message(QueueUrl=self.harness.stack.refs["ImportTasksQueue"], MessageBody=body)


@pytest.fixture
def harness(aws_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Harness:
    use_function_environment(
        monkeypatch,
        aws_stack,
        "ImportWorkerFunction",
        IMPORT_RANGE_BYTES=str(RANGE_BYTES),
        IMPORT_CHUNK_ROWS=str(CHUNK_ROWS),
        IMPORT_RESUME_RECHECK_SECONDS=str(RECHECK_SECONDS),
        IMPORT_RESUME_WAIT_SECONDS=str(WAIT_SECONDS),
    )
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws_stack.refs["BrazeApiKeySecret"], SecretString=BRAZE_KEY
    )
    return Harness(aws_stack, settings(ImportSettings), boto3.client("sqs"), boto3.client("s3"))


@pytest.fixture
def braze() -> Iterator[BrazeSandbox]:
    with BrazeSandbox(SandboxConfig(api_key=BRAZE_KEY, seed=1)) as sandbox:
        yield sandbox


def deliver_the_queue(harness: Harness, braze: BrazeSandbox) -> list[str]:
    """The real sender delivers everything on EventsQueue; the envelope ids it received."""
    return drain_through_sender(harness, drill_settings(harness.stack, braze.url, budget_enabled=False), 10)[0]


def tracked(braze: BrazeSandbox) -> list[str]:
    return [
        obj["external_id"]
        for request in braze.requests
        if request.path == "/users/track" and request.status == 201
        for obj in request.json.get("attributes", [])
    ]


def other_traffic(harness: Harness) -> None:
    """A message from another source waits on EventsQueue: the queue is not empty."""
    bodies = queue.build_messages(
        "track",
        [("attributes", 0, '{"external_id":"someone-else"}')],
        source="api",
        correlation_id=None,
        max_message_bytes=256 * 1024,
    )
    queue.send_messages(harness.stack.refs["EventsQueue"], bodies)


def the_killed_range(harness: Harness, import_id: str) -> records.Range:
    interrupted = [r for r in harness.table().ranges(import_id) if r.sending_chunk is not None]
    assert len(interrupted) == 1
    return interrupted[0]


def maybe_queued_twice(capsys: pytest.CaptureFixture[str]) -> float:
    metrics.flush_metrics()
    return sum(metric_values(capsys.readouterr().out, "ImportEnvelopesMaybeQueuedTwice"))


def test_a_deferred_range_skips_what_the_ledger_shows_a_sender_received(
    harness: Harness, braze: BrazeSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    harness.put("users/f.ndjson", users_ndjson(ROWS))
    import_id = harness.start("users/f.ndjson")["import_id"]
    scenario = Scenario(harness)
    outcomes = harness.run_tasks(scenario.parts(die_at_send=2))
    assert outcomes.count("deferred") == 1  # its chunk is on the queue, not yet received
    killed = the_killed_range(harness, import_id)
    assert killed.lease_owner is None  # the deferred range holds no lease meanwhile
    first = deliver_the_queue(harness, braze)  # a sender receives the chunk: the ledger has it
    other_traffic(harness)  # and the queue is not empty, so only the ledger can tell
    scenario.delays_pass()
    assert harness.run_tasks(scenario.parts()) == ["finished"]
    later = deliver_the_queue(harness, braze)
    copies = Counter(first + later)
    assert [envelope for envelope, count in copies.items() if count > 1] == []  # nothing queued twice
    assert sorted(tracked(braze)) == sorted([f"user-{n}" for n in range(ROWS)] + ["someone-else"])
    assert maybe_queued_twice(capsys) == 0
    record = harness.table().get(import_id)
    assert record is not None and record.status == records.FINISHED and record.rows_queued == ROWS


def test_a_deferred_range_sends_once_the_events_queue_is_empty(
    harness: Harness, braze: BrazeSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker died after noting the chunk and before SQS took it: nothing of it can ever reach the
    ledger, so the range waits until the queue is empty, and then sends it — once."""
    harness.put("users/f.ndjson", users_ndjson(ROWS))
    import_id = harness.start("users/f.ndjson")["import_id"]
    scenario = Scenario(harness)
    outcomes = harness.run_tasks(scenario.parts(die_at_send=2, after_sqs_took_it=False))
    assert outcomes.count("deferred") == 1  # other chunks wait on the queue: it cannot tell yet
    first = deliver_the_queue(harness, braze)
    scenario.delays_pass()
    assert harness.run_tasks(scenario.parts()) == ["finished"]  # empty queue, not in the ledger: never queued
    copies = Counter(first + deliver_the_queue(harness, braze))
    assert max(copies.values()) == 1
    assert sorted(tracked(braze)) == sorted(f"user-{n}" for n in range(ROWS))
    assert maybe_queued_twice(capsys) == 0
    assert harness.table().get(import_id).rows_queued == ROWS  # type: ignore[union-attr]


def test_after_the_wait_bound_the_range_sends_again_counted_and_kept_its_order(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nobody drains the queue (other traffic in production): the range looks again every recheck, never
    skipping ahead, and once the chunk's send is IMPORT_RESUME_WAIT_SECONDS old it sends the chunk again
    — with the same envelope ids, counted in ImportEnvelopesMaybeQueuedTwice."""
    harness.put("users/f.ndjson", users_ndjson(ROWS))
    import_id = harness.start("users/f.ndjson")["import_id"]
    scenario = Scenario(harness)
    outcomes = harness.run_tasks(scenario.parts(die_at_send=2))
    killed = the_killed_range(harness, import_id)
    assert (killed.sending_chunk, killed.sending_envelopes) == (killed.chunks, 1)
    deferrals = outcomes.count("deferred")
    while scenario.deferred:
        scenario.delays_pass()
        outcomes = harness.run_tasks(scenario.parts())
        deferrals += outcomes.count("deferred")
        if scenario.deferred:  # still waiting: the range has not moved
            assert harness.table().get_range(import_id, killed.index) == killed
    assert outcomes == ["finished"]
    assert deferrals == WAIT_SECONDS // RECHECK_SECONDS
    items = harness.queued()
    assert {obj["external_id"] for _, obj, _ in items} == {f"user-{n}" for n in range(ROWS)}  # none lost
    assert 0 < rows_twice(items) <= CHUNK_ROWS  # the one chunk, sent again
    copies = Counter(scenario.sent)
    assert sum(count - 1 for count in copies.values()) == 1  # the same envelope id twice
    assert maybe_queued_twice(capsys) == 1
    # The killed range's chunks reached SQS in file order: chunk 0, the interrupted one (twice), the rest.
    chunk_of = {worker.envelope_id(import_id, killed.index, chunk, 0): chunk for chunk in range(ROWS // CHUNK_ROWS)}
    order = [chunk_of[envelope] for envelope in scenario.sent if envelope in chunk_of]
    assert order[: killed.chunks + 2] == [*range(killed.chunks + 1), killed.chunks]
    assert order == sorted(order) and len(order) > killed.chunks + 2


def test_a_cancel_while_a_range_waits_stops_it_sending_nothing_more(harness: Harness) -> None:
    harness.put("users/f.ndjson", users_ndjson(ROWS))
    import_id = harness.start("users/f.ndjson")["import_id"]
    scenario = Scenario(harness)
    assert harness.run_tasks(scenario.parts(die_at_send=2)).count("deferred") == 1
    killed = the_killed_range(harness, import_id)
    queued_before = len(scenario.sent)
    answer = commands.handle(harness.config, {"action": "cancel", "import_id": import_id})
    assert answer["cancelled"]
    scenario.delays_pass()
    assert harness.run_tasks(scenario.parts()) == [records.CANCELLED]
    assert len(scenario.sent) == queued_before  # nothing sent after the cancel
    assert harness.table().get_range(import_id, killed.index) == killed  # the range did not move
    assert scenario.deferred == []  # and its task does not come back


def test_messages_waiting_counts_visible_in_flight_and_delayed_messages(harness: Harness) -> None:
    url = harness.stack.refs["EventsQueue"]
    assert queue.messages_waiting(url) == 0
    harness.sqs.send_message(QueueUrl=url, MessageBody="visible, then in flight")
    harness.sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=900)
    assert queue.messages_waiting(url) == 2
    received = harness.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 1 and queue.messages_waiting(url) == 2  # in a consumer's hands: still not done
    harness.sqs.delete_message(QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"])
    assert queue.messages_waiting(url) == 1  # the delayed one

"""Bulk imports end to end in moto: a file in the import bucket, started as the CLI or an S3 drop
starts it, its range tasks run off moto's ImportTasksQueue by the worker, and the envelopes on
EventsQueue counted item by item — every row queued once, after crashes too."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from braze_forwarder import queue
from braze_forwarder.config import ImportSettings, SenderSettings, settings
from braze_forwarder.delivery.sender import Sender
from braze_forwarder.delivery_model import Outcome
from braze_forwarder.imports import commands, records, worker
from functions.import_worker import app as worker_app
from local.braze_sandbox import BrazeSandbox, SandboxConfig
from local.rate_budget_drill import drill_settings, invocation_parts
from local.resources import LocalStack
from tests.conftest import LambdaContextStub, metric_values, use_function_environment

RANGE_BYTES = 64 * 1024
CHUNK_ROWS = 500
BRAZE_KEY = "braze-rest-key-0123456789"


class WorkerKilled(Exception):
    """Stands for the worker's process dying: raised where a kill would stop it."""


@dataclass
class Harness:
    stack: LocalStack
    config: ImportSettings
    sqs: Any
    s3: Any

    @property
    def bucket(self) -> str:
        return self.stack.refs["ImportBucket"]

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def start(self, key: str, kind: str = "users", **extra: Any) -> dict[str, Any]:
        return commands.handle(
            self.config, {"action": "start", "bucket": self.bucket, "key": key, "kind": kind, **extra}
        )

    def run_tasks(self, parts: worker.WorkerParts | None = None, max_runs: int = 500) -> list[str]:
        """Run the worker on every task until the tasks queue is empty; a task that raises is put back."""
        outcomes = []
        url = self.stack.refs["ImportTasksQueue"]
        for _ in range(max_runs):
            answer = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)
            messages = answer.get("Messages", [])
            if not messages:
                return outcomes
            message = messages[0]
            try:
                outcomes.append(worker.run_task(message["Body"], self.config, parts or worker.real_parts(self.config)))
            except (WorkerKilled, queue.QueueUnavailable) as exc:
                outcomes.append(type(exc).__name__)
                self.lease_expires(message["Body"])
                self.sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
                continue
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        raise AssertionError("the tasks never ran out")

    def lease_expires(self, body: str) -> None:
        """Time passes as in AWS: a failed task comes back after the visibility timeout, ten times the
        worker's timeout, by when the dead worker's lease (one timeout) has run out."""
        task = json.loads(body)
        self.table().db.update_item(
            TableName=self.config.imports_table,
            Key={"import_id": {"S": task["import_id"]}, "item_id": {"S": records.range_item(task["range"])}},
            UpdateExpression="SET lease_until_ms = :past",
            ExpressionAttributeValues={":past": {"N": "0"}},
        )

    def queued(self) -> list[tuple[str, dict[str, Any], queue.Envelope]]:
        """Every item of every envelope on EventsQueue: (envelope id, object, envelope)."""
        url = self.stack.refs["EventsQueue"]
        items = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return items
            for message in messages:
                envelope = queue.decode(message["Body"])
                items += [(envelope.id, item.object, envelope) for item in envelope.items]
            self.sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    def table(self) -> records.ImportsTable:
        return records.ImportsTable(self.config.imports_table)


@pytest.fixture
def harness(aws_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Harness:
    use_function_environment(
        monkeypatch,
        aws_stack,
        "ImportWorkerFunction",
        IMPORT_RANGE_BYTES=str(RANGE_BYTES),
        IMPORT_CHUNK_ROWS=str(CHUNK_ROWS),
    )
    return Harness(aws_stack, settings(ImportSettings), boto3.client("sqs"), boto3.client("s3"))


def users_ndjson(count: int) -> bytes:
    return b"".join(
        json.dumps({"external_id": f"user-{n}", "plan": ["free", "pro"][n % 2], "visits": n}).encode() + b"\n"
        for n in range(count)
    )


def dying_after_second_send(config: ImportSettings) -> worker.WorkerParts:
    """The real parts, but the worker dies right after SQS took its second chunk: the acknowledgement
    is never written."""
    real = worker.real_parts(config)
    calls = {"n": 0}

    def send_then_die(bodies: Sequence[str]) -> None:
        calls["n"] += 1
        real.send(bodies)
        if calls["n"] == 2:
            raise WorkerKilled()

    return dataclasses.replace(real, send=send_then_die)


def rows_twice(items: list[tuple[str, dict[str, Any], queue.Envelope]]) -> int:
    counts = Counter(obj["external_id"] for _, obj, _ in items)
    return sum(count - 1 for count in counts.values() if count > 1)


def test_a_20000_row_file_in_several_ranges_is_queued_once_row_by_row(harness: Harness) -> None:
    harness.put("users/big.ndjson", users_ndjson(20_000))
    started = harness.start("users/big.ndjson")
    assert started["ok"] and started["created"] and started["ranges"] >= 10
    outcomes = harness.run_tasks()
    assert outcomes.count("finished") == started["ranges"]
    items = harness.queued()
    assert len(items) == 20_000
    assert {obj["external_id"] for _, obj, _ in items} == {f"user-{n}" for n in range(20_000)}
    assert rows_twice(items) == 0
    record = harness.table().get(started["import_id"])
    assert record is not None and record.status == records.FINISHED
    assert (record.rows_read, record.rows_queued, record.rows_rejected) == (20_000, 20_000, 0)
    assert record.bytes_read == record.size
    envelope = items[0][2]
    assert envelope.kind == "track" and envelope.source == f"import:{started['import_id']}"
    assert all(item.array == "attributes" for _, _, e in items[:1] for item in e.items)


def test_a_users_rows_keep_file_order_in_received_at_across_ranges(harness: Harness) -> None:
    lines = [json.dumps({"external_id": "same-user", "step": n, "pad": "x" * 200}).encode() for n in range(2_000)]
    harness.put("users/ordered.ndjson", b"\n".join(lines) + b"\n")
    started = harness.start("users/ordered.ndjson")
    assert started["ranges"] > 3
    harness.run_tasks()
    items = harness.queued()
    by_step = sorted(items, key=lambda item: item[1]["step"])
    times = [envelope.received_at for _, _, envelope in by_step]
    assert times == sorted(times)  # later rows never carry an earlier time
    assert times[0] < times[-1]


def test_starting_the_same_file_again_or_a_duplicate_s3_event_starts_nothing_new(harness: Harness) -> None:
    harness.put("users/twice.ndjson", users_ndjson(100))
    first = harness.start("users/twice.ndjson")
    again = harness.start("users/twice.ndjson")
    assert again["import_id"] == first["import_id"] and not again["created"]
    harness.run_tasks()
    assert len(harness.queued()) == 100


def test_a_worker_killed_between_chunks_resumes_with_none_lost_and_none_twice(harness: Harness) -> None:
    harness.put("users/killed.ndjson", users_ndjson(20_000))
    started = harness.start("users/killed.ndjson")
    real = worker.real_parts(harness.config)
    calls = {"n": 0}

    def dying_send(bodies: Sequence[str]) -> None:
        calls["n"] += 1
        if calls["n"] % 7 == 0:  # every seventh chunk: the worker dies before it sends
            raise WorkerKilled()
        real.send(bodies)

    parts = worker.WorkerParts(real.table, dying_send, real.requeue, real.rejected_bucket)
    outcomes = harness.run_tasks(parts)
    assert outcomes.count("WorkerKilled") >= 3
    items = harness.queued()
    assert len({obj["external_id"] for _, obj, _ in items}) == 20_000  # none lost
    assert rows_twice(items) == 0  # none twice
    record = harness.table().get(started["import_id"])
    assert record is not None and record.rows_queued == 20_000 and record.status == records.FINISHED


@pytest.mark.parametrize("per_invocation", [1, 10], ids=["copies-apart", "copies-in-one-batch"])
def test_a_chunk_queued_twice_after_a_kill_is_delivered_to_braze_once(harness: Harness, per_invocation: int) -> None:
    """The same window, carried through the sender: a copy in a later invocation finds its envelope in
    the delivery ledger (recorded when the first copy was delivered whole), a copy in the same batch
    is recognised by its id; either way it is skipped."""
    # The resumed range's wait bound is over at once: it sends the chunk again without knowing whether
    # the first copy is still queued (tests/integration/test_import_resume.py has the waiting).
    harness.config = dataclasses.replace(harness.config, import_resume_wait_seconds=0)
    harness.put("users/window.ndjson", users_ndjson(3_000))
    harness.start("users/window.ndjson")
    dying = dying_after_second_send(harness.config)
    harness.run_tasks(dying)
    boto3.client("secretsmanager").put_secret_value(
        SecretId=harness.stack.refs["BrazeApiKeySecret"], SecretString=BRAZE_KEY
    )
    with BrazeSandbox(SandboxConfig(api_key=BRAZE_KEY, seed=1)) as braze:
        config = drill_settings(harness.stack, braze.url, budget_enabled=False)
        envelopes, outcomes = drain_through_sender(harness, config, per_invocation)
        tracked = [
            obj["external_id"]
            for request in braze.requests
            if request.path == "/users/track" and request.status == 201
            for obj in request.json.get("attributes", [])
        ]
    ids = Counter(envelopes)
    assert sum(count - 1 for count in ids.values()) >= 1  # the chunk was on the queue twice
    assert len(tracked) == len(set(tracked)) == 3_000  # every row reached Braze, none twice
    assert sum(outcome.skipped_already_done for outcome in outcomes) == CHUNK_ROWS


def test_a_resumed_range_does_not_queue_again_what_a_sender_already_received(harness: Harness) -> None:
    """A worker dies after SQS took a chunk; a sender delivers that chunk before the range resumes. The
    resumed range (the real parts: the delivery ledger is read) does not send it again: 0 rows queued
    twice, each row at Braze once."""
    harness.put("users/window.ndjson", users_ndjson(3_000))
    harness.start("users/window.ndjson")
    dying = dying_after_second_send(harness.config)
    url = harness.stack.refs["ImportTasksQueue"]
    task = harness.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
    with pytest.raises(WorkerKilled):
        worker.run_task(task["Body"], harness.config, dying)
    harness.lease_expires(task["Body"])  # its task is back once the dead worker's lease has run out
    boto3.client("secretsmanager").put_secret_value(
        SecretId=harness.stack.refs["BrazeApiKeySecret"], SecretString=BRAZE_KEY
    )
    with BrazeSandbox(SandboxConfig(api_key=BRAZE_KEY, seed=1)) as braze:
        config = drill_settings(harness.stack, braze.url, budget_enabled=False)
        first = drain_through_sender(harness, config, 10)[0]
        harness.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=task["ReceiptHandle"], VisibilityTimeout=0)
        outcomes = harness.run_tasks(worker.real_parts(harness.config))
        later = drain_through_sender(harness, config, 10)[0]
        tracked = [
            obj["external_id"]
            for request in braze.requests
            if request.path == "/users/track" and request.status == 201
            for obj in request.json.get("attributes", [])
        ]
    copies = Counter(first + later)  # envelope id → times it was on the queue
    assert "deferred" not in outcomes  # the ledger answered at once
    assert len(tracked) == len(set(tracked)) == 3_000  # every row reached Braze once
    assert max(copies.values()) == 1  # no envelope queued twice


def drain_through_sender(
    harness: Harness, config: SenderSettings, per_invocation: int
) -> tuple[list[str], list[Outcome]]:
    """Deliver EventsQueue with the sender, one invocation per `per_invocation` messages, as the Lambda's
    event source would; (the envelope id of every message delivered, each invocation's outcome)."""
    url = harness.stack.refs["EventsQueue"]
    envelopes: list[str] = []
    outcomes: list[Outcome] = []
    while True:
        messages = harness.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=per_invocation).get("Messages", [])
        if not messages:
            return envelopes, outcomes
        outcome = Sender(config, invocation_parts(config)).deliver(
            [(m["MessageId"], m["Body"]) for m in messages], lambda: 60.0
        )
        assert outcome.failed_message_ids == []
        outcomes.append(outcome)
        envelopes += [queue.decode(m["Body"]).id for m in messages]
        harness.sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        )


def test_sqs_refusing_part_of_a_chunk_resends_only_the_rest(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_MESSAGE_BYTES", str(16 * 1024))  # several envelopes a chunk
    from braze_forwarder.config import settings as cached

    cached.cache_clear()
    harness.config = cached(ImportSettings)
    harness.put("users/partial.ndjson", users_ndjson(1_000))
    harness.start("users/partial.ndjson")
    real = worker.real_parts(harness.config)
    refused = {"done": False}

    def refuse_the_second_half_once(bodies: Sequence[str]) -> None:
        if refused["done"] or len(bodies) < 2:
            real.send(bodies)
            return
        refused["done"] = True
        half = len(bodies) // 2
        real.send(bodies[:half])
        raise queue.QueueUnavailable("refused", queued=half, total=len(bodies), queued_positions=frozenset(range(half)))

    harness.run_tasks(worker.WorkerParts(real.table, refuse_the_second_half_once, real.requeue, real.rejected_bucket))
    items = harness.queued()
    assert refused["done"]
    assert len(items) == 1_000 and rows_twice(items) == 0


def test_malformed_rows_are_kept_with_their_line_and_reason_and_the_import_goes_on(harness: Harness) -> None:
    body = b'external_id,plan,price\nu1,pro,\nu2,"unclosed\nu3,free,1,extra\n,nobody,\nu5,pro,\n'
    harness.put("users/mixed.csv", body)
    started = harness.start("users/mixed.csv")
    harness.run_tasks()
    items = harness.queued()
    assert [obj["external_id"] for _, obj, _ in items] == ["u1", "u5"]
    record = harness.table().get(started["import_id"])
    assert record is not None and (record.rows_read, record.rows_queued, record.rows_rejected) == (5, 2, 3)
    kept = []
    bucket = harness.stack.refs["RejectedObjectsBucket"]
    for entry in harness.s3.list_objects_v2(Bucket=bucket, Prefix=worker.rejects_prefix(started["import_id"]))[
        "Contents"
    ]:
        body_text = harness.s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode()
        kept += [json.loads(line) for line in body_text.splitlines()]
    found = {(k["origin"]["line"], k["reason"]["type"]) for k in kept}
    assert {line for line, _ in found} == {3, 4, 5}  # file lines, the header being line 1
    assert all(k["origin"]["byte_offset"] > 0 and k["reason"]["message"] for k in kept)
    assert ("UNREADABLE_ROW" in {t for _, t in found}) and len(found) == 3


def test_cancel_stops_the_workers_at_their_next_chunk(harness: Harness) -> None:
    harness.put("users/cancel.ndjson", users_ndjson(5_000))
    started = harness.start("users/cancel.ndjson")
    real = worker.real_parts(harness.config)
    calls = {"n": 0}

    def cancel_after_two(bodies: Sequence[str]) -> None:
        real.send(bodies)
        calls["n"] += 1
        if calls["n"] == 2:
            answer = commands.handle(harness.config, {"action": "cancel", "import_id": started["import_id"]})
            assert answer == {"ok": True, "import_id": started["import_id"], "cancelled": True}

    outcomes = harness.run_tasks(worker.WorkerParts(real.table, cancel_after_two, real.requeue, real.rejected_bucket))
    assert "cancelled" in outcomes
    assert len(harness.queued()) == 2 * CHUNK_ROWS  # the two chunks before the cancel, nothing after
    record = harness.table().get(started["import_id"])
    assert record is not None and record.status == records.CANCELLED and record.rows_queued == 2 * CHUNK_ROWS


def test_a_worker_out_of_time_hands_its_range_on_between_chunks(harness: Harness) -> None:
    harness.put("users/slow.ndjson", users_ndjson(3_000))
    started = harness.start("users/slow.ndjson")
    clock = {"left": 3}

    def remaining() -> float:  # two chunks' worth of time an invocation
        clock["left"] -= 1
        return 100.0 if clock["left"] > 0 else 0.0

    url = harness.stack.refs["ImportTasksQueue"]
    outcomes = []
    for _ in range(100):
        messages = harness.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
        if not messages:
            break
        clock["left"] = 3
        outcomes.append(
            worker.run_task(messages[0]["Body"], harness.config, worker.real_parts(harness.config), remaining)
        )
        harness.sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    assert "continued" in outcomes
    items = harness.queued()
    assert len(items) == 3_000 and rows_twice(items) == 0
    assert harness.table().get(started["import_id"]).status == records.FINISHED  # type: ignore[union-attr]


def test_a_file_dropped_in_the_bucket_is_imported_through_the_drops_queue(harness: Harness) -> None:
    """S3 → ImportDropsQueue (moto delivers the notification) → the starter's SQS event."""
    from functions.import_starter import app as starter_app

    drops = harness.stack.refs["ImportDropsQueue"]
    harness.sqs.purge_queue(QueueUrl=drops)  # S3's test event, sent when the notification was set
    harness.put("events/dropped.csv", b"external_id,name,time\nu1,played,2026-01-01T00:00:00Z\n")
    harness.put("elsewhere/ignored.csv", b"external_id\nu1\n")
    messages = harness.sqs.receive_message(QueueUrl=drops, MaxNumberOfMessages=10).get("Messages", [])
    assert len(messages) == 1  # only the prefixes that name a kind notify
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": m["MessageId"], "body": m["Body"]} for m in messages]}
    answer = starter_app.lambda_handler(event, LambdaContextStub())
    assert answer["ok"] and answer["started"][0].startswith("imp-") and answer["batchItemFailures"] == []
    harness.run_tasks()
    items = harness.queued()
    assert [(obj["external_id"], obj["name"]) for _, obj, _ in items] == [("u1", "played")]
    assert all(item.array == "events" for _, _, e in items for item in e.items)


def test_a_task_for_a_range_another_worker_holds_goes_back_to_the_queue(harness: Harness) -> None:
    harness.put("users/held.ndjson", users_ndjson(10))
    started = harness.start("users/held.ndjson")
    assert harness.table().claim(started["import_id"], 0, "a-live-worker", 60_000)
    body = json.dumps({"v": 1, "import_id": started["import_id"], "range": 0})
    with pytest.raises(worker.RangeBusy):
        worker.run_task(body, harness.config, worker.real_parts(harness.config))
    harness.table().release(started["import_id"], 0, "a-live-worker")
    assert worker.run_task(body, harness.config, worker.real_parts(harness.config)) == "finished"
    # A late duplicate finds the import finished and queues nothing.
    assert worker.run_task(body, harness.config, worker.real_parts(harness.config)) == records.FINISHED
    assert len(harness.queued()) == 10


def test_bad_requests_are_answers_not_errors(harness: Harness) -> None:
    harness.put("users/plain.txt", b"hello\n")
    assert harness.start("users/missing.csv")["error"].endswith("cannot be read (404)")
    assert "format" in harness.start("users/plain.txt")["error"]
    assert "kind must be one of" in harness.start("users/plain.txt", kind="nope", format="csv")["error"]
    answer = commands.handle(harness.config, {"action": "start", "bucket": "other", "key": "x.csv", "kind": "users"})
    assert "copy the file there first" in answer["error"]
    assert not commands.handle(harness.config, {"action": "cancel", "import_id": "nope"})["ok"]
    harness.put("users/gz.csv", b"\x1f\x8b\x08\x00rest")
    assert "uncompressed" in harness.start("users/gz.csv")["error"]


def test_the_worker_handler_counts_rows_in_metrics(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    harness.put(
        "purchases/p.ndjson",
        b'{"external_id":"u1","product_id":"p","currency":"USD","price":1.5,"time":"2026-01-01T00:00:00Z"}\n{"oops"\n',
    )
    harness.start("purchases/p.ndjson", kind="purchases")
    url = harness.stack.refs["ImportTasksQueue"]
    message = harness.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
    record = {"messageId": message["MessageId"], "receiptHandle": "r", "body": message["Body"], "attributes": {},
              "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": "us-east-1",
              "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q"}  # fmt: skip
    event = {"Records": [record]}
    assert worker_app.lambda_handler(event, LambdaContextStub()) == {"batchItemFailures": []}
    printed = capsys.readouterr().out
    assert metric_values(printed, "ImportRowsRead") == [2.0]
    assert metric_values(printed, "ImportRowsQueued") == [1.0]
    assert metric_values(printed, "ImportRowsRejected") == [1.0]

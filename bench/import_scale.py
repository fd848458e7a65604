"""Issue #20's proof: a file imported and delivered at the shared rate budget, with workers killed too.

In-process, not through the local stack (whose HTTP hops would measure the stack, not the import):
moto stands in for S3, SQS and DynamoDB, the Braze sandbox enforces Braze's /users/track limit
scaled down, and the real code runs — the import commands, ImportWorkerFunction's range worker
(threads taking tasks off ImportTasksQueue) and several sender invocations (threads, each its own
Sender and budget holder) draining EventsQueue at the shared budget, set to 0.8 of the sandbox's limit.

Counted: rows queued (envelope items as SQS took them, copies included), rows queued twice (the one
window docs/imports.md names: a worker killed after SQS took a chunk), rows Braze accepted and how
often each, the 429 share, the delivered call rate against the budget, and the delivery ledger's
writes. A killed worker raises where the kill would stop it — before a chunk's send, or after SQS
took it and before the acknowledgement — and its task comes back once its lease has run out.

`python -m bench.import_scale --rows N` sizes the file (`make bench` runs the small default).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from moto import mock_aws

from bench.common import print_table
from braze_forwarder import aws, queue
from braze_forwarder.config import ImportSettings, settings
from braze_forwarder.delivery.rate_budget import TRACK, WINDOW_SECONDS
from braze_forwarder.delivery.sender import Sender
from braze_forwarder.imports import commands, records, worker
from local.braze_sandbox import BrazeSandbox, SandboxConfig
from local.rate_budget_drill import AtomicWrites, TableOperations, drill_settings, invocation_parts
from local.resources import LocalStack, create_resources

KEY = "bench-braze-key-0123456789"
DEFAULT_ROWS = 20_000
# Braze's 3,000 /users/track requests per 3 s scaled down 20x; the shared budget at 0.8 of it.
SANDBOX_REQUESTS_PER_3S = 150
BUDGET_PER_SECOND = 40.0
SENDERS = 4
WORKERS = 2
KILL_RATE = 0.05  # per chunk, when workers are killed
CHUNK_ROWS = 1000


class WorkerKilled(Exception):
    """Stands for a worker's process dying where it is raised."""


@dataclass(frozen=True)
class ScaleResult:
    rows: int
    kills: int
    seconds: float
    rows_queued: int  # envelope items SQS took, copies included
    rows_queued_twice: int
    rows_delivered: int  # distinct rows Braze accepted
    rows_delivered_twice: int
    rows_lost: int
    calls: int
    rate_limited: int
    calls_seconds: float
    ledger_writes: int

    @property
    def delivered_calls_per_second(self) -> float:
        return (self.calls - self.rate_limited) / (self.calls_seconds + WINDOW_SECONDS[TRACK])


def users_ndjson(rows: int) -> bytes:
    return b"".join(
        json.dumps({"external_id": f"user-{n}", "plan": ["free", "pro"][n % 2], "visits": n}).encode() + b"\n"
        for n in range(rows)
    )


def run(stack: LocalStack, rows: int, *, kill_rate: float, seed: int = 7) -> ScaleResult:
    """Import a file of `rows` rows and deliver it; kill workers at `kill_rate` per chunk."""
    for name, value in stack.function_environment("ImportWorkerFunction").items():
        os.environ[name] = value
    os.environ["IMPORT_CHUNK_ROWS"] = str(CHUNK_ROWS)
    os.environ["IMPORT_RANGE_BYTES"] = str(max(64 * 1024, rows * 50 // 8))  # about 8 ranges
    config = settings(ImportSettings)
    sqs = boto3.client("sqs")
    bucket, key = stack.refs["ImportBucket"], f"users/scale-{rows}-{kill_rate}.ndjson"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=users_ndjson(rows))
    sandbox = SandboxConfig(api_key=KEY, seed=1, latency_seconds=0.01, rate_limit_requests=SANDBOX_REQUESTS_PER_3S)
    events = aws.client("dynamodb").meta.events
    ledger_operations = TableOperations(stack.refs["DeliveryLedgerTable"])
    events.register("before-parameter-build.dynamodb", ledger_operations)
    atomic = AtomicWrites()
    atomic.register(events)
    queued: Counter[str] = Counter()
    lock = threading.Lock()
    rng = random.Random(seed)
    kills = [0]
    real = worker.real_parts(config)

    def send(bodies: Sequence[str]) -> None:
        with lock:
            kill = rng.random() < kill_rate
            after_sqs = rng.random() < 0.5
        if kill and not after_sqs:
            kills[0] += 1
            raise WorkerKilled()
        real.send(bodies)
        with lock:
            for body in bodies:
                queued.update(item.object["external_id"] for item in queue.decode(body).items)
        if kill:  # SQS has the chunk; the acknowledgement is never written
            kills[0] += 1
            raise WorkerKilled()

    parts = worker.WorkerParts(real.table, send, real.requeue, real.rejected_bucket)
    import_done = threading.Event()
    start = time.monotonic()
    try:
        with BrazeSandbox(sandbox) as braze:
            sender_config = drill_settings(
                stack, braze.url, budget_enabled=True, track_requests_per_second=BUDGET_PER_SECOND
            )
            started = commands.handle(config, {"action": "start", "bucket": bucket, "key": key, "kind": "users"})
            import_id = started["import_id"]
            workers = [
                threading.Thread(target=_work, args=(sqs, stack, config, parts, import_id)) for _ in range(WORKERS)
            ]
            senders = [
                threading.Thread(target=_deliver, args=(sqs, stack, sender_config, import_done)) for _ in range(SENDERS)
            ]
            for thread in workers + senders:
                thread.start()
            for thread in workers:
                thread.join()
            import_done.set()
            for thread in senders:
                thread.join()
            seconds = time.monotonic() - start
            delivered: Counter[str] = Counter()
            times = []
            calls = rate_limited = 0
            for request in braze.requests:
                if request.path != "/users/track":
                    continue
                calls += 1
                times.append(request.time)
                if request.status == 429:
                    rate_limited += 1
                elif request.status is not None and request.status < 300:
                    delivered.update(obj["external_id"] for obj in request.json.get("attributes", []))
    finally:
        events.unregister("before-parameter-build.dynamodb", ledger_operations)
        atomic.unregister(events)
    expected = {f"user-{n}" for n in range(rows)}
    return ScaleResult(
        rows=rows,
        kills=kills[0],
        seconds=seconds,
        rows_queued=sum(queued.values()),
        rows_queued_twice=sum(count - 1 for count in queued.values() if count > 1),
        rows_delivered=len(delivered),
        rows_delivered_twice=sum(count - 1 for count in delivered.values() if count > 1),
        rows_lost=len(expected - set(delivered)),
        calls=calls,
        rate_limited=rate_limited,
        calls_seconds=max(times) - min(times) if times else 0.0,
        ledger_writes=ledger_operations.counts["BatchWriteItem"] + ledger_operations.counts["PutItem"],
    )


def _work(sqs: Any, stack: LocalStack, config: ImportSettings, parts: worker.WorkerParts, import_id: str) -> None:
    """One worker environment: take range tasks until the import is finished."""
    url = stack.refs["ImportTasksQueue"]
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
        if not messages:
            record = parts.table.get(import_id)
            if record is not None and record.status not in records.ACTIVE:
                return
            time.sleep(0.05)
            continue
        message = messages[0]
        try:
            worker.run_task(message["Body"], config, parts)
        except (WorkerKilled, worker.RangeBusy) as exc:
            # As in AWS: the task comes back after its visibility timeout, when the dead worker's lease is
            # over. That timeout (ten times the worker's, hours) outlasts the events queue's backlog: here
            # the task waits for the queue to drain, or a copy could meet its first copy in flight.
            if isinstance(exc, WorkerKilled):
                _wait_for_drained(sqs, stack.refs["EventsQueue"])
            task = json.loads(message["Body"])
            aws.client("dynamodb").update_item(
                TableName=config.imports_table,
                Key={"import_id": {"S": task["import_id"]}, "item_id": {"S": records.range_item(task["range"])}},
                UpdateExpression="SET lease_until_ms = :past",
                ExpressionAttributeValues={":past": {"N": "0"}},
            )
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
            continue
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _wait_for_drained(sqs: Any, url: str) -> None:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    while any(int(v) for v in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"].values()):
        time.sleep(0.1)


def _deliver(sqs: Any, stack: LocalStack, config: Any, import_done: threading.Event) -> None:
    """One sender environment: invocations of up to 10 messages until the import is queued and drained."""
    url = stack.refs["EventsQueue"]
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            if import_done.is_set():
                return
            time.sleep(0.05)
            continue
        outcome = Sender(config, invocation_parts(config)).deliver(
            [(m["MessageId"], m["Body"]) for m in messages], lambda: 60.0
        )
        failed = set(outcome.failed_message_ids)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
            )
        for message in messages:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)


def measure(rows: int) -> list[ScaleResult]:
    results = []
    with mock_aws():
        aws.reset()
        stack = create_resources(boto3.session.Session(region_name="us-east-1"))
        boto3.client("secretsmanager").put_secret_value(SecretId=stack.refs["BrazeApiKeySecret"], SecretString=KEY)
        for kill_rate in (0.0, KILL_RATE):
            results.append(run(stack, rows, kill_rate=kill_rate))
        aws.reset()
    return results


def main(rows: int = DEFAULT_ROWS) -> None:
    table = []
    for result in measure(rows):
        rate = result.delivered_calls_per_second
        table.append(
            [
                f"{result.rows:,} rows, " + (f"{result.kills} worker kills" if result.kills else "no kills"),
                f"{result.rows_lost}",
                f"{result.rows_queued_twice} / {result.rows_delivered_twice}",
                f"{result.rate_limited} / {result.calls} ({result.rate_limited / (result.calls or 1):.2%})",
                f"{rate:.1f}/s ({rate / BUDGET_PER_SECOND:.2f})",
                f"{result.ledger_writes}",
                f"{result.seconds:.0f} s",
            ]
        )
    print_table(
        "Import at scale: a file imported and delivered at the shared budget (moto + Braze sandbox, in-process)",
        ["run", "lost", "queued twice / delivered twice", "429s / calls", "accepted calls (÷ budget)",
         "ledger writes", "time"],
        table,
        f"sandbox {SANDBOX_REQUESTS_PER_3S} /users/track per 3 s, budget {BUDGET_PER_SECOND:g}/s (0.8), {SENDERS} "
        f"senders, {WORKERS} workers, {CHUNK_ROWS}-row chunks; kills at {KILL_RATE:.0%} of chunks, half of them "
        "after SQS took the chunk. --rows N sizes the file.",
    )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows in the file")
    main(parser.parse_args().rows)

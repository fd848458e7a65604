"""Cost per million: single-object requests, and objects at 75 per request, for both front doors.

Prices are public list prices (PRICES, with their date and region). Durations are measured: warm
invocations of the real ingest and sender handlers (bench/warm_probe.py, their own process) against
the local stack's moto server and Braze sandbox (bench/coldstart.quiet_stack, in this process), the
AWS calls they make counted per invocation. Every charge is counted from those counts: API Gateway
(HttpApi door), Lambda requests and GB-s of both functions at the template's MemorySize, SQS send
(per 64 KiB chunk), the event source's receives and deletes, DynamoDB reads and writes (idempotency
when a key is sent, the sender's ledger), S3 where used, and CloudWatch Logs: the bytes each handler
writes to stdout (log lines and Powertools' metric documents, measured per invocation) plus the
platform's START/END/REPORT lines unless the function's LoggingConfig drops them (SystemLogLevel
WARN, as the template sets for the ingest function; docs/performance.md), and for the HTTP API door
its access log line (the template's format with a typical request's values).

Billed duration on Lambda is not this machine's. Lambda gives a function CPU in proportion to its
memory: one vCPU at 1,769 MB, so 256 MB gets about a seventh of one. The CPU time measured here is
scaled by 1,769 ÷ MemorySize (never below 1), and the waiting (wall − CPU: SQS, DynamoDB and Braze
round trips, here on loopback) is added unscaled; the total is rounded up to 1 ms as Lambda bills.
Braze's answer time is the sandbox's BRAZE_LATENCY_SECONDS. A Graviton core and this machine's core
are taken as equal; loopback round trips are shorter than real ones, which the Braze latency and
the scaled CPU outweigh for the sender and do not for ingest's one SQS call (a few ms, noted).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import print_table

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "warm_probe.py"

# us-east-1 list prices as published on 2026-12-07 (USD).
PRICES_AS_OF = "us-east-1 list prices, 2026-12-07"
HTTP_API_PER_REQUEST = 1.00 / 1e6  # API Gateway HTTP API, first 300 million a month
LAMBDA_PER_REQUEST = 0.20 / 1e6  # arm64
LAMBDA_PER_GB_SECOND = 0.0000133334  # arm64
SQS_PER_REQUEST = 0.40 / 1e6  # standard queue; each 64 KiB chunk of a payload is one request
SQS_CHUNK_BYTES = 64 * 1024
DYNAMODB_PER_READ_UNIT = 0.125 / 1e6  # on demand
DYNAMODB_PER_WRITE_UNIT = 0.625 / 1e6  # on demand
S3_PER_PUT = 0.005 / 1000
LOGS_PER_BYTE = 0.50 / 1e9  # CloudWatch Logs ingestion (Lambda logs, first 10 TB a month), per GB of 10^9 bytes
# What the platform writes per invocation in the Text log format (JSON's platform records are longer).
PLATFORM_LINES = (
    "START RequestId: 6d8a2c4e-0f3b-4b8e-9d57-2f1e8c7a9b10 Version: $LATEST\n"
    "END RequestId: 6d8a2c4e-0f3b-4b8e-9d57-2f1e8c7a9b10\n"
    "REPORT RequestId: 6d8a2c4e-0f3b-4b8e-9d57-2f1e8c7a9b10\tDuration: 14.52 ms\tBilled Duration: 15 ms\t"
    "Memory Size: 256 MB\tMax Memory Used: 92 MB\t\n"
)

FULL_VCPU_MB = 1769  # Lambda: one vCPU's worth of CPU at 1,769 MB of memory
BRAZE_LATENCY_SECONDS = 0.05  # the sandbox's answer time, as bench/standin.py's throughput figure
SQS_RECEIVE_MESSAGES = 10  # the event source's ReceiveMessage and DeleteMessageBatch take up to 10
ROUNDS = 15
SENDER_BATCHES = 3
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
_READS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")


def _template_memory() -> dict[str, int]:
    from sam_template import load_template

    template = load_template(ROOT / "template.yaml")
    default = template.get("Globals", {}).get("Function", {}).get("MemorySize", 128)
    return {
        logical_id: int(resource.get("Properties", {}).get("MemorySize", default))
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


def _template_platform_log_bytes() -> dict[str, int]:
    """Per function, the platform's bytes per invocation: none where its LoggingConfig keeps only WARN."""
    from sam_template import load_template

    template = load_template(ROOT / "template.yaml")
    parameters = template.get("Parameters", {})

    def platform_bytes(logging_config: dict[str, Any]) -> int:
        level = logging_config.get("SystemLogLevel", "INFO")
        if isinstance(level, dict) and "Ref" in level:  # a template parameter: its default
            level = parameters[level["Ref"]]["Default"]
        return 0 if level == "WARN" else len(PLATFORM_LINES.encode())

    return {
        logical_id: platform_bytes(resource.get("Properties", {}).get("LoggingConfig", {}))
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


# A request's values for the HTTP API's access log format ($context variables), to size one line.
_ACCESS_LOG_SAMPLE = {
    "requestId": "Xa1bCdEfIAMEb_g=",
    "identity.sourceIp": "203.0.113.42",
    "requestTime": "07/Dec/2026:15:20:34 +0000",
    "httpMethod": "POST",
    "path": "/users/track",
    "status": "202",
    "responseLength": "63",
    "responseLatency": "18",
    "integrationErrorMessage": "-",
}


def _template_access_log_bytes() -> int:
    """One HTTP API access log line (the template's format, a typical request's values) with its newline."""
    import re

    from sam_template import load_template

    template = load_template(ROOT / "template.yaml")
    [api] = [r for r in template["Resources"].values() if r.get("Type") == "AWS::Serverless::HttpApi"]
    line_format = api["Properties"]["AccessLogSettings"]["Format"]
    line = re.sub(r"\$context\.([A-Za-z.]+)", lambda m: _ACCESS_LOG_SAMPLE.get(m.group(1), "x" * 16), line_format)
    return len(line.encode()) + 1


def billed_ms(wall_ms: float, cpu_ms: float, memory_mb: int) -> int:
    scale = max(1.0, FULL_VCPU_MB / memory_mb)
    return math.ceil(cpu_ms * scale + max(0.0, wall_ms - cpu_ms))


def _warm(module: str, paths: list[Path], environment: dict[str, str]) -> list[dict[str, Any]]:
    answer = subprocess.run(
        [sys.executable, str(PROBE), module, *map(str, paths)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    lines = [json.loads(line[5:]) for line in answer.stdout.splitlines() if line.startswith("WARM ")]
    if answer.returncode != 0 or len(lines) != len(paths):
        raise RuntimeError(f"warm invocations of {module} failed: {answer.stderr[-2000:]}")
    return lines


def _track_event(stack: Any, objects: int, idempotency_key: str | None) -> dict[str, Any]:
    from bench.ingest import _body, _event

    event = _event(_body(objects))
    event["headers"]["authorization"] = f"Bearer {stack.options.ingest_key}"
    if idempotency_key:
        event["headers"]["idempotency-key"] = idempotency_key
    return event


def _drain(stack: Any, queue_url: str, count: int) -> list[dict[str, Any]]:
    """Up to `count` messages of the events queue (until it answers none) as Lambda's SQS event records."""
    sqs = stack.client("sqs")
    records: list[dict[str, Any]] = []
    while len(records) < count:
        answer = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=min(10, count - len(records)), WaitTimeSeconds=1
        )
        if not answer.get("Messages"):
            break  # the queue is drained
        for message in answer["Messages"]:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            records.append(
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": {"ApproximateReceiveCount": "1"},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                }
            )
    return records


def _write(directory: Path, name: str, event: Any) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps(event))
    return path


def measure(rounds: int = ROUNDS, sender_batches: int = SENDER_BATCHES) -> dict[str, Any]:
    """Warm ingest figures per request shape, and sender figures per batch, with the calls they made."""
    from bench.coldstart import _environment, quiet_stack

    figures: dict[str, Any] = {
        "memory_mb": _template_memory(),
        "platform_log_bytes": _template_platform_log_bytes(),
        "access_log_bytes": _template_access_log_bytes(),
    }
    with quiet_stack(BRAZE_LATENCY_SECONDS) as stack, tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        queue_url = stack.functions["IngestApiFunction"].environment["EVENTS_QUEUE_URL"]
        ingest_environment = sender_environment = _environment(stack, tracing=False)
        sender_batch = int(stack.resources.parameters.get("SenderBatchSize", 100))
        for objects in (1, 75):
            for keyed in (False, True):
                # The first invocation of the process is the cold start, not counted.
                paths = [
                    _write(
                        folder,
                        f"track-{objects}-{keyed}-{i}",
                        _track_event(stack, objects, f"key-{objects}-{i}" if keyed else None),
                    )
                    for i in range(rounds + 1)
                ]
                runs = _warm("functions.ingest_api.app", paths, ingest_environment)[1:]
                assert all(run["status"] == 202 for run in runs), runs
                body_bytes = len(_track_event(stack, objects, None)["body"].encode())
                figures[f"ingest-{objects}-{'key' if keyed else 'nokey'}"] = {"runs": runs, "body_bytes": body_bytes}
                # What the sender gets: the messages these requests queued, in full batches.
                per_batch = sender_batch if objects == 1 else max(1, sender_batch // 10)
                batches = []
                sent = _drain(stack, queue_url, 10_000)
                if keyed or not sent:
                    continue
                while len(sent) < per_batch * (sender_batches + 1):
                    more = [
                        _write(folder, f"fill-{objects}-{i}-{len(sent)}", _track_event(stack, objects, None))
                        for i in range(per_batch)
                    ]
                    _warm("functions.ingest_api.app", more, ingest_environment)
                    sent += _drain(stack, queue_url, 10_000)
                for number in range(sender_batches + 1):
                    records = sent[number * per_batch : (number + 1) * per_batch]
                    batches.append(_write(folder, f"batch-{objects}-{number}", {"Records": records}))
                braze_before = len(stack.sandbox.requests)
                sender_runs = _warm("functions.braze_sender.app", batches, sender_environment)
                braze_calls = len(stack.sandbox.requests) - braze_before
                assert all(run["failures"] == 0 for run in sender_runs), sender_runs
                objects_per_message = _objects_per_message(sent[:per_batch])
                figures[f"sender-{objects}"] = {
                    "runs": sender_runs[1:],
                    "messages": per_batch,
                    "objects": round(objects_per_message * per_batch),
                    "braze_calls_per_batch": braze_calls / len(batches),
                }
    return figures


def _objects_per_message(records: list[dict[str, Any]]) -> float:
    return statistics.mean(len(json.loads(record["body"]).get("items", [])) for record in records)


def _log_bytes(runs: list[dict[str, Any]]) -> float:
    """The median bytes a handler wrote to stdout per invocation."""
    return statistics.median(run["log_bytes"] for run in runs)


def _median_run(runs: list[dict[str, Any]], memory_mb: int) -> tuple[int, float, float, Counter[str]]:
    """(billed ms of the median run, median wall ms, median CPU ms, calls per invocation)."""
    billed = [billed_ms(run["wall_ms"], run["cpu_ms"], memory_mb) for run in runs]
    calls: Counter[str] = Counter()
    for run in runs:
        calls.update(run["calls"])
    per_run = Counter({name: count / len(runs) for name, count in calls.items()})
    return (
        math.ceil(statistics.median(billed)),
        statistics.median(run["wall_ms"] for run in runs),
        statistics.median(run["cpu_ms"] for run in runs),
        per_run,
    )


def _aws_cost(calls: Counter[str], sqs_chunks_per_send: int) -> float:
    dollars = 0.0
    for name, count in calls.items():
        service, operation = name.split(":", 1)
        if service == "sqs" and operation in ("SendMessage", "SendMessageBatch"):
            dollars += count * sqs_chunks_per_send * SQS_PER_REQUEST
        elif service == "sqs":
            dollars += count * SQS_PER_REQUEST
        elif service == "dynamodb" and operation in _WRITES:
            dollars += count * DYNAMODB_PER_WRITE_UNIT  # items under 1 KB: one unit each
        elif service == "dynamodb" and operation in _READS:
            dollars += count * DYNAMODB_PER_READ_UNIT  # strongly consistent, under 4 KB: one unit
        elif service == "s3" and operation.startswith("Put"):
            dollars += count * S3_PER_PUT
    return dollars


def costs(figures: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    memory, platform = figures["memory_mb"], figures["platform_log_bytes"]
    ingest_mb, sender_mb = memory["IngestApiFunction"], memory["BrazeSenderFunction"]
    rows, notes = [], []
    for objects in (1, 75):
        sender = figures[f"sender-{objects}"]
        sender_billed, sender_wall, sender_cpu, sender_calls = _median_run(sender["runs"], sender_mb)
        sender_log_bytes = _log_bytes(sender["runs"]) + platform["BrazeSenderFunction"]
        sender_logs = sender_log_bytes * LOGS_PER_BYTE / sender["objects"]
        per_object_sender = (
            LAMBDA_PER_REQUEST
            + sender_billed / 1000 * sender_mb / 1024 * LAMBDA_PER_GB_SECOND
            + _aws_cost(sender_calls, 1)
            # The event source's receives and deletes: up to 10 messages each.
            + 2 * math.ceil(sender["messages"] / SQS_RECEIVE_MESSAGES) * SQS_PER_REQUEST
        ) / sender["objects"] + sender_logs
        notes.append(
            f"sender, {sender['messages']} messages of {objects} object(s): billed {sender_billed} ms "
            f"(wall {sender_wall:.0f}, CPU {sender_cpu:.0f}) at {sender_mb} MB, "
            f"{sender['braze_calls_per_batch']:.1f} Braze calls, AWS calls {dict(sender_calls)}, "
            f"{sender_log_bytes:.0f} log bytes"
        )
        for keyed in (False, True):
            ingest = figures[f"ingest-{objects}-{'key' if keyed else 'nokey'}"]
            billed, wall, cpu, calls = _median_run(ingest["runs"], ingest_mb)
            chunks = max(1, math.ceil(ingest["body_bytes"] / SQS_CHUNK_BYTES))
            ingest_log_bytes = _log_bytes(ingest["runs"]) + platform["IngestApiFunction"]
            logs = ingest_log_bytes * LOGS_PER_BYTE + objects * sender_logs
            per_request = (
                LAMBDA_PER_REQUEST
                + billed / 1000 * ingest_mb / 1024 * LAMBDA_PER_GB_SECOND
                + _aws_cost(calls, chunks)
                + ingest_log_bytes * LOGS_PER_BYTE
                + objects * per_object_sender
            )
            notes.append(
                f"ingest, {objects} object(s){', Idempotency-Key' if keyed else ''}: billed {billed} ms "
                f"(wall {wall:.1f}, CPU {cpu:.1f}) at {ingest_mb} MB, AWS calls {dict(calls)}, "
                f"{ingest_log_bytes:.0f} log bytes"
            )
            access_logs = figures["access_log_bytes"] * LOGS_PER_BYTE  # the HTTP API's line per request
            for door, api, door_logs in (
                ("FunctionUrl", 0.0, 0.0),
                ("HttpApi", HTTP_API_PER_REQUEST + access_logs, access_logs),
            ):
                total = per_request + api
                unit = "request" if objects == 1 else "object"
                per = 1 if objects == 1 else objects
                rows.append(
                    [
                        door,
                        f"{objects}/request",
                        "yes" if keyed else "no",
                        f"${total / per * 1e6:.3f}",
                        f"${(total - logs - door_logs) / per * 1e6:.3f}",
                        f"${(logs + door_logs) / per * 1e6:.3f}",
                        f"per million {unit}s",
                    ]
                )
    return rows, notes


def run(rounds: int = ROUNDS, sender_batches: int = SENDER_BATCHES) -> tuple[list[list[str]], list[str]]:
    """The measurement in its own process: the stack's functions are imported there, not here."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.cost", "--measure", str(rounds), str(sender_batches)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if answer.returncode != 0:
        raise RuntimeError(f"cost measurement failed: {answer.stderr[-3000:]}")
    return costs(json.loads(answer.stdout.strip().splitlines()[-1]))


def main(rounds: int = ROUNDS, sender_batches: int = SENDER_BATCHES) -> None:
    rows, notes = run(rounds, sender_batches)
    print_table(
        "Cost per million (all charges; measured durations)",
        ["front door", "objects", "Idempotency-Key", "cost", "before logs", "of which logs", "unit"],
        rows,
        f"{PRICES_AS_OF}: HTTP API $1.00/M, Lambda arm64 $0.20/M + $0.0000133334/GB-s, SQS $0.40/M "
        "(64 KiB chunks; send + the event source's receive and delete), DynamoDB $0.125/M RRU and $0.625/M WRU, "
        "S3 PUT $0.005/1000, CloudWatch Logs $0.50/GB ingested (what the handlers write, measured, and the "
        "platform's START/END/REPORT lines where kept, and the HTTP API's access log line); "
        f"billed ms = CPU × {FULL_VCPU_MB}/MemorySize + waiting, rounded up; "
        f"Braze answers in {BRAZE_LATENCY_SECONDS * 1000:.0f} ms; goals ≤ $0.70 per million single-object "
        "requests (FunctionUrl), ≤ $0.10 per million objects at 75",
    )
    for note in notes:
        print(f"  {note}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        main()

"""Warm invocations of one handler, run as a script in its own process: time and AWS calls per event.

`python bench/warm_probe.py HANDLER EVENT_FILE...` imports the handler and invokes it once per
event file, in order, as one execution environment would. For each invocation it prints a JSON
line: wall-clock ms, CPU ms of this process (the handler and its threads, nothing else: the AWS and
Braze stand-ins run in bench/cost.py's process), the AWS calls made, by service and operation,
and the bytes the handler wrote to stdout (its log lines and metrics: what CloudWatch Logs ingests
from it; the probe's own lines go to the real stdout, uncounted).
"""

import importlib
import io
import json
import sys
import time
from collections import Counter
from typing import Any

SERVICES = ("sqs", "dynamodb", "s3", "secretsmanager")


class _Context:
    function_name = "bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench-warm"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


class _CountingStdout(io.TextIOBase):
    """stdout as the handler sees it: counts the UTF-8 bytes written, passes nothing on."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        return len(text)


def main() -> None:
    real_stdout, counted = sys.stdout, _CountingStdout()
    # Before the import: Powertools' Logger keeps the stream it finds when it is created.
    sys.stdout = counted
    handler = importlib.import_module(sys.argv[1]).lambda_handler
    from braze_forwarder import aws

    calls: Counter[str] = Counter()

    def count(model: Any, **_kwargs: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    # The functions' clients are aws.client's, cached per service: these are the ones they use.
    for service in SERVICES:
        aws.client(service).meta.events.register("before-call", count)
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as file:
            event = json.load(file)
        calls.clear()
        counted.bytes = 0
        wall, cpu = time.perf_counter(), time.process_time()
        answer = handler(event, _Context())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        status = answer.get("statusCode") if isinstance(answer, dict) else None
        failures = len(answer.get("batchItemFailures", [])) if isinstance(answer, dict) else None
        line = {"wall_ms": wall * 1000, "cpu_ms": cpu * 1000, "calls": dict(calls), "status": status}
        line["failures"] = failures
        line["log_bytes"] = counted.bytes
        print("WARM " + json.dumps(line), file=real_stdout, flush=True)


if __name__ == "__main__":
    main()

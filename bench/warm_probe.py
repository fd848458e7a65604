"""Warm invocations of one handler, run as a script in its own process: time and AWS calls per event.

`python bench/warm_probe.py HANDLER EVENT_FILE...` imports the handler and invokes it once per
event file, in order, as one execution environment would. For each invocation it prints a JSON
line: wall-clock ms, CPU ms of this process (the handler and its threads, nothing else: the AWS and
Braze stand-ins run in bench/cost.py's process) and the AWS calls made, by service and operation.
"""

import importlib
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


def main() -> None:
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
        wall, cpu = time.perf_counter(), time.process_time()
        answer = handler(event, _Context())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        status = answer.get("statusCode") if isinstance(answer, dict) else None
        failures = len(answer.get("batchItemFailures", [])) if isinstance(answer, dict) else None
        line = {"wall_ms": wall * 1000, "cpu_ms": cpu * 1000, "calls": dict(calls), "status": status}
        line["failures"] = failures
        print("WARM " + json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

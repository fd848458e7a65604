"""One cold start, run as a script in a fresh interpreter: import, then the first answer of one event.

`python bench/coldstart_probe.py HANDLER EVENT_FILE` times, from the first line of this script (the
interpreter is up; Lambda's own start-up is not ours) to the return of the first invocation:
importing the handler module and answering the event, against the AWS and Braze stand-ins the
environment points at. HANDLER `boto3` is the minimal function: import boto3, one SQS message.
Prints the wall-clock and CPU seconds (this process, all its threads), then the answer's summary
as JSON (bench/coldstart.py shows it, so an error cannot pass for a fast answer).
"""

import time

_STARTED = time.perf_counter()
_STARTED_CPU = time.process_time()

import importlib  # noqa: E402  (after the clock starts: everything from here on is the cold start)
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


class _Context:
    function_name = "bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench-cold-start"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def _minimal_function(_event: dict, _context: object) -> dict:
    import boto3

    boto3.client("sqs").send_message(QueueUrl=os.environ["EVENTS_QUEUE_URL"], MessageBody='{"bench":"minimal"}')
    return {"sent": 1}


def main() -> None:
    handler_module, event_path = sys.argv[1], sys.argv[2]
    with open(event_path, encoding="utf-8") as file:
        event = json.load(file)
    # The clock starts before the event is read: reading it is the same on both sides and tiny.
    if handler_module == "boto3":
        answer = _minimal_function(event, _Context())
    else:
        answer = importlib.import_module(handler_module).lambda_handler(event, _Context())
    cpu_seconds = time.process_time() - _STARTED_CPU
    seconds = time.perf_counter() - _STARTED
    print(seconds, cpu_seconds)
    print(json.dumps(_summary(answer)))


def _summary(answer: object) -> object:
    if isinstance(answer, dict) and "statusCode" in answer:
        return {"statusCode": answer["statusCode"], "body": str(answer.get("body", ""))[:300]}
    return answer


if __name__ == "__main__":
    main()

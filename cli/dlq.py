"""`dlq redrive`: move a dead-letter queue's messages back to the queue they came from.

SQS's own message-move task (StartMessageMoveTask, then ListMessageMoveTasks for progress). Where
the endpoint does not implement it — moto, which the local stack runs on, does not (5.2.5) — the
move is done here: receive 10, send them to the source queue, delete them from the DLQ, repeat.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from botocore.exceptions import ClientError

from cli.errors import CliError
from cli.target import Target

QUEUES = {
    "events": ("EventsQueueUrl", "EventsDLQUrl"),
    "copy-tasks": ("CopyTasksQueueUrl", "CopyTasksDLQUrl"),
}
_NOT_IMPLEMENTED = {"NotImplemented", "InvalidAction", "UnsupportedOperation"}
POLL_SECONDS = 2.0
BATCH = 10  # SQS's batch limit


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dlq", help="redrive a dead-letter queue", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="dlq_command", metavar="{redrive}", required=True)
    redrive = commands.add_parser(
        "redrive",
        parents=parents,
        help="move the DLQ's messages back to their source queue",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    redrive.add_argument("--queue", choices=sorted(QUEUES), default="events", help="which DLQ (default: events)")
    redrive.add_argument("--wait", action="store_true", help="wait until the move task is done, printing progress")
    redrive.set_defaults(handler=redrive_command)


def redrive_command(target: Target, args: argparse.Namespace) -> int:
    source_output, dlq_output = QUEUES[args.queue]
    source_url, dlq_url = target.output(source_output), target.output(dlq_output)
    sqs = target.client("sqs")
    total = _depth(sqs, dlq_url)
    if total == 0:
        print(f"the {args.queue} DLQ is empty: nothing to redrive")
        return 0
    dlq_arn = _arn(sqs, dlq_url)
    try:
        handle = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=_arn(sqs, source_url))["TaskHandle"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # moto answers an action it lacks with a bare 500; from AWS itself a 500 stays an error.
        emulated = target.endpoint_url is not None and status in (500, 501)
        if code not in _NOT_IMPLEMENTED and not emulated:
            raise
        print(
            f"this endpoint does not implement SQS message move tasks (it answered {status}); "
            f"moving by hand: receive, send to the source queue, delete, {BATCH} at a time"
        )
        moved = move_by_hand(sqs, dlq_url, source_url, total)
        print(f"done: moved {moved} message(s) from the {args.queue} DLQ back to its source queue")
        return 0
    print(f"started message move task for the {args.queue} DLQ ({total} message(s)): {handle}")
    if not args.wait:
        print("follow it with --wait, or in the SQS console (Dead-letter queue redrive)")
        return 0
    return _wait(sqs, dlq_arn, handle)


def _wait(sqs: Any, dlq_arn: str, handle: str) -> int:
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10).get("Results", [])
        task = next((t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else {})
        status = task.get("Status", "?")
        moved = task.get("ApproximateNumberOfMessagesMoved", 0)
        total = task.get("ApproximateNumberOfMessagesToMove", "?")
        print(f"{status}: moved {moved} / {total}", file=sys.stderr)
        if status == "COMPLETED":
            print(f"done: moved {moved} message(s)")
            return 0
        if status in ("FAILED", "CANCELLED"):
            print(f"the move task ended {status}: {task.get('FailureReason', '')}")
            return 1
        time.sleep(POLL_SECONDS)


def move_by_hand(sqs: Any, dlq_url: str, source_url: str, total: int) -> int:
    """Receive → send to the source → delete, 10 at a time, until the DLQ answers empty twice."""
    moved = 0
    empty = 0
    while empty < 2:
        received = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=BATCH,
            WaitTimeSeconds=1 if empty else 0,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            empty += 1
            continue
        empty = 0
        entries = [
            {"Id": str(number), "MessageBody": message["Body"], **_attributes(message)}
            for number, message in enumerate(received)
        ]
        answer = sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
        sent = {entry["Id"] for entry in answer.get("Successful", [])}
        for failure in answer.get("Failed", []):
            print(f"  not moved (stays in the DLQ): {failure.get('Code')}: {failure.get('Message')}", file=sys.stderr)
        deletes = [
            {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
            for number, message in enumerate(received)
            if str(number) in sent
        ]
        if deletes:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=deletes)
        moved += len(deletes)
        print(f"moved {moved} / {max(total, moved)}", file=sys.stderr)
        if len(sent) < len(received):
            raise CliError(f"SQS refused to send {len(received) - len(sent)} message(s); moved {moved}, stopped")
    return moved


def _attributes(message: dict[str, Any]) -> dict[str, Any]:
    attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        kept = {key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value}
        attributes[name] = kept
    return {"MessageAttributes": attributes} if attributes else {}


def _depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"].get("ApproximateNumberOfMessages", 0))


def _arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

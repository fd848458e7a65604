"""Event sources: SQS queues polled as Lambda's event source mapping does, and schedules.

SQS (every `Type: SQS` event): ScalingConfig.MaximumConcurrency pollers (at most
`MAX_LOCAL_POLLERS`) receive in batches of 10 — never message by message, moto's SQS costs about
a fifth of a second per receive-and-delete — and gather up to BatchSize messages within
MaximumBatchingWindowInSeconds (and Lambda's 6 MB payload). The handler gets Lambda's SQS event.
After it returns, the messages it did not report as failed (`ReportBatchItemFailures`) are deleted
with DeleteMessageBatch; failed ones stay and reappear after the queue's visibility timeout; an
error or timeout fails the whole batch. Redrive to the dead-letter queue after maxReceiveCount is
the queue's own RedrivePolicy, which moto's SQS applies on receive as SQS does
(tests/local/test_local_stack.py proves it), so the pollers do not imitate it.

Schedules (`Type: ScheduleV2` or `Schedule`): `rate(...)` expressions run on a timer, the first
time one period after start, as EventBridge does; cron and at() expressions are not emulated (run
those functions through the Invoke API).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.resources import LocalStack
from local.runtime import MAX_PAYLOAD_BYTES, LocalFunction

logger = logging.getLogger("local.events")

SQS_RECEIVE_MAX = 10  # ReceiveMessage's and DeleteMessageBatch's maximum
MAX_LOCAL_POLLERS = 5  # invocations of one function run one at a time locally; more pollers only wait
# Pollers look again this often while a queue is empty (more often while a batch's window is open).
# They do not long-poll: receives are serialised (see _receiving), and a waiting receive would hold
# the other pollers out for its whole wait.
IDLE_POLL_SECONDS = 0.5
WINDOW_POLL_SECONDS = 0.1


@dataclass
class SourceStats:
    batches: int = 0
    records: int = 0
    deleted: int = 0
    failed: int = 0
    errors: int = 0  # invocations that failed as a whole
    batch_sizes: list[int] = field(default_factory=list)


class SqsEventSource:
    """One event source mapping: a queue feeding one function."""

    def __init__(
        self,
        function: LocalFunction,
        event_name: str,
        queue_arn: str,
        queue_url: str,
        properties: dict[str, Any],
        client_factory: Callable[[], Any],
        region: str,
    ) -> None:
        self.function = function
        self.event_name = event_name
        self.queue_arn = queue_arn
        self.queue_url = queue_url
        self.queue_name = queue_arn.rsplit(":", 1)[-1]
        self.batch_size = int(properties.get("BatchSize", 10))
        self.window_seconds = float(properties.get("MaximumBatchingWindowInSeconds", 0))
        self.report_failures = "ReportBatchItemFailures" in (properties.get("FunctionResponseTypes") or [])
        concurrency = (properties.get("ScalingConfig") or {}).get("MaximumConcurrency")
        self.pollers = max(1, min(int(concurrency or MAX_LOCAL_POLLERS), MAX_LOCAL_POLLERS))
        self.enabled = str(properties.get("Enabled", True)).lower() != "false"
        self.region = region
        self.stats = SourceStats()
        self._client_factory = client_factory
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # One ReceiveMessage at a time: moto's is not atomic across threads (it checks that a
        # message is visible, then marks it received), so two pollers receiving at once now and
        # then both get the same message — a double delivery SQS makes far more rarely.
        self._receiving = threading.Lock()
        # For `drained()`: messages a poller holds, and failed ones awaiting their retry.
        self._held = 0
        self._awaiting_retry: dict[str, float] = {}  # message id → when it becomes visible again

    def describe(self) -> str:
        window = f", window {self.window_seconds:g} s" if self.window_seconds else ""
        failures = ", partial failures" if self.report_failures else ""
        return (
            f"{self.queue_name} → {self.function.logical_id} (batch {self.batch_size}{window}{failures}, "
            f"{self.pollers} poller{'s' if self.pollers > 1 else ''})"
        )

    def start(self) -> None:
        if not self.enabled:
            logger.info("%s.%s is disabled in the template; not polling", self.function.logical_id, self.event_name)
            return
        for number in range(self.pollers):
            thread = threading.Thread(target=self._poll, name=f"sqs-{self.function.logical_id}-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def signal_stop(self) -> None:
        """Stop polling (without waiting): stopping every source first, then waiting, is faster."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def drained(self, attributes: dict[str, str]) -> tuple[bool, int]:
        """(nothing left to do now, messages waiting for their retry) given the queue's attributes."""
        now = time.time()
        with self._lock:
            self._awaiting_retry = {mid: at for mid, at in self._awaiting_retry.items() if at > now}
            busy = self._held > 0
            awaiting = len(self._awaiting_retry)
        visible = int(attributes.get("ApproximateNumberOfMessages", 0))
        delayed = int(attributes.get("ApproximateNumberOfMessagesDelayed", 0))
        invisible = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
        # Invisible messages that no poller holds and that did not fail here are being received.
        return (not busy and visible == 0 and delayed == 0 and invisible <= awaiting), awaiting

    # -- polling --------------------------------------------------------------------------------

    def _poll(self) -> None:
        sqs = self._client_factory()
        carried: list[dict[str, Any]] = []
        while not self._stop.is_set():
            batch, carried = self._gather(sqs, carried)
            if batch and not self._stop.is_set():  # stopping: the messages reappear, as after a crash
                try:
                    self._invoke(sqs, batch)
                except Exception:  # keep polling, as Lambda's pollers do, and say why
                    logger.exception("%s: settling a batch from %s failed", self.function.logical_id, self.queue_name)
                    self._stop.wait(1.0)

    def _visibility_timeout(self, sqs: Any) -> float:
        # Read when needed, not once: an operator (or a test) may change it while the stack runs.
        attributes = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"])
        return float(attributes["Attributes"]["VisibilityTimeout"])

    def _gather(self, sqs: Any, carried: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Receive until BatchSize, the batching window or the payload limit; return (batch, overflow)."""
        batch = list(carried)
        size = sum(_record_size(message) for message in batch)
        deadline = time.monotonic() + self.window_seconds if batch else None
        while not self._stop.is_set() and len(batch) < self.batch_size:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                with self._receiving:
                    messages = sqs.receive_message(
                        QueueUrl=self.queue_url,
                        MaxNumberOfMessages=min(SQS_RECEIVE_MAX, self.batch_size - len(batch)),
                        WaitTimeSeconds=0,
                        MessageSystemAttributeNames=["All"],
                        MessageAttributeNames=["All"],
                    ).get("Messages", [])
                with self._lock:
                    self._held += len(messages)
                    for message in messages:
                        self._awaiting_retry.pop(message["MessageId"], None)
            except Exception as exc:  # moto busy or stopping: say so, keep what was gathered
                if not self._stop.is_set():
                    logger.warning("%s: receiving from %s failed: %s", self.function.logical_id, self.queue_name, exc)
                    self._stop.wait(1.0)
                messages = []
                if batch:
                    break
            for position, message in enumerate(messages):
                message_size = _record_size(message)
                if batch and size + message_size > MAX_PAYLOAD_BYTES:
                    return batch, messages[position:]  # the rest starts the next batch
                batch.append(message)
                size += message_size
            if messages and deadline is None:
                deadline = time.monotonic() + self.window_seconds  # the window opens with the first record
            if not messages:
                self._stop.wait(IDLE_POLL_SECONDS if remaining is None else min(remaining, WINDOW_POLL_SECONDS))
        return batch, []

    def _invoke(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        try:
            self._invoke_and_settle(sqs, messages)
        finally:
            with self._lock:
                self._held = max(0, self._held - len(messages))

    def _invoke_and_settle(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        received_at = time.time()
        event = {"Records": [self._record(message) for message in messages]}
        invocation = self.function.invoke(event)
        by_id = {message["MessageId"]: message for message in messages}
        if invocation.failed:
            failed_ids = set(by_id)
            logger.warning(
                "%s failed a batch of %d from %s: %s",
                self.function.logical_id,
                len(messages),
                self.queue_name,
                (invocation.error or {}).get("errorType"),
            )
        elif self.report_failures:
            failed_ids = _reported_failures(invocation.value, set(by_id))
        else:
            failed_ids = set()
        succeeded = [message for message_id, message in by_id.items() if message_id not in failed_ids]
        deleted = self._delete(sqs, succeeded)
        visibility = self._visibility_timeout(sqs) if failed_ids else 0.0
        with self._lock:
            for message_id in failed_ids:
                self._awaiting_retry[message_id] = received_at + visibility
            self.stats.batches += 1
            self.stats.records += len(messages)
            self.stats.deleted += deleted
            self.stats.failed += len(failed_ids)
            self.stats.errors += invocation.failed
            self.stats.batch_sizes.append(len(messages))

    def _delete(self, sqs: Any, messages: list[dict[str, Any]]) -> int:
        deleted = 0
        for start in range(0, len(messages), SQS_RECEIVE_MAX):
            chunk = messages[start : start + SQS_RECEIVE_MAX]
            answer = sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)],
            )
            deleted += len(answer.get("Successful", []))
            for failure in answer.get("Failed", []):
                logger.warning("%s: could not delete a message: %s", self.queue_name, failure.get("Code"))
        return deleted

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        """One record of Lambda's SQS event."""
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _lambda_message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record


def _record_size(message: dict[str, Any]) -> int:
    return len(message.get("Body", "").encode("utf-8")) + 1024  # the record's other fields, generously


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # SQS answers StringValue/BinaryValue; Lambda's event spells them in camel case.
    attribute: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return attribute


def _reported_failures(response: Any, batch_ids: set[str]) -> set[str]:
    """The messages a ReportBatchItemFailures response fails, read as Lambda reads it.

    Success: no response, an empty one, or an empty or null batchItemFailures. A malformed
    response, or one naming a message that is not in the batch, fails the whole batch.
    """
    if response is None or response == {}:
        return set()
    if isinstance(response, str):
        try:
            response = json.loads(response)
        except ValueError:
            return set(batch_ids)
    if not isinstance(response, dict):
        return set(batch_ids)
    failures = response.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(batch_ids)
    failed = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            logger.warning("a batchItemFailures entry names no message of the batch: the whole batch failed")
            return set(batch_ids)
        failed.add(identifier)
    return failed


def sqs_event_sources(
    stack: LocalStack, functions: dict[str, LocalFunction], client_factory: Callable[[], Any]
) -> list[SqsEventSource]:
    queue_urls = {
        arn: stack.refs[logical_id]
        for (logical_id, attribute), arn in stack.attributes.items()
        if attribute == "Arn" and stack.template["Resources"][logical_id]["Type"] == "AWS::SQS::Queue"
    }
    sources = []
    for function in functions.values():
        for event_name, properties in function.events("SQS"):
            resolved = stack.resolve(properties)
            queue_arn = str(resolved["Queue"])
            if queue_arn not in queue_urls:
                raise ValueError(f"{function.logical_id}.{event_name}: queue {queue_arn} is not in the template")
            sources.append(
                SqsEventSource(
                    function, event_name, queue_arn, queue_urls[queue_arn], resolved, client_factory, stack.region
                )
            )
    return sources


# --------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class Schedule:
    """One schedule event of a function."""

    def __init__(self, stack: LocalStack, function: LocalFunction, event_name: str, kind: str, properties: dict):
        self.function = function
        self.event_name = event_name
        self.kind = kind  # "ScheduleV2" (EventBridge Scheduler) or "Schedule" (EventBridge rule)
        resolved = stack.resolve(properties)
        self.expression = str(resolved.get("ScheduleExpression") or resolved.get("Schedule") or "")
        self.enabled = str(resolved.get("State", "ENABLED")).upper() != "DISABLED" and (
            str(resolved.get("Enabled", True)).lower() != "false"
        )
        self.input = resolved.get("Input")
        self.region = stack.region
        self.account_id = stack.account_id
        self.rule_arn = f"arn:aws:events:{stack.region}:{stack.account_id}:rule/{function.logical_id}{event_name}"
        self.schedule_arn = (
            f"arn:aws:scheduler:{stack.region}:{stack.account_id}:schedule/default/{function.logical_id}{event_name}"
        )
        match = _RATE.match(self.expression.strip())
        self.period_seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")] if match else None
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        if not self.enabled:
            return f"{self.function.logical_id}: {self.expression} (disabled in the template)"
        if self.period_seconds is None:
            return f"{self.function.logical_id}: {self.expression} (not emulated; use the Invoke API)"
        return f"{self.function.logical_id}: {self.expression}"

    def event(self) -> Any:
        """What the scheduler hands the function."""
        if self.input is not None:
            text = self.input if isinstance(self.input, str) else json.dumps(self.input)
            return json.loads(self._with_context_attributes(text))
        if self.kind == "ScheduleV2":
            return {}  # [inf] EventBridge Scheduler without Input sends an empty JSON object
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region,
            "resources": [self.rule_arn],
            "detail": {},
        }

    def _with_context_attributes(self, text: str) -> str:
        # EventBridge Scheduler fills these placeholders of a target's Input for each run.
        if self.kind != "ScheduleV2":
            return text
        now = time.time()
        values = {
            "<aws.scheduler.scheduled-time>": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "<aws.scheduler.execution-id>": str(uuid.uuid4()),
            "<aws.scheduler.attempt-number>": "1",
            "<aws.scheduler.schedule-arn>": self.schedule_arn,
        }
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    def start(self) -> None:
        if self.enabled and self.period_seconds:
            self._thread = threading.Thread(target=self._run, name=f"schedule-{self.function.logical_id}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        assert self.period_seconds
        while not self._stop.wait(self.period_seconds):
            invocation = self.function.invoke(self.event())
            self.runs += 1
            if invocation.failed:
                logger.warning(
                    "%s (schedule %s) failed: %s",
                    self.function.logical_id,
                    self.expression,
                    (invocation.error or {}).get("errorType"),
                )


def schedules(stack: LocalStack, functions: dict[str, LocalFunction]) -> list[Schedule]:
    found = []
    for function in functions.values():
        for kind in ("ScheduleV2", "Schedule"):
            for event_name, properties in function.events(kind):
                found.append(Schedule(stack, function, event_name, kind, properties))
    return found

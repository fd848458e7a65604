"""One soak run: the local stack with Braze faults and sender kills, the clients, the wait, the count.

Timing is shortened so a run fits in minutes, through settings a user has too:

* template parameters: SenderTimeoutSeconds at its minimum, a one-second batching window, two
  pollers (SenderMaximumConcurrency's minimum) and smaller batches, so a kill throws away less;
* the sender's environment: one-second Braze timeouts (the sandbox stalls its timeout fault for
  two, so the sender gives up first) and a TIME_RESERVE_SECONDS that leaves each invocation
  `budget` seconds to call Braze;
* deletions (soak/load.py): the API's ORDER_FENCE_SECONDS is user_order.fence_seconds of the
  sender's Braze timeouts, the least the sender needs (a shorter fence only sends deletes back to
  the queue for the rest of it), about 40 s instead of 56; ORDER_HOLD_DELAY_SECONDS is 2 (20 by
  default), so objects held behind a delete follow it within seconds. The deletions start once the
  Braze outage is over (_Outage.over);
* the events queue's visibility timeout, set with SetQueueAttributes once the stack runs: the
  template makes it ten times SenderTimeoutSeconds, 300 s at least, which would hold a killed batch
  for five minutes. It stays above the longest a message can be held — the invocation that holds
  it plus the one before it (the local stack runs one invocation at a time, so the second poller's
  batch waits) plus the batching window — so no message is handed out twice while an invocation
  still works on it: that would be a duplicate of the soak's making, and it would show as one
  that no window explains.

The ingest API meets a queue that fails part of a request (_PartialQueue): every third /users/track
request that needs several messages gets its first one queued and the rest refused, so the API
answers 503 and the client retries. Messages are 16 KiB here (MAX_MESSAGE_BYTES' minimum), so requests of more
than about 60 objects need several. The report counts objects queued twice: it must be none.

Besides the steady faults, Braze has one outage, in the middle of one invocation (see _Outage). The
steady rates almost never exhaust a call's retries, so without it no batch would be partly
delivered, and the delivery ledger — and a kill right after writing it — would go untested.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from soak.kills import KILL_POINTS, OBJECTS_PER_CALL, InvocationRecord, KillPlan, KillSwitch
from soak.load import BLOCKED_USERS, DELETED_USER_SHARE, LoadResult, plan_requests, run_clients
from soak.report import Findings, analyse

SENDER = "BrazeSenderFunction"
EVENTS_QUEUE = "EventsQueue"
EVENTS_DLQ = "EventsDLQ"
REJECTED_BUCKET = "RejectedObjectsBucket"
SENDER_TIMEOUT_SECONDS = 30  # the template's minimum
BRAZE_TIMEOUT_SECONDS = 1.0
ORDER_HOLD_DELAY_SECONDS = 2
SANDBOX_STALL_SECONDS = 2.0  # longer than the sender's read timeout: it gives up, Braze did the work
OUTAGE_AT = 0.4  # of the objects sent


@dataclass
class SoakOptions:
    objects: int = 10_000
    clients: int = 4
    seed: int = 1
    kill_rate: float = 0.2  # share of sender invocations killed
    # One kill at every point first, so even a short run lands each of them.
    forced_kills: list[str] = field(default_factory=lambda: list(KILL_POINTS))
    spare_from_receive: int = 3
    budget_seconds: float = 6.0  # Braze time per sender invocation
    visibility_timeout_seconds: int = 20
    sender_batch_size: int = 10  # queue messages per invocation
    error_rate: float = 0.05
    rate_limited_rate: float = 0.05
    timeout_rate: float = 0.01
    drop_rate: float = 0.005
    drop_after_processing_rate: float = 0.005
    outage: bool = True
    drain_timeout_seconds: float = 600.0
    deleted_share: float = DELETED_USER_SHARE  # of the users, deleted while their objects are in flight


def stack_options(options: SoakOptions) -> Any:
    from braze_forwarder.user_order import fence_seconds
    from local.stack import StackOptions

    environment = {
        "BRAZE_CONNECT_TIMEOUT_SECONDS": str(BRAZE_TIMEOUT_SECONDS),
        "BRAZE_READ_TIMEOUT_SECONDS": str(BRAZE_TIMEOUT_SECONDS),
        "TIME_RESERVE_SECONDS": str(SENDER_TIMEOUT_SECONDS - options.budget_seconds),
        "ORDER_FENCE_SECONDS": str(fence_seconds(BRAZE_TIMEOUT_SECONDS, BRAZE_TIMEOUT_SECONDS)),
        "ORDER_HOLD_DELAY_SECONDS": str(ORDER_HOLD_DELAY_SECONDS),
    }
    return StackOptions(
        api_port=0,
        lambda_port=0,
        aws_port=0,
        sandbox_port=0,
        stack_name=f"soak-{uuid.uuid4().hex[:6]}",
        parameter_overrides={
            "SenderTimeoutSeconds": str(SENDER_TIMEOUT_SECONDS),
            "SenderBatchingWindowSeconds": "1",
            "SenderMaximumConcurrency": "2",
            "SenderBatchSize": str(options.sender_batch_size),
            "MaxMessageBytes": str(16 * 1024),  # several messages per large request (see _PartialQueue)
        },
        function_environment=environment,
        sandbox_error_rate=options.error_rate,
        sandbox_rate_limited_rate=options.rate_limited_rate,
        sandbox_timeout_rate=options.timeout_rate,
        sandbox_drop_rate=options.drop_rate,
        sandbox_seed=options.seed,
    )


def run(options: SoakOptions, say: Any = print) -> Findings:
    """Start the stack, send, wait until the queue is empty, count; the stack is stopped after."""
    from local.stack import Stack

    started = time.monotonic()
    seconds: dict[str, float] = {}
    stack = Stack(stack_options(options))
    switch = KillSwitch(
        KillPlan(
            rate=options.kill_rate,
            forced=list(options.forced_kills),
            seed=options.seed,
            spare_from_receive=options.spare_from_receive,
        )
    )
    try:
        stack.start()
        seconds["start"] = time.monotonic() - started
        _configure(stack, options)
        switch.install(stack.function(SENDER))
        say(f"  stack ready in {seconds['start']:.1f} s; sending")

        loading = time.monotonic()
        assert stack.api is not None
        run_id = uuid.uuid4().hex[:8]
        outage = _Outage(stack, options, switch)
        resends = _Resends()
        resends.install()
        partial_queue = _PartialQueue()
        partial_queue.install()
        load = run_clients(
            stack.api.url,
            stack.options.ingest_key,
            plan_requests(options.objects, options.seed, run_id, options.deleted_share),
            options.clients,
            on_progress=outage.progress,
            deletions_may_start=outage.over,
        )
        partial_queue.uninstall()
        seconds["load"] = time.monotonic() - loading
        say(f"  sent in {seconds['load']:.1f} s ({len(load.accepted):,} accepted); waiting for the queue to empty")

        draining = time.monotonic()
        drained = wait_until_empty(stack, options.drain_timeout_seconds)
        seconds["drain"] = time.monotonic() - draining
        resends.uninstall()
        findings = _findings(stack, switch, load, frozenset(resends.envelope_ids))
        findings.drained = drained
        findings.ingest_partial_failures = partial_queue.failures
        findings.ingest_objects_queued_before_503 = partial_queue.objects_queued
        if len(outage.window) == 2:
            began, ended = outage.window
            findings.outage_seconds = round(ended - began, 1)
            findings.outage_calls = sum(
                request.fault == "error" and began <= request.time <= ended for request in stack.sandbox.requests
            )
    finally:
        stack.stop()
    seconds["total"] = time.monotonic() - started
    findings.seconds = {name: round(value, 1) for name, value in seconds.items()}
    return findings


class _Resends:
    """Notes the envelopes of track objects the sender sends back to the queue (held behind a delete):
    they carry a delay (ORDER_HOLD_DELAY_SECONDS), which the API's track messages never do. The
    functions run in this process, so the queue module they share is the one wrapped."""

    def __init__(self) -> None:
        from braze_forwarder import queue

        self.queue = queue
        self.real = queue.send_messages
        self.lock = threading.Lock()
        self.envelope_ids: set[str] = set()

    def install(self) -> None:
        self.queue.send_messages = self._send

    def uninstall(self) -> None:
        self.queue.send_messages = self.real

    def _send(self, queue_url: str, bodies: Any, *, delay_seconds: int = 0) -> None:
        if delay_seconds:
            envelopes = [self.queue.decode(body) for body in bodies]
            with self.lock:
                self.envelope_ids.update(e.id for e in envelopes if e.kind == "track")
        self.real(queue_url, bodies, delay_seconds=delay_seconds)


class _PartialQueue:
    """SQS accepting the first message of a request and refusing the rest, as it may under load.

    Every EVERY-th call that sends several messages without a delay (the API's track requests; its
    deletes and the sender's re-sends wait in the queue); the ingest function runs in this process,
    so its queue module is the one patched.
    """

    EVERY = 3

    def __init__(self) -> None:
        from braze_forwarder import queue

        self.queue = queue
        self.real = queue.send_messages
        self.lock = threading.Lock()
        self.calls = 0
        self.failures = 0
        self.objects_queued = 0

    def install(self) -> None:
        self.queue.send_messages = self._send

    def uninstall(self) -> None:
        self.queue.send_messages = self.real

    def _send(self, queue_url: str, bodies: Any, **options: Any) -> None:
        if len(bodies) < 2 or options.get("delay_seconds"):
            return self.real(queue_url, bodies, **options)
        with self.lock:
            self.calls += 1
            hit = self.calls % self.EVERY == 0
        if not hit:
            return self.real(queue_url, bodies, **options)
        self.real(queue_url, bodies[:1], **options)
        with self.lock:
            self.failures += 1
            self.objects_queued += len(self.queue.decode(bodies[0]).items)
        raise self.queue.QueueUnavailable(
            f"SQS did not accept {len(bodies) - 1} of {len(bodies)} messages (soak fault)",
            queued=1,
            total=len(bodies),
            queued_positions=frozenset({0}),
        )


def _configure(stack: Any, options: SoakOptions) -> None:
    assert stack.sandbox is not None and stack.resources is not None
    config = stack.sandbox.config  # read by every request: set before the first one
    config.rate_limit_header_style = "rotate"  # every 429 header variant, in turn
    config.drop_after_processing_rate = options.drop_after_processing_rate
    config.timeout_sleep_seconds = SANDBOX_STALL_SECONDS
    config.blocked_external_ids = set(BLOCKED_USERS)
    stack.client("sqs").set_queue_attributes(
        QueueUrl=stack.resources.refs[EVENTS_QUEUE],
        Attributes={"VisibilityTimeout": str(options.visibility_timeout_seconds)},
    )
    # Nothing is queued yet, and the pollers do not long-poll: no receive can still hand out a
    # message under the old timeout (300 s).


class _Outage:
    """Braze answers every call 500 from the first 2xx of one invocation until that invocation ends.

    Once OUTAGE_AT of the objects are sent and the forced kills have landed (during an outage they
    would find no 2xx to land after), in the next invocation with more calls than go out at once,
    so that some are sent after it began. Tied to an invocation rather than to a time, so it cannot
    fall between batches: the calls after its start fail for good, the ones before it stand, and
    the batch is partly delivered. An outage that refused no call is tried again.
    """

    def __init__(self, stack: Any, options: SoakOptions, switch: KillSwitch) -> None:
        self.window: list[float] = []  # start and end, epoch seconds
        self._sandbox = stack.sandbox
        self._in_flight = int(stack.environment.get("BRAZE_MAX_IN_FLIGHT", 8))
        self._options = options
        self._switch = switch
        self._sent = 0
        self._during: int | None = None  # the invocation it happens in
        self._steady = 0.0
        self._refused_before = 0
        self._lock = threading.Lock()
        self.over = threading.Event()  # the deletions start after it (soak/load.py)
        if options.outage:
            switch.listeners.append(self._on)
        else:
            self.over.set()

    def progress(self, load: LoadResult) -> None:
        self._sent = load.sent

    def _on(self, event: str, invocation: InvocationRecord) -> None:
        config = self._sandbox.config
        with self._lock:
            if event == "2xx" and not self.window and self._due(invocation):
                self._during = invocation.number
                self.window.append(time.time())
                self._refused_before = self._refused()
                self._steady, config.error_rate = config.error_rate, 1.0
            elif event == "end" and invocation.number == self._during and len(self.window) == 1:
                config.error_rate = self._steady
                self.window.append(time.time())
                if self._refused() == self._refused_before:
                    self.window.clear()  # it met no call: the next invocation, then
                else:
                    self.over.set()

    def _due(self, invocation: InvocationRecord) -> bool:
        return (
            invocation.answers_2xx == 1
            and invocation.objects > self._in_flight * OBJECTS_PER_CALL
            and self._sent >= OUTAGE_AT * self._options.objects
            and not invocation.dead
            and not invocation.spared  # like the kills: not on a message's last receives
            and self._switch.forced_landed()
        )

    def _refused(self) -> int:
        return int(self._sandbox.stats()["faults_injected"].get("error", 0))


def wait_until_empty(stack: Any, timeout: float) -> bool:
    """Until the events queue holds nothing (visible, in flight or delayed) and no poller holds a batch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drained, awaiting = stack.wait_until_drained(timeout=max(0.1, deadline - time.monotonic()))
        depths = stack.queue_depths()[EVENTS_QUEUE]
        if drained and awaiting == 0 and not any(depths.values()):
            return True
        time.sleep(0.5)
    return False


def _findings(stack: Any, switch: KillSwitch, load: LoadResult, resent: frozenset[str]) -> Findings:
    assert stack.sandbox is not None
    sender = stack.function(SENDER)
    findings = analyse(
        load,
        list(stack.sandbox.requests),
        stack.sandbox.stats(),
        _kept_rejections(stack),
        _dlq_bodies(stack),
        switch,
        resent,
    )
    findings.visibility_timeout_seconds = int(
        stack.client("sqs").get_queue_attributes(
            QueueUrl=stack.resources.refs[EVENTS_QUEUE], AttributeNames=["VisibilityTimeout"]
        )["Attributes"]["VisibilityTimeout"]
    )
    findings.invocations_failed = sender.stats.errors
    findings.invocations_timed_out = sender.stats.timeouts
    return findings


def _kept_rejections(stack: Any) -> list[dict[str, Any]]:
    s3 = stack.client("s3")
    bucket = stack.resources.refs[REJECTED_BUCKET]
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode()
            records.extend(json.loads(line) for line in body.splitlines() if line.strip())
    return records


def _dlq_bodies(stack: Any) -> list[str]:
    sqs = stack.client("sqs")
    url = stack.resources.refs[EVENTS_DLQ]
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(message["Body"] for message in messages)

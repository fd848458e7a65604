"""Issue #20's Done-means run through the local stack: a file imported and delivered at the shared budget.

`local.stack.Stack` runs everything as it runs for `make run`: moto's server for S3, SQS and
DynamoDB, the template's functions invoked by the stack's SQS event sources (ImportWorkerFunction
by ImportTasksQueue, BrazeSenderFunction by EventsQueue), and the Braze sandbox enforcing
`/users/track`'s limit scaled down (SANDBOX_REQUESTS_PER_3S) with the senders' shared budget at
0.8 of it (the template's BrazeTrackRequestsPerSecond). The file is dropped in ImportBucket under
`users/`: the bucket's notification, ImportDropsQueue and ImportStarterFunction start the import.

Counted:
- rows queued: every envelope as SQS took it (a distinct SQS message id), read where the sender
  received it, so a copy SQS holds twice is counted twice whoever sent it; "queued twice" is the
  rows of the copies;
- rows delivered (and twice): the objects of every `/users/track` call Braze (the sandbox) accepted;
- lost: rows of the file Braze never accepted;
- 429s and calls, and accepted calls per second against the budget: over the whole run (first to
  last call) and during a backlog only — the seconds when EventsQueue held undelivered messages,
  visible or in a sender's hands (sampled every half second): the run's start (the queue filling)
  and its tail (a killed range's last chunks, queued after the rest was delivered) are not a
  backlog, and no budget can be used on messages that do not exist yet. "Idle" counts the sampled
  half seconds with messages undelivered and not one call: budget the product left unused.

Kills: the import worker's execution environment dies at random chunks, at one of four points —
while the chunk is built (before the range notes its send), after the note and before SQS took it,
after SQS took it and before its acknowledgement, or right after the acknowledgement — raised from
its own SQS and DynamoDB calls (botocore's events on the worker's clients, for the worker's
invocation thread only; nothing in the product is patched).
The invocation fails as a crash does: its task comes back after ImportTasksQueue's visibility
timeout, when the dead worker's lease is over, and the range resumes from its last acknowledgement.
A task on its third receive is spared (five receives send it to the DLQ: the DLQ's story, not this).

`python -m bench.import_stack --rows N` sizes the file; `make bench` runs the small default, and
`make bench IMPORT_ROWS=1000000` the Done-means million (about half an hour on two shared cores).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.common import print_table

DEFAULT_ROWS = 50_000
# Braze's 3,000 /users/track requests per 3 s scaled down 20x; the shared budget at 0.8 of it.
SANDBOX_REQUESTS_PER_3S = 150
BUDGET_PER_SECOND = 40
# ImportWorkerTimeoutSeconds at its minimum (60 s, the range's lease too); a crashed worker's task
# comes back after ImportTasksQueue's visibility timeout: the template's is ten timeouts, here just
# over one, so a killed range waits a minute, not ten.
WORKER_TIMEOUT_SECONDS = 60
TASK_VISIBILITY_SECONDS = 65
LEASE_SECONDS: int | None = None  # None: the template's (the worker's timeout); the smoke test's are shorter
# None: the defaults (a resumed range whose interrupted chunk cannot be placed yet looks again after
# 60 s; an empty events queue counts once the chunk's send is 60 s old); the smoke test's are shorter.
RESUME_RECHECK_SECONDS: int | None = None
QUEUE_COUNTS_SETTLE_SECONDS: int | None = None
CHUNK_ROWS = 1000
RANGES = 8  # the file is cut into about this many ranges (IMPORT_RANGE_BYTES), whatever its size
KILLS = 8  # about this many worker kills in a killed run, whatever the file's size
SPARE_FROM_RECEIVE = 3

BEFORE_NOTE = "before_note"  # while the chunk is read, mapped and validated: before the range notes its send
BEFORE_SEND = "before_send"  # the range noted the chunk's send; SQS has not taken it
AFTER_SEND = "after_send"  # SQS took the chunk; its acknowledgement is never written
AFTER_ACK = "after_ack"
KILL_POINTS = (BEFORE_NOTE, BEFORE_SEND, AFTER_SEND, AFTER_ACK)
WORKER = "ImportWorkerFunction"
SENDER = "BrazeSenderFunction"


class WorkerKilled(BaseException):
    """The import worker's execution environment died here (a BaseException: nothing catches it)."""


@dataclass
class StackResult:
    rows: int
    kills: Counter[str]
    seconds: float
    rows_queued: int
    rows_queued_twice: int
    copies_by_kill: Counter[str]  # rows queued twice, by the kill point that caused them
    window_not_resent: int  # after-send kills whose chunk was not queued again (found in the delivery ledger)
    deferrals: int  # a resumed range's task sent back with a delay: its interrupted chunk could not be placed yet
    sends_noted: int  # chunks whose send a range noted (one conditional UpdateItem each)
    note_seconds: float  # the worker's time in those writes
    worker_seconds: float  # the worker's invocations, all together
    rows_delivered: int
    rows_delivered_twice: int
    rows_lost: int
    calls: int
    rate_limited: int
    calls_seconds: float
    ledger_writes: int  # BatchWriteItem and PutItem requests on DeliveryLedgerTable
    worker_invocations: int
    sender_invocations: int
    rss_mib: float  # the process's resident memory as the run ends, moto's server and the sandbox included
    backlog_seconds: float = 0.0  # time EventsQueue had messages waiting (sampled)
    backlog_calls: int = 0  # accepted calls made in that time
    idle_backlog_seconds: float = 0.0  # sampled intervals with messages waiting and not one call
    # The same once every row was queued: the worker no longer shares the process's one core with the senders.
    queued_backlog_seconds: float = 0.0
    queued_backlog_calls: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def delivered_calls_per_second(self) -> float:
        # Budgeted calls leave at the start of each 0.5 s window: n windows span n - 1 (drill's rule).
        return (self.calls - self.rate_limited) / (self.calls_seconds + 0.5)

    @property
    def backlog_calls_per_second(self) -> float:
        return self.backlog_calls / self.backlog_seconds if self.backlog_seconds else 0.0

    @property
    def queued_backlog_calls_per_second(self) -> float:
        return self.queued_backlog_calls / self.queued_backlog_seconds if self.queued_backlog_seconds else 0.0


def users_ndjson(rows: int) -> bytes:
    return b"".join(
        json.dumps({"external_id": f"user-{n}", "plan": ["free", "pro"][n % 2], "visits": n}).encode() + b"\n"
        for n in range(rows)
    )


class WorkerKills:
    """Kills the worker's invocations at random chunks, from its SQS and DynamoDB calls."""

    def __init__(self, rate: float, events_queue_url: str, seed: int) -> None:
        self.rate = rate
        self.events_queue_url = events_queue_url
        self.rng = random.Random(seed)
        self.kills: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.local = threading.local()  # the invocation's receive count and planned kill
        self.window_envelopes: dict[str, str] = {}  # envelope ids SQS took before a kill → kill point
        self.tasks_queue_url = ""
        self.deferrals = 0
        self.notes = 0  # the ranges' notes of a chunk's send (one conditional UpdateItem each) ...
        self.note_seconds = 0.0  # ... and the time the worker spent in them

    def wrap(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def environment(event: Any, context: Any) -> Any:
            records = event.get("Records", [])
            received = max((int(r["attributes"].get("ApproximateReceiveCount", 1)) for r in records), default=1)
            self.local.spared = received >= SPARE_FROM_RECEIVE
            self.local.planned = None
            return handler(event, context)

        return environment

    def register(self, sqs_events: Any, dynamodb_events: Any) -> None:
        dynamodb_events.register("before-parameter-build.dynamodb.UpdateItem", self._before_note)
        dynamodb_events.register("after-call.dynamodb.UpdateItem", self._after_note)
        sqs_events.register("before-parameter-build.sqs.SendMessageBatch", self._before_send)
        sqs_events.register("after-call.sqs.SendMessageBatch", self._after_send)
        dynamodb_events.register("after-call.dynamodb.TransactWriteItems", self._after_ack)

    def unregister(self, sqs_events: Any, dynamodb_events: Any) -> None:
        dynamodb_events.unregister("before-parameter-build.dynamodb.UpdateItem", self._before_note)
        dynamodb_events.unregister("after-call.dynamodb.UpdateItem", self._after_note)
        sqs_events.unregister("before-parameter-build.sqs.SendMessageBatch", self._before_send)
        sqs_events.unregister("after-call.sqs.SendMessageBatch", self._after_send)
        dynamodb_events.unregister("after-call.dynamodb.TransactWriteItems", self._after_ack)

    def _in_worker(self) -> bool:
        return threading.current_thread().name == f"invoke-{WORKER}" and not getattr(self.local, "spared", True)

    def _before_note(self, params: dict[str, Any], **_: Any) -> None:
        """A chunk's fate is drawn where its send is noted on the range (records.ImportsTable.note_sending)."""
        if threading.current_thread().name != f"invoke-{WORKER}":
            return
        if "sending_chunk" not in params.get("UpdateExpression", "").split(" = ")[0]:
            return
        self.local.note_started = time.perf_counter()
        if getattr(self.local, "spared", True):
            return
        with self.lock:
            point = self.rng.choice(KILL_POINTS) if self.rng.random() < self.rate else None
        self.local.planned = point
        if point == BEFORE_NOTE:
            self._kill(BEFORE_NOTE)

    def _after_note(self, **_: Any) -> None:
        started = getattr(self.local, "note_started", None)
        if started is not None:
            self.local.note_started = None
            with self.lock:
                self.notes += 1
                self.note_seconds += time.perf_counter() - started

    def _before_send(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params.get("QueueUrl") == self.tasks_queue_url and any(e.get("DelaySeconds") for e in params["Entries"]):
            with self.lock:
                self.deferrals += 1
        if not self._in_worker() or params.get("QueueUrl") != self.events_queue_url:
            return
        context["bench_envelopes"] = [json.loads(entry["MessageBody"])["id"] for entry in params["Entries"]]
        if self.local.planned == BEFORE_SEND:
            self._kill(BEFORE_SEND)

    def _after_send(self, context: dict[str, Any], parsed: dict[str, Any], **_: Any) -> None:
        if not self._in_worker() or "bench_envelopes" not in context:
            return
        if self.local.planned == AFTER_SEND:
            taken = {int(entry["Id"]) for entry in parsed.get("Successful", [])}
            with self.lock:
                for position, envelope in enumerate(context["bench_envelopes"]):
                    if position in taken:
                        self.window_envelopes[envelope] = AFTER_SEND
            self._kill(AFTER_SEND)

    def _after_ack(self, **_: Any) -> None:
        if self._in_worker() and self.local.planned == AFTER_ACK:
            self._kill(AFTER_ACK)

    def _kill(self, point: str) -> None:
        self.local.planned = None
        self.local.spared = True  # a dead environment makes no further calls of this invocation
        with self.lock:
            self.kills[point] += 1
        raise WorkerKilled(point)


class QueueSampler:
    """EventsQueue's undelivered messages (visible or held by a sender) every half second, on the
    sandbox's clock (time.time)."""

    def __init__(self, sqs: Any, queue_url: str, interval: float = 0.5) -> None:
        self.sqs, self.queue_url, self.interval = sqs, queue_url, interval
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-queue-sampler", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
            self.samples.append((time.time(), sum(int(attributes[name]) for name in names)))

    def backlog(self, accepted_call_times: list[float], since: float = 0.0) -> tuple[float, int, float]:
        """(seconds with messages waiting, accepted calls in them, of those seconds the ones without a
        call), counting from `since` (time.time)."""
        times = sorted(accepted_call_times)
        seconds = idle = 0.0
        calls = 0
        for (start, waiting), (end, _) in zip(self.samples, self.samples[1:], strict=False):
            if not waiting or start < since:
                continue
            made = bisect.bisect_left(times, end) - bisect.bisect_left(times, start)
            seconds += end - start
            calls += made
            if not made:
                idle += end - start
        return seconds, calls, idle


class QueuedRows:
    """Every envelope as SQS took it, read where the sender receives it: (SQS message id → envelope)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, tuple[str, int]] = {}  # message id → (envelope id, rows)

    def wrap(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        def environment(event: Any, context: Any, **options: Any) -> Any:
            seen = {}
            for record in event.get("Records", []):
                if record["messageId"] not in self.messages:
                    body = json.loads(record["body"])
                    seen[record["messageId"]] = (body["id"], len(body["items"]))
            with self.lock:
                self.messages.update(seen)
            return handler(event, context, **options)

        return environment

    def copies(self) -> dict[str, tuple[int, int]]:
        """envelope id → (times SQS took it, rows)."""
        found: dict[str, tuple[int, int]] = {}
        for envelope, rows in self.messages.values():
            times, _ = found.get(envelope, (0, rows))
            found[envelope] = (times + 1, rows)
        return found


def run(rows: int, *, kill_rate: float, seed: int = 7, say: Callable[[str], None] = print) -> StackResult:
    """Start a local stack, drop a file of `rows` rows, wait until it is delivered; count."""
    from braze_forwarder import aws
    from braze_forwarder.config import settings
    from braze_forwarder.imports import records
    from local.rate_budget_drill import TableOperations
    from local.stack import Stack, StackOptions

    body = users_ndjson(rows)
    options = StackOptions(
        api_port=0,
        lambda_port=0,
        aws_port=0,
        sandbox_port=0,
        stack_name=f"imp-{uuid.uuid4().hex[:6]}",
        parameter_overrides={
            "BrazeTrackRequestsPerSecond": str(BUDGET_PER_SECOND),
            "RateBudgetEnabled": "true",
            "RateBudgetLeaseRequests": "4",  # a fifth of a 0.5 s window's 20 calls
            "ImportChunkRows": str(CHUNK_ROWS),
            "ImportWorkerTimeoutSeconds": str(WORKER_TIMEOUT_SECONDS),
            "SenderBatchingWindowSeconds": "1",
        },
    )
    # A fresh stack listens on fresh ports: the functions' cached clients and settings must not
    # remember the previous one's (several runs share this process).
    aws.reset()
    settings.cache_clear()
    stack = Stack(options)
    started = time.monotonic()
    kills = WorkerKills(kill_rate, "", seed)
    queued = QueuedRows()
    try:
        stack.start()
        assert stack.sandbox is not None and stack.resources is not None
        refs = stack.resources.refs
        stack.sandbox.config.rate_limit_requests = SANDBOX_REQUESTS_PER_3S
        stack.client("sqs").set_queue_attributes(
            QueueUrl=refs["ImportTasksQueue"], Attributes={"VisibilityTimeout": str(TASK_VISIBILITY_SECONDS)}
        )
        # Ranges sized to the file (the template's ImportRangeMB starts at 8 MB): the functions read
        # this process's environment, once per execution environment (settings are cached).
        os.environ["IMPORT_RANGE_BYTES"] = str(max(64 * 1024, len(body) // RANGES + 1))
        if LEASE_SECONDS is not None:
            os.environ["IMPORT_LEASE_SECONDS"] = str(LEASE_SECONDS)
        if RESUME_RECHECK_SECONDS is not None:
            os.environ["IMPORT_RESUME_RECHECK_SECONDS"] = str(RESUME_RECHECK_SECONDS)
        if QUEUE_COUNTS_SETTLE_SECONDS is not None:
            os.environ["IMPORT_QUEUE_COUNTS_SETTLE_SECONDS"] = str(QUEUE_COUNTS_SETTLE_SECONDS)
        settings.cache_clear()
        kills.events_queue_url = refs["EventsQueue"]
        kills.tasks_queue_url = refs["ImportTasksQueue"]
        sampler = QueueSampler(stack.client("sqs"), refs["EventsQueue"])
        sampler.thread.start()
        sqs_events, dynamodb_events = aws.client("sqs").meta.events, aws.client("dynamodb").meta.events
        kills.register(sqs_events, dynamodb_events)
        ledger = TableOperations(refs["DeliveryLedgerTable"])
        dynamodb_events.register("before-parameter-build.dynamodb", ledger)
        stack.function(WORKER).wrap_handler(kills.wrap)
        stack.function(SENDER).wrap_handler(queued.wrap)
        table = records.ImportsTable(refs["ImportsTable"], dynamodb=stack.client("dynamodb"))

        say(f"  stack ready in {time.monotonic() - started:.0f} s; dropping {rows:,} rows ({len(body) / 1e6:.1f} MB)")
        dropped = time.monotonic()
        stack.client("s3").put_object(Bucket=refs["ImportBucket"], Key=f"users/bench-{rows}.ndjson", Body=body)
        del body
        import_id = _wait_for_import(table, say)
        all_queued_at = time.time()
        while not stack.wait_until_drained(timeout=30, settle=2.0, queues=["ImportTasksQueue", "EventsQueue"])[0]:
            say(f"    {stack.sandbox.stats()['calls'].get('/users/track', 0):,} /users/track calls")
        seconds = time.monotonic() - dropped
        sampler.stop.set()
        sampler.thread.join()
        kills.unregister(sqs_events, dynamodb_events)
        dynamodb_events.unregister("before-parameter-build.dynamodb", ledger)
        record = table.get(import_id)
        notes = []
        if record is None or record.status != records.FINISHED:
            notes.append(f"import {import_id} ended {record.status if record else 'missing'}")
        dlq = stack.queue_depths().get("ImportTasksDLQ", {})
        if any(dlq.values()):
            notes.append(f"ImportTasksDLQ holds {dlq}")
        delivered: Counter[str] = Counter()
        times = []
        accepted_times = []
        calls = rate_limited = 0
        for request in stack.sandbox.requests:
            if request.path != "/users/track":
                continue
            calls += 1
            times.append(request.time)
            if request.status == 429:
                rate_limited += 1
            elif request.status is not None and request.status < 300:
                accepted_times.append(request.time)
                delivered.update(obj["external_id"] for obj in request.json.get("attributes", []))
        backlog_seconds, backlog_calls, idle_backlog_seconds = sampler.backlog(accepted_times)
        queued_backlog_seconds, queued_backlog_calls, _ = sampler.backlog(accepted_times, since=all_queued_at)
        copies = queued.copies()
        by_kill: Counter[str] = Counter()
        for envelope, (times_taken, envelope_rows) in copies.items():
            if times_taken > 1:
                by_kill[kills.window_envelopes.get(envelope, "other")] += (times_taken - 1) * envelope_rows
        window_not_resent = sum(copies.get(envelope, (0, 0))[0] == 1 for envelope in kills.window_envelopes)
        missing = sum(1 for n in range(rows) if f"user-{n}" not in delivered)
        return StackResult(
            rows=rows,
            kills=Counter(kills.kills),
            seconds=seconds,
            rows_queued=sum(times_taken * envelope_rows for times_taken, envelope_rows in copies.values()),
            rows_queued_twice=sum(by_kill.values()),
            copies_by_kill=by_kill,
            window_not_resent=window_not_resent,
            deferrals=kills.deferrals,
            sends_noted=kills.notes,
            note_seconds=kills.note_seconds,
            worker_seconds=stack.function(WORKER).stats.seconds,
            rows_delivered=len(delivered),
            rows_delivered_twice=sum(count - 1 for count in delivered.values() if count > 1),
            rows_lost=missing,
            calls=calls,
            rate_limited=rate_limited,
            calls_seconds=max(times) - min(times) if times else 0.0,
            ledger_writes=ledger.counts["BatchWriteItem"] + ledger.counts["PutItem"],
            worker_invocations=stack.function(WORKER).stats.invocations,
            sender_invocations=stack.function(SENDER).stats.invocations,
            rss_mib=_resident_mib(),
            backlog_seconds=backlog_seconds,
            backlog_calls=backlog_calls,
            idle_backlog_seconds=idle_backlog_seconds,
            queued_backlog_seconds=queued_backlog_seconds,
            queued_backlog_calls=queued_backlog_calls,
            notes=notes,
        )
    finally:
        stack.stop()
        _forget_the_stack()
        os.environ.pop("IMPORT_RANGE_BYTES", None)
        for name in ("IMPORT_LEASE_SECONDS", "IMPORT_RESUME_RECHECK_SECONDS", "IMPORT_QUEUE_COUNTS_SETTLE_SECONDS"):
            os.environ.pop(name, None)
        settings.cache_clear()


def _forget_the_stack() -> None:
    """What the functions keep for their execution environment (clients, key holders, the secrets
    provider, the sender's stores) names this stack's ports: the next run's stack has others."""
    from aws_lambda_powertools.utilities import parameters

    from braze_forwarder import aws
    from functions.braze_sender.app import reset as reset_sender

    aws.reset()
    parameters.clear_caches()
    reset_sender()


def _resident_mib() -> float:
    with open("/proc/self/status") as status:  # Linux; elsewhere the figure is left out
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _wait_for_import(table: Any, say: Callable[[str], None]) -> str:
    """The started import's id, once every range is acknowledged (or the import stopped)."""
    from braze_forwarder.imports import records

    last = 0.0
    while True:
        found = table.recent(1)
        if found and found[0].status not in records.ACTIVE:
            return str(found[0].import_id)
        if found and time.monotonic() - last > 30:
            record = found[0]
            say(f"    {record.rows_queued:,} rows queued, {record.ranges_done}/{record.ranges_total} ranges done")
            last = time.monotonic()
        time.sleep(1.0)


def measure(rows: int, kill_rates: tuple[float, ...] | None = None) -> list[StackResult]:
    """Both runs, the functions' logs (thousands of lines) sent to a file rather than the terminal."""
    if kill_rates is None:
        kill_rates = (0.0, min(0.5, KILLS / max(1, rows // CHUNK_ROWS)))
    log_path = os.path.join(tempfile.gettempdir(), f"bench-import-stack-{os.getpid()}.log")
    results = []
    with _output_to(log_path) as say:
        say(f"  the functions' logs: {log_path}")
        for kill_rate in kill_rates:
            results.append(run(rows, kill_rate=kill_rate, say=say))
            say(f"  {' | '.join(_row(results[-1]))}")
    return results


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[Callable[[str], None]]:
    """Send this process's stdout and stderr (every thread's, Powertools' handlers included) to a file;
    yield a `say` that still reaches the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield lambda text: print(text, file=terminal)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)
            terminal.close()


def _label(result: StackResult) -> str:
    kills = sum(result.kills.values())
    if not kills:
        return f"{result.rows:,} rows, no kills"
    points = ", ".join(f"{result.kills[point]} {point.replace('_', ' ')}" for point in KILL_POINTS)
    return f"{result.rows:,} rows, {kills} worker kills ({points})"


def _row(result: StackResult) -> list[str]:
    rate = result.delivered_calls_per_second
    backlog_rate = result.backlog_calls_per_second
    window = result.copies_by_kill.get(AFTER_SEND, 0)
    label = _label(result)
    if result.notes:  # something the figures alone would hide (an import not finished, a DLQ)
        label += " — " + "; ".join(result.notes)
    return [
        label,
        f"{result.rows_lost}",
        f"{result.rows_queued_twice:,} ({window:,} after-send kills; {result.window_not_resent} not resent;"
        f" {result.deferrals} deferrals)",
        f"{result.rows_delivered_twice}",
        f"{result.rate_limited} / {result.calls:,} ({result.rate_limited / (result.calls or 1):.2%})",
        f"{rate:.1f}/s ({rate / BUDGET_PER_SECOND:.2f})",
        f"{backlog_rate:.1f}/s ({backlog_rate / BUDGET_PER_SECOND:.2f}) over {result.backlog_seconds:.0f} s;"
        f" idle {result.idle_backlog_seconds:.1f} s; once all was queued"
        f" {result.queued_backlog_calls_per_second / BUDGET_PER_SECOND:.2f} over {result.queued_backlog_seconds:.0f} s",
        f"{result.ledger_writes:,}",
        f"{result.worker_invocations} / {result.sender_invocations}",
        f"{result.sends_noted:,} notes, {result.note_seconds / max(1, result.sends_noted) * 1000:.1f} ms each,"
        f" {result.note_seconds / max(result.worker_seconds, 1e-9):.1%} of the worker's {result.worker_seconds:.0f} s",
        f"{result.seconds:.0f} s",
        f"{result.rss_mib:,.0f} MiB",
    ]


def main(rows: int | None = None, kill_rates: tuple[float, ...] | None = None) -> None:
    rows = rows or int(os.environ.get("IMPORT_ROWS") or DEFAULT_ROWS)
    table = [_row(result) for result in measure(rows, kill_rates)]
    print_table(
        "Import through the local stack: a file dropped in ImportBucket, fanned out and delivered at the budget",
        ["run", "lost", "queued twice", "delivered twice", "429s / calls", "accepted calls (÷ budget)",
         "during a backlog (÷ budget)",
         "ledger writes", "worker / sender invocations", "in-flight notes", "time", "RSS at the end"],
        table,
        f"moto server + the stack's event sources + the Braze sandbox at {SANDBOX_REQUESTS_PER_3S} /users/track per "
        f"3 s (Braze's 3,000 ÷ 20), budget {BUDGET_PER_SECOND}/s (0.8); ~{RANGES} ranges, {CHUNK_ROWS}-row chunks; "
        f"~{KILLS} kills a run, a quarter at each point; a killed task returns after {TASK_VISIBILITY_SECONDS} s. "
        "IMPORT_ROWS=N sizes the file.",
    )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="rows in the file (default IMPORT_ROWS or 50,000)")
    parser.add_argument("--kill-rate", type=float, default=None, help="one run only, killing this share of chunks")
    arguments = parser.parse_args()
    main(arguments.rows, None if arguments.kill_rate is None else (arguments.kill_rate,))

"""Several sender invocations draining a backlog at once, against the Braze sandbox's rate limit.

Each invocation is its own Sender with its own budget holder (as separate Lambda execution
environments are), all in threads of this process, sharing the stack's RateBudgetTable (moto) — or,
with the budget off, each alone with its own rate gate and Braze's 429s. The tests and `make bench`
read the figures: calls, 429s, the rate delivered calls reached, and the budget table's operations
(counted on the DynamoDB client as they are sent).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from braze_forwarder import aws, queue
from braze_forwarder.braze.client import BrazeClient
from braze_forwarder.braze.credentials import ApiKey
from braze_forwarder.config import SenderSettings
from braze_forwarder.delivery.ledger import DynamoLedger
from braze_forwarder.delivery.rate_budget import (
    TRACK,
    WINDOW_SECONDS,
    DynamoBudgetStore,
    NoBudget,
    RateBudget,
    SharedRateBudget,
    window_requests,
)
from braze_forwarder.delivery.sender import Sender, SenderParts
from braze_forwarder.delivery_model import Outcome
from braze_forwarder.rejects import S3Rejects
from braze_forwarder.user_order import OrderStore
from local.braze_sandbox import BrazeSandbox
from local.resources import LocalStack


@dataclass(frozen=True)
class DrillResult:
    budget_enabled: bool
    senders: int
    seconds: float  # the whole run, from the invocations' start to the last one's end
    calls_seconds: float  # from the first Braze call to the last
    calls: int  # Braze calls made, 429s included
    rate_limited: int
    objects_delivered: int
    objects_failed: int
    budget_writes: int  # UpdateItem calls on RateBudgetTable (a refused conditional write is billed too)
    budget_reads: int

    @property
    def delivered_calls_per_second(self) -> float:
        """The sustained rate: calls Braze accepted per second while calls were being made.

        Budgeted calls leave at the start of each budget window, so n windows of calls span n - 1
        windows from the first call to the last: the span is counted one window longer.
        """
        return (self.calls - self.rate_limited) / (self.calls_seconds + WINDOW_SECONDS[TRACK])

    @property
    def rate_limited_share(self) -> float:
        return self.rate_limited / self.calls if self.calls else 0.0


class TableOperations:
    """Counts the DynamoDB operations sent for one table, by operation name."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:  # before-parameter-build
        # A batch request names its tables in RequestItems; it counts once (one request).
        if params.get("TableName") == self.table or self.table in params.get("RequestItems", {}):
            with self._lock:
                self.counts[model.name] += 1


class AtomicWrites:
    """Makes moto's DynamoDB apply one request at a time, as DynamoDB applies a conditional write to
    an item: moto checks a condition and writes in separate steps without a lock, so two threads'
    conditional ADDs can both pass and lease a window twice over."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def register(self, events: Any) -> None:
        events.register("before-call.dynamodb", self._enter)
        events.register("after-call.dynamodb", self._leave)
        events.register("after-call-error.dynamodb", self._leave)

    def unregister(self, events: Any) -> None:
        events.unregister("before-call.dynamodb", self._enter)
        events.unregister("after-call.dynamodb", self._leave)
        events.unregister("after-call-error.dynamodb", self._leave)

    def _enter(self, **_: Any) -> None:
        self._lock.acquire()

    def _leave(self, **_: Any) -> None:
        self._lock.release()


def drill_settings(
    stack: LocalStack,
    braze_url: str,
    *,
    budget_enabled: bool,
    objects_per_call: int = 75,
    track_requests_per_second: float = 20.0,
    lease_requests: int = 10,
    in_flight: int = 4,
) -> SenderSettings:
    """A sender's settings against the sandbox and the stack's tables, retrying 429s for as long as it takes."""
    return SenderSettings(
        braze_rest_endpoint=braze_url,
        braze_api_key_secret_arn=stack.refs["BrazeApiKeySecret"],
        braze_track_batch_limit=objects_per_call,
        braze_max_in_flight=in_flight,
        braze_connect_timeout_seconds=2.0,
        braze_read_timeout_seconds=5.0,
        braze_max_attempts=20,
        ledger_table=stack.refs["DeliveryLedgerTable"],
        rejected_bucket=stack.refs["RejectedObjectsBucket"],
        user_order_table=stack.refs["UserOrderTable"],
        events_queue_url=stack.refs["EventsQueue"],
        time_reserve_seconds=1.0,
        rate_budget_enabled=budget_enabled,
        rate_budget_table=stack.refs["RateBudgetTable"],
        braze_track_requests_per_second=track_requests_per_second,
        rate_budget_lease_requests=lease_requests,
    )


def invocation_parts(config: SenderSettings) -> SenderParts:
    """What one execution environment's sender talks to: its own client, key holder and budget holder,
    and the stack's ledger, rejected-objects bucket, user order table and rate budget table."""
    budget: RateBudget = NoBudget()
    if config.rate_budget_enabled:
        budget = SharedRateBudget(
            DynamoBudgetStore(config.rate_budget_table), window_requests(config), config.rate_budget_lease_requests
        )
    return SenderParts(
        BrazeClient(
            config.braze_rest_endpoint,
            pool_size=config.braze_max_in_flight,
            connect_timeout_seconds=config.braze_connect_timeout_seconds,
            read_timeout_seconds=config.braze_read_timeout_seconds,
        ),
        ApiKey(config.braze_api_key_secret_arn, config.braze_api_key_max_age_seconds),
        DynamoLedger(config.ledger_table, config.ledger_ttl_seconds),
        S3Rejects(config.rejected_bucket, config.rejected_prefix),
        order=OrderStore(config.user_order_table),
        budget=budget,
    )


def drill(
    stack: LocalStack,
    braze: BrazeSandbox,
    *,
    budget_enabled: bool,
    senders: int,
    calls_per_sender: int,
    objects_per_call: int = 75,
    track_requests_per_second: float = 20.0,
    lease_requests: int = 10,
    in_flight: int = 4,
    time_limit_seconds: float = 120.0,
) -> DrillResult:
    """Run `senders` invocations at once, each with a backlog of `calls_per_sender` full calls."""
    config = drill_settings(
        stack,
        braze.url,
        budget_enabled=budget_enabled,
        objects_per_call=objects_per_call,
        track_requests_per_second=track_requests_per_second,
        lease_requests=lease_requests,
        in_flight=in_flight,
    )
    operations = TableOperations(config.rate_budget_table)
    events = aws.client("dynamodb").meta.events
    events.register("before-parameter-build.dynamodb", operations)
    atomic = AtomicWrites()
    atomic.register(events)
    backlogs = [backlog(f"drill-{sender}", calls_per_sender * objects_per_call) for sender in range(senders)]
    outcomes: list[Outcome] = []
    before = braze.stats()
    already = len(braze.requests)
    start = time.monotonic()
    ends = start + time_limit_seconds

    def invocation(number: int) -> None:
        outcome = Sender(config, invocation_parts(config)).deliver(backlogs[number], lambda: ends - time.monotonic())
        outcomes.append(outcome)

    try:
        threads = [threading.Thread(target=invocation, args=(n,), name=f"invocation-{n}") for n in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        events.unregister("before-parameter-build.dynamodb", operations)
        atomic.unregister(events)
    seconds = time.monotonic() - start
    after = braze.stats()
    times = [request.time for request in braze.requests[already:] if request.path == "/users/track"]
    return DrillResult(
        budget_enabled=budget_enabled,
        senders=senders,
        seconds=seconds,
        calls_seconds=max(times) - min(times) if times else 0.0,
        calls=after["calls"].get("/users/track", 0) - before["calls"].get("/users/track", 0),
        rate_limited=after["rate_limited"] - before["rate_limited"],
        objects_delivered=sum(outcome.delivered for outcome in outcomes),
        objects_failed=sum(outcome.failed for outcome in outcomes),
        budget_writes=operations.counts["UpdateItem"] + operations.counts["PutItem"],
        budget_reads=operations.counts["GetItem"] + operations.counts["Query"],
    )


def backlog(name: str, objects: int) -> list[tuple[str, str]]:
    """One invocation's SQS records: events of distinct users, so every call is full."""
    items = [
        (
            "events",
            index,
            queue.encode_object({"external_id": f"{name}-{index}", "name": "drill", "time": "2026-12-07T00:00:00Z"}),
        )
        for index in range(objects)
    ]
    bodies = queue.build_messages("track", items, source="drill", correlation_id=name, max_message_bytes=256 * 1024)
    return [(f"{name}-{n}", body) for n, body in enumerate(bodies)]

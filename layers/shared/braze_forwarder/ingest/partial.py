"""Partial queue failures: a retry queues only what the failed request did not.

SQS may accept some envelopes of a request and refuse the rest; the API then answers 503 and the
client retries the same body. Without a record the retry would queue the accepted part again. So,
on that path only, the ingest API writes which objects (array, index) were queued, in the
IdempotencyTable under `partial-queue#<scope>`, where the scope is a digest of (client, route,
Idempotency-Key or none, SHA-256 of the body). The next request of the same scope takes the record
(DeleteItem, so one request takes it) and queues only the other objects; if it fails again, the
record is written back with what it added.

A request that queues everything writes nothing. Nor does it read the record, unless a partial
failure is recent: each failure also raises `partial-queue#until#keyed` or `…#unkeyed` (the latest
time any record of requests with, or without, an Idempotency-Key may still be used), and an
execution environment reads that item at most every MARKER_MAX_AGE seconds. While it is raised,
each request of its kind makes one GetItem (and the retry that finds its record one DeleteItem).
A retry sent sooner than MARKER_MAX_AGE after the 503, to an environment that read the marker just
before the failure, is not recognised (see docs/delivery.md); the Retry-After we answer is longer.

How long a record may be used: without an Idempotency-Key, UNKEYED_WINDOW_SECONDS (identical bodies
are legitimate — two real purchases can be byte-identical — so only the first identical body shortly
after a 503 the server recorded is taken for its retry); with a key, the idempotency TTL.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable

from botocore.exceptions import BotoCoreError, ClientError

from braze_forwarder import aws
from braze_forwarder.observability import MetricUnit, logger, metrics

UNKEYED_WINDOW_SECONDS = 300
MARKER_MAX_AGE = 2.0  # seconds; below the 5 s Retry-After of the 503
_PREFIX = "partial-queue#"

Queued = frozenset[tuple[str, int]]


def scope(client: str, route: str, key: str | None, body_sha256: str) -> str:
    text = "\n".join((client, route, key or "", body_sha256))
    return hashlib.sha256(text.encode()).hexdigest()


class _Marker:
    """This execution environment's view of one `partial-queue#until#…` item."""

    def __init__(self, name: str) -> None:
        self.id = f"{_PREFIX}until#{name}"
        self.lock = threading.Lock()
        self.until = 0.0
        self.read_at = float("-inf")

    def reset(self) -> None:
        with self.lock:
            self.until, self.read_at = 0.0, float("-inf")


_markers = {True: _Marker("keyed"), False: _Marker("unkeyed")}


def reset() -> None:
    for marker in _markers.values():
        marker.reset()


def take(table: str, request_scope: str, *, keyed: bool) -> Queued:
    """What an earlier, partly queued request of this scope queued; the record is used up."""
    now = time.time()
    if not _may_exist(table, _markers[keyed], now):
        return frozenset()
    key = {"id": {"S": _PREFIX + request_scope}}
    try:
        dynamodb = aws.client("dynamodb")
        if "Item" not in dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True):
            return frozenset()
        item = dynamodb.delete_item(TableName=table, Key=key, ReturnValues="ALL_OLD").get("Attributes")
    except (BotoCoreError, ClientError) as exc:
        # Queued whole: a duplicate of the part queued before, never a loss.
        logger.error("could not read the partial-queue record", extra={"error": type(exc).__name__})
        metrics.add_metric(name="PartialQueueRecordErrors", unit=MetricUnit.Count, value=1)
        return frozenset()
    if not item or int(item["expiration"]["N"]) < now:
        return frozenset()  # another request took it first, or it is past its window
    return _decode(item["queued"]["S"])


def remember(
    table: str, request_scope: str, queued: Iterable[tuple[str, int]], *, keyed: bool, window_seconds: int
) -> None:
    """Record what a request that ends in 503 did queue; a failure here is logged, not raised."""
    now = time.time()
    expiration = int(now) + window_seconds
    client = aws.client("dynamodb")
    try:
        client.put_item(
            TableName=table,
            Item={
                "id": {"S": _PREFIX + request_scope},
                "queued": {"S": _encode(queued)},
                "expiration": {"N": str(expiration)},
            },
        )
    except (BotoCoreError, ClientError) as exc:
        logger.error("could not record a partial queue failure", extra={"error": type(exc).__name__})
        metrics.add_metric(name="PartialQueueRecordErrors", unit=MetricUnit.Count, value=1)
        return
    marker = _markers[keyed]
    with marker.lock:
        marker.until = max(marker.until, expiration)
    try:
        client.put_item(
            TableName=table,
            Item={"id": {"S": marker.id}, "until": {"N": str(expiration)}, "expiration": {"N": str(expiration)}},
            ConditionExpression="attribute_not_exists(id) OR #until < :until",
            ExpressionAttributeNames={"#until": "until"},
            ExpressionAttributeValues={":until": {"N": str(expiration)}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            logger.error("could not raise the partial-queue marker", extra={"error": type(exc).__name__})
            metrics.add_metric(name="PartialQueueRecordErrors", unit=MetricUnit.Count, value=1)
    except BotoCoreError as exc:
        logger.error("could not raise the partial-queue marker", extra={"error": type(exc).__name__})
        metrics.add_metric(name="PartialQueueRecordErrors", unit=MetricUnit.Count, value=1)


def _may_exist(table: str, marker: _Marker, now: float) -> bool:
    """Whether a partial-queue record of the marker's kind may still be usable (read every MARKER_MAX_AGE)."""
    with marker.lock:
        if now < marker.until:
            return True
        if time.monotonic() - marker.read_at < MARKER_MAX_AGE:
            return False
        marker.read_at = time.monotonic()
    try:
        item = (
            aws.client("dynamodb")
            .get_item(TableName=table, Key={"id": {"S": marker.id}}, ConsistentRead=True)
            .get("Item")
        )
    except (BotoCoreError, ClientError) as exc:
        logger.warning("could not read the partial-queue marker", extra={"error": type(exc).__name__})
        return True  # look for the record itself
    until = float(item["until"]["N"]) if item else 0.0
    with marker.lock:
        marker.until = max(marker.until, until)
        return now < marker.until


def _encode(queued: Iterable[tuple[str, int]]) -> str:
    """Runs of consecutive indexes, `array:first-last` joined by commas (a message holds a run)."""
    runs: list[list[object]] = []
    for array, index in sorted(queued):
        if runs and runs[-1][0] == array and runs[-1][2] == index - 1:
            runs[-1][2] = index
        else:
            runs.append([array, index, index])
    return ",".join(f"{array}:{first}-{last}" for array, first, last in runs)


def _decode(text: str) -> Queued:
    queued: set[tuple[str, int]] = set()
    for run in filter(None, text.split(",")):
        array, _, span = run.rpartition(":")
        first, _, last = span.partition("-")
        queued.update((array, index) for index in range(int(first), int(last) + 1))
    return frozenset(queued)

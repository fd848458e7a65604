"""Accepting a Braze-shaped request body (/users/track, /users/identify, and through ingest.user_data
/users/delete, /users/alias/new, /users/merge): validate, queue, answer like Braze.

Valid objects are queued; invalid ones are answered in Braze's non-fatal error shape
{input_array, index, type, reason} and never queued. An existing Braze integration therefore sees
the answers it already understands, only earlier and with a reason.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from braze_forwarder import compiled_json, queue
from braze_forwarder.braze.validation import (
    IDENTIFY_ARRAYS,
    TRACK_ARRAYS,
    Limits,
    NestingTooDeep,
    Problem,
    check_identify_object,
    check_track_object,
)
from braze_forwarder.http_answers import RequestRejected, braze_message
from braze_forwarder.ingest import partial
from braze_forwarder.observability import MetricUnit, logger, metrics, single_metric
from braze_forwarder.request_body import DeferredKeysBody, non_finite_number
from braze_forwarder.user_order import OrderRecord

# Answers (and the idempotency records that keep them) list at most this many errors; a request
# with more invalid objects than this is a client bug, and the count says how many were left out.
MAX_LISTED_ERRORS = 1000
# Tolerated and dropped: Braze's legacy way to pass its REST key. It is never queued or logged.
_IGNORED_FIELDS = frozenset({"api_key"})


@dataclass(frozen=True, slots=True)
class Route:
    kind: queue.Kind
    arrays: tuple[str, ...]
    check: Callable[[str, object, int, Limits], Problem | None]
    counts: Callable[[dict[str, int]], dict[str, int]]
    # Braze's rules on the request as a whole (its arrays are known lists): raises RequestRejected.
    request_check: Callable[[dict[str, Any]], None] | None = None
    # The order records an accepted item needs, (array, item, accepted_at) -> records; written
    # before anything is queued (ingest.user_data).
    order_records: Callable[[str, Any, str], list[OrderRecord]] | None = None
    # Queued behind the ordering fence (Ordering.fence_seconds): deletes and merges.
    fenced: bool = False


TRACK = Route(
    kind="track",
    arrays=TRACK_ARRAYS,
    check=check_track_object,
    counts=lambda queued: {f"{array}_queued": queued[array] for array in TRACK_ARRAYS},
)
IDENTIFY = Route(
    kind="identify",
    arrays=IDENTIFY_ARRAYS,
    check=check_identify_object,
    counts=lambda queued: {"aliases_queued": sum(queued.values())},
)
ROUTES = {route.kind: route for route in (TRACK, IDENTIFY)}


class Ordering(Protocol):
    """Where a route's order records go (ingest.user_data.Ordering), and its fence."""

    @property
    def fence_seconds(self) -> int: ...

    def write(self, records: Sequence[OrderRecord], accepted_monotonic: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Retries:
    """How a retry of this request is recognised after a partial queue failure (see ingest.partial)."""

    table: str
    client: str
    route: str
    key: str | None
    body: bytes
    window_seconds: int

    def scope(self) -> str:  # the body's digest only when needed: not on the usual path
        return partial.scope(self.client, self.route, self.key, hashlib.sha256(self.body).hexdigest())


def accept(
    route: Route,
    body: DeferredKeysBody,
    *,
    client: str,
    correlation_id: str | None,
    queue_url: str,
    max_message_bytes: int,
    max_json_depth: int,
    retries: Retries | None = None,
    ordering: Ordering | None = None,
) -> Answer:
    """Validate every object of a parsed body, queue the valid ones and answer as Braze would.

    With `retries`, a request that repeats one whose queueing partly failed queues only the objects
    that request did not; and a partial failure of this one is recorded for its own retry. A route
    with order records needs `ordering`: the records of what is queued are written first, with the
    accept time the envelopes carry."""
    if route.order_records is not None and ordering is None:
        raise ValueError(f"the {route.kind} route needs an order store")
    try:
        batches = _arrays_of(route, body.document)
    except RequestRejected:
        body.require_unique_keys()  # a repeated key, if there is one, is the better answer
        raise
    limits = Limits(max_object_depth=max_json_depth - 3)  # body → array → object
    max_object_bytes = queue.max_object_bytes(max_message_bytes, client, correlation_id)
    items: list[queue.EncodedItem] = []
    errors: list[dict[str, Any]] = []
    queued = dict.fromkeys(route.arrays, 0)
    colons = _colons_outside_arrays(route, body.document)
    check = route.check  # the loop runs per object
    encode_all = compiled_json.encode_objects if body.compiled else _encode_objects
    try:
        for array, objects in batches:
            queued_before = len(items)
            # Each array encoded in one go and its ':' counted in one call: per object, the loop's
            # own steps cost a sixth of the handler at 75 objects (`make bench`).
            encodings = encode_all(objects)
            colons += "".join(encodings).count(":")
            for index, obj in enumerate(objects):
                encoded = encodings[index]
                size = len(encoded)
                problem = check(array, obj, size, limits)
                if problem is None and size > max_object_bytes:
                    problem = Problem(
                        "OBJECT_TOO_LARGE",
                        f"the object is {size} bytes as JSON; at most {max_object_bytes} fit a queue message",
                    )
                if problem is not None:
                    errors.append(
                        {"input_array": array, "index": index, "type": problem.type, "reason": problem.reason}
                    )
                    continue
                items.append((array, index, encoded))
            queued[array] = len(items) - queued_before
    except NestingTooDeep:
        body.require_unique_keys()
        raise RequestRejected(
            400, "nesting_too_deep", f"the body nests arrays or objects deeper than {max_json_depth} levels"
        ) from None
    except ValueError:
        # The encoder refuses only infinities here: json.loads reads a number past a double's
        # range (1e400) as one, and neither SQS's JSON nor Braze can carry it.
        body.require_unique_keys()
        raise non_finite_number() from None
    body.require_unique_keys(colons)  # every object is encoded now, so the count proves it cheaply

    _count_rejections(errors)
    listed = _listed(errors)
    if not items:
        return Answer(
            400,
            {
                "message": braze_message(400),
                "type": "no_valid_objects",
                "reason": "every object in the request is invalid; see errors",
                **listed,
            },
        )
    before: partial.Queued = frozenset()
    if retries is not None:
        before = partial.take(retries.table, retries.scope(), keyed=retries.key is not None)
        if before:
            logger.info("a retry of a partly queued request: queueing the rest", extra={"queued_before": len(before)})
            items = [item for item in items if (item[0], item[1]) not in before]
    accepted_at, accepted_monotonic = queue.utc_now_iso(), time.monotonic()
    if route.order_records is not None and ordering is not None and items:
        ordering.write(_order_records(route.order_records, batches, items, accepted_at), accepted_monotonic)
    spans: list[tuple[int, int]] | None = [] if retries is not None else None
    messages = (
        queue.build_messages(
            route.kind,
            items,
            source=client,
            correlation_id=correlation_id,
            max_message_bytes=max_message_bytes,
            accepted_at=accepted_at,
            spans=spans,
        )
        if items
        else []
    )
    delay_seconds = ordering.fence_seconds if route.fenced and ordering is not None else 0
    try:
        queue.send_messages(queue_url, messages, delay_seconds=delay_seconds)
    except queue.QueueUnavailable as exc:
        logger.error("queue refused messages", extra={"queued": exc.queued, "total": exc.total})
        if retries is not None and spans is not None and (exc.queued_positions or before):
            queued_now = {(items[i][0], items[i][1]) for p in exc.queued_positions for i in range(*spans[p])}
            partial.remember(
                retries.table,
                retries.scope(),
                queued_now | before,
                keyed=retries.key is not None,
                window_seconds=retries.window_seconds,
            )
        raise RequestRejected(
            503,
            "queue_unavailable",
            "the events queue did not accept the whole request; retry it unchanged (with its Idempotency-Key, if it "
            "had one): what was queued is not queued again",
            {"Retry-After": "5"},
        ) from None
    metrics.add_metric(name="ObjectsAccepted", unit=MetricUnit.Count, value=len(items))
    return Answer(202, {"message": "success", **route.counts(queued), **listed})


def _order_records(
    records_of: Callable[[str, Any, str], list[OrderRecord]],
    batches: list[tuple[str, list[Any]]],
    items: list[queue.EncodedItem],
    accepted_at: str,
) -> list[OrderRecord]:
    """The records of the items about to be queued, from the objects as the request had them."""
    objects = dict(batches)
    return [record for array, index, _ in items for record in records_of(array, objects[array][index], accepted_at)]


def _arrays_of(route: Route, document: Any) -> list[tuple[str, list[Any]]]:
    expected = ", ".join(route.arrays)
    if type(document) is not dict:
        raise RequestRejected(400, "invalid_body", f"the body must be a JSON object with {expected}")
    unknown = sorted(document.keys() - set(route.arrays) - _IGNORED_FIELDS)
    if unknown:
        raise RequestRejected(
            400, "unknown_field", f"unknown top-level field {unknown[0]!r}; this endpoint takes {expected}"
        )
    batches = []
    for array in route.arrays:
        objects = document.get(array)
        if objects is None:
            continue
        if type(objects) is not list:
            raise RequestRejected(400, "invalid_body", f"{array!r} must be an array of objects")
        if objects:
            batches.append((array, objects))
    if not batches:
        raise RequestRejected(400, "empty_request", f"the body has no objects; send at least one in {expected}")
    if route.request_check is not None:
        route.request_check(document)
    return batches


def _encode_objects(objects: list[Any]) -> list[str]:
    encode = queue.encode_object
    return [encode(obj) for obj in objects]


def _colons_outside_arrays(route: Route, document: dict[str, Any]) -> int:
    """':' of the document's compact encoding that are not inside an array's objects (see DeferredKeysBody)."""
    others = {key: value for key, value in document.items() if key not in route.arrays}
    return len(document) - len(others) + (queue.encode_object(others).count(":") if others else 0)


def _listed(errors: list[dict[str, Any]]) -> dict[str, Any]:
    if len(errors) <= MAX_LISTED_ERRORS:
        return {"errors": errors}
    return {"errors": errors[:MAX_LISTED_ERRORS], "errors_not_listed": len(errors) - MAX_LISTED_ERRORS}


def _count_rejections(errors: list[dict[str, Any]]) -> None:
    if not errors:
        return
    by_type: dict[str, int] = {}
    for error in errors:
        by_type[error["type"]] = by_type.get(error["type"], 0) + 1
    for error_type, count in by_type.items():
        with single_metric(
            name="ObjectsRejected",
            unit=MetricUnit.Count,
            value=count,
            default_dimensions=metrics.default_dimensions,
        ) as metric:
            metric.add_dimension(name="type", value=error_type)

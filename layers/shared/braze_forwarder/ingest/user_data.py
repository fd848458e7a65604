"""/users/delete, /users/alias/new and /users/merge: their per-request rules and the order records
the ingest API writes before it answers them.

The items are checked, queued and answered as /users/track's are (service.accept); these routes add
Braze's per-request rules (at most 50 items; one identifier type per delete) and their order.

docs/ordering.md, "At the API": for every identifier a request names, a record in the
UserOrderTable (user_order.py) with the request's accept time, written before the envelopes are
queued and before the 202, so every sender snapshot taken after the answer sees it. Deletes and
merges are then queued behind the fence (`fence_seconds`): by the time they can reach Braze, every
object judged without their record has reached Braze or failed.

A record the table already holds is kept (a conditional put); a store that cannot be written, or
is slower than user_order.RECORD_WRITE_SECONDS (the senders' look-back), answers 503 and nothing is
queued.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from braze_forwarder.braze.validation import (
    ALIAS_ARRAYS,
    DELETE_ARRAYS,
    MERGE_ARRAYS,
    check_alias_object,
    check_delete_identifier,
    check_merge_object,
)
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest.service import Route
from braze_forwarder.observability import MetricUnit, logger, metrics
from braze_forwarder.user_order import RECORD_WRITE_SECONDS, OrderRecord, OrderStore, identities, identity, user_digest

# Braze's limit on each of these endpoints (BRAZE_API.md §6): a larger request is refused whole,
# as Braze refuses it, rather than split: its items are one decision of the client's.
MAX_ITEMS_PER_REQUEST = 50


@dataclass(frozen=True, slots=True)
class Ordering:
    """Where a request's order records go, and how long its deletes and merges wait in the queue."""

    store: OrderStore
    fence_seconds: int

    def write(self, records: Sequence[OrderRecord], accepted_monotonic: float) -> None:
        """Write the records, or refuse the request (503) if the store fails or is slower than the senders allow."""
        _write(self, records, accepted_monotonic)


def _one_identifier_type(document: dict[str, Any]) -> None:
    given = [array for array in DELETE_ARRAYS if document.get(array) is not None]
    if len(given) > 1:
        raise RequestRejected(
            400,
            "mixed_identifier_types",
            "only one of external_ids, user_aliases, braze_ids, email_addresses or phone_numbers can be included "
            f"in a single request; this one has {', '.join(given)}",
        )
    _at_most(document, "identifiers")


def _at_most(document: dict[str, Any], what: str) -> None:
    count = sum(len(items) for items in document.values() if type(items) is list)
    if count > MAX_ITEMS_PER_REQUEST:
        raise RequestRejected(
            400,
            "too_many_objects",
            f"a single request may not contain more than {MAX_ITEMS_PER_REQUEST} {what}; this one has {count}",
        )


def delete_records(array: str, identifier: Any, accepted_at: str) -> list[OrderRecord]:
    """A tombstone for the user one /users/delete identifier names."""
    return [OrderRecord("delete", user_digest(user), accepted_at) for user in identities("delete", array, identifier)]


def alias_records(array: str, alias: Any, accepted_at: str) -> list[OrderRecord]:
    """A pending alias: objects that use it wait until Braze has it (the external_id needs none)."""
    return [OrderRecord("alias", user_digest(("user_alias", alias["alias_name"], alias["alias_label"])), accepted_at)]


def merge_records(array: str, update: Any, accepted_at: str) -> list[OrderRecord]:
    """The user merged away, with the user kept."""
    merged, kept = identity(update["identifier_to_merge"]), identity(update["identifier_to_keep"])
    return [OrderRecord("merge", user_digest(merged), accepted_at, keep=user_digest(kept))]


def _write(ordering: Ordering, records: Sequence[OrderRecord], accepted_monotonic: float) -> None:
    try:
        ordering.store.put(records)
    except (BotoCoreError, ClientError) as exc:
        logger.error("could not write order records", extra={"error": type(exc).__name__, "records": len(records)})
        metrics.add_metric(name="OrderRecordErrors", unit=MetricUnit.Count, value=1)
        raise _unavailable() from None
    elapsed = time.monotonic() - accepted_monotonic
    if elapsed > RECORD_WRITE_SECONDS:
        # A sender reads records from RECORD_WRITE_SECONDS before its last snapshot: a later write
        # may be missed, so the envelopes are not queued. The records stay and drop what they
        # cover until the retry queues its own (docs/ordering.md, failure windows).
        logger.error("order records written too late", extra={"elapsed_seconds": round(elapsed, 3)})
        metrics.add_metric(name="OrderRecordErrors", unit=MetricUnit.Count, value=1)
        raise _unavailable()
    metrics.add_metric(name="OrderRecordsWritten", unit=MetricUnit.Count, value=len(records))


def _unavailable() -> RequestRejected:
    return RequestRejected(
        503,
        "order_store_unavailable",
        "the order store did not record the request in time; nothing was queued: retry it unchanged (with its "
        "Idempotency-Key, if it had one)",
        {"Retry-After": "5"},
    )


DELETE = Route(
    kind="delete",
    arrays=DELETE_ARRAYS,
    check=check_delete_identifier,
    # Braze's own field: "the number of user IDs queued for deletion", which is what it is here too.
    counts=lambda queued: {"deleted": sum(queued.values())},
    request_check=_one_identifier_type,
    order_records=delete_records,
    fenced=True,
)
ALIAS = Route(
    kind="alias",
    arrays=ALIAS_ARRAYS,
    check=check_alias_object,
    counts=lambda queued: {"aliases_queued": queued["user_aliases"]},
    request_check=lambda document: _at_most(document, "user aliases"),
    order_records=alias_records,
)
MERGE = Route(
    kind="merge",
    arrays=MERGE_ARRAYS,
    check=check_merge_object,
    counts=lambda queued: {"merge_updates_queued": queued["merge_updates"]},
    request_check=lambda document: _at_most(document, "merge updates"),
    order_records=merge_records,
    fenced=True,
)
ROUTES = {route.kind: route for route in (DELETE, ALIAS, MERGE)}

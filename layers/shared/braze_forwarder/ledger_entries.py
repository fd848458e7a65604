"""Reading the delivery ledger (DeliveryLedgerTable): which envelope ids have an entry, and its positions.

The sender writes the ledger and reads it before every batch (delivery/ledger.py); an import worker
resuming a crashed range reads it too, to tell which envelopes of its interrupted chunk a sender
already received (imports/worker.py). Both read through here: features meet in a base module.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from braze_forwarder import aws

_BATCH_GET_KEYS = 100  # BatchGetItem's limit
_BATCH_ATTEMPTS = 5


def done_positions(table: str, envelope_ids: Iterable[str]) -> dict[str, frozenset[int]]:
    """The positions recorded done, per envelope id that has an entry (strongly consistent reads)."""
    ids = list(dict.fromkeys(envelope_ids))
    found: dict[str, frozenset[int]] = {}
    for start in range(0, len(ids), _BATCH_GET_KEYS):
        request = {
            table: {
                "Keys": [{"message_id": {"S": envelope_id}} for envelope_id in ids[start : start + _BATCH_GET_KEYS]],
                "ConsistentRead": True,
                "ProjectionExpression": "message_id, done",
            }
        }
        for attempt in range(_BATCH_ATTEMPTS):
            response = aws.client("dynamodb").batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                found[item["message_id"]["S"]] = frozenset(int(n) for n in item["done"]["NS"])
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.05 * 2**attempt)
        else:
            raise RuntimeError("the delivery ledger left keys unprocessed after retries")
    return found

"""The delivery ledger: which objects of a partly delivered message already reached Braze.

A message whose objects went out in several calls, some of which failed, goes back to the queue.
Before it does, the positions of its objects that Braze accepted (or refused for good) are written
here, keyed by the envelope id (which, unlike the SQS message id, survives a DLQ redrive), so the
next attempt sends only the rest. A message delivered whole writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from braze_forwarder import aws

_BATCH_GET_KEYS = 100
_BATCH_GET_ATTEMPTS = 5


def done_positions(table: str, envelope_ids: Iterable[str]) -> dict[str, frozenset[int]]:
    """Positions already delivered or rejected, per envelope id that has a ledger entry."""
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
        for attempt in range(_BATCH_GET_ATTEMPTS):
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


def record(table: str, envelope_id: str, positions: Iterable[int], ttl_seconds: int) -> None:
    """Remember that these positions of an envelope are done (delivered or kept as rejected)."""
    numbers = sorted(set(positions))
    if not numbers:
        return
    aws.client("dynamodb").put_item(
        TableName=table,
        Item={
            "message_id": {"S": envelope_id},
            "done": {"NS": [str(n) for n in numbers]},
            "expires_at": {"N": str(int(time.time()) + ttl_seconds)},
        },
    )

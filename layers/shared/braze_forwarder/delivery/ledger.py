"""The delivery ledger: which objects of a partly delivered message already reached Braze.

A message whose objects went out in several calls, some of which failed, goes back to the queue.
Before it does, the positions of its objects that Braze accepted (or refused for good) are written
here, keyed by the envelope id (which, unlike the SQS message id, survives a DLQ redrive), so the
next attempt sends only the rest. A message delivered whole writes nothing — unless its envelope is
marked `dedupe` (an import's, whose id is deterministic): then it is recorded whole, in one
BatchWriteItem for the batch's such envelopes, so a copy queued twice finds every position done and
is skipped (docs/imports.md).

Before the order gate sends held objects back to the queue as a copy (a new envelope whose id derives
from the original's and the positions, marked `dedupe`), it records the group of positions in the
original's entry (record_hold): when the message comes back those positions are sent as that same
copy again, never judged anew, so a copy and a direct delivery of the same objects cannot both reach
Braze (docs/ordering.md).

The sender is handed a Ledger (functions/braze_sender/app.py wires DynamoLedger); tests and the soak
hand it their own, or wrap this one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from braze_forwarder import aws, ledger_entries
from braze_forwarder.ledger_entries import LedgerEntry


class Ledger(Protocol):
    def entries(self, envelope_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """Per envelope id that has a ledger entry: its positions already delivered or rejected, and
        its groups of positions held into a copy."""
        ...

    def record(self, envelope_id: str, positions: Iterable[int]) -> None:
        """Remember that these positions of an envelope are done (delivered or kept as rejected);
        its held groups stay."""
        ...

    def record_hold(self, envelope_id: str, positions: Sequence[int]) -> None:
        """Remember that these positions of an envelope, in this order, go back to the queue as one copy."""
        ...

    def record_many(self, entries: Mapping[str, Iterable[int]]) -> None:
        """record() for several envelopes at once (as few requests as the store allows)."""
        ...


class DynamoLedger:
    """The ledger in the stack's DeliveryLedgerTable; entries expire after ttl_seconds."""

    def __init__(self, table: str, ttl_seconds: int) -> None:
        self.table = table
        self.ttl_seconds = ttl_seconds

    def entries(self, envelope_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        return ledger_entries.entries(self.table, envelope_ids)

    def record(self, envelope_id: str, positions: Iterable[int]) -> None:
        item = self._item(envelope_id, positions)
        if item is not None:
            # An update, not a put: the entry's held groups must outlive a partial delivery (a copy whose
            # re-send failed is sent as the same copy when the message comes back).
            aws.client("dynamodb").update_item(
                TableName=self.table,
                Key={"message_id": item["message_id"]},
                UpdateExpression="SET done = :done, expires_at = :expires_at",
                ExpressionAttributeValues={":done": item["done"], ":expires_at": item["expires_at"]},
            )

    def record_hold(self, envelope_id: str, positions: Sequence[int]) -> None:
        aws.client("dynamodb").update_item(
            TableName=self.table,
            Key={"message_id": {"S": envelope_id}},
            UpdateExpression="ADD held :group SET expires_at = :expires_at",
            ExpressionAttributeValues={
                ":group": {"SS": [ledger_entries.held_group(positions)]},
                ":expires_at": {"N": str(int(time.time()) + self.ttl_seconds)},
            },
        )

    def record_many(self, entries: Mapping[str, Iterable[int]]) -> None:
        # Puts (BatchWriteItem has no update): used for envelopes delivered whole, whose held groups,
        # all done, are no longer needed.
        items = [item for envelope_id, positions in entries.items() if (item := self._item(envelope_id, positions))]
        aws.batch_put(aws.client("dynamodb"), self.table, items)

    def _item(self, envelope_id: str, positions: Iterable[int]) -> dict[str, Any] | None:
        numbers = sorted(set(positions))
        if not numbers:
            return None
        return {
            "message_id": {"S": envelope_id},
            "done": {"NS": [str(n) for n in numbers]},
            "expires_at": {"N": str(int(time.time()) + self.ttl_seconds)},
        }

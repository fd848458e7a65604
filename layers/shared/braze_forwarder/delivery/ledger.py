"""The delivery ledger: which objects of a partly delivered message already reached Braze.

A message whose objects went out in several calls, some of which failed, goes back to the queue.
Before it does, the positions of its objects that Braze accepted (or refused for good) are written
here, keyed by the envelope id (which, unlike the SQS message id, survives a DLQ redrive), so the
next attempt sends only the rest. A message delivered whole writes nothing — unless its envelope is
marked `dedupe` (an import's, whose id is deterministic): then it is recorded whole, in one
BatchWriteItem for the batch's such envelopes, so a copy queued twice finds every position done and
is skipped (docs/imports.md).

The sender is handed a Ledger (functions/braze_sender/app.py wires DynamoLedger); tests and the soak
hand it their own, or wrap this one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from braze_forwarder import aws, ledger_entries


class Ledger(Protocol):
    def done_positions(self, envelope_ids: Iterable[str]) -> dict[str, frozenset[int]]:
        """Positions already delivered or rejected, per envelope id that has a ledger entry."""
        ...

    def record(self, envelope_id: str, positions: Iterable[int]) -> None:
        """Remember that these positions of an envelope are done (delivered or kept as rejected)."""
        ...

    def record_many(self, entries: Mapping[str, Iterable[int]]) -> None:
        """record() for several envelopes at once (as few requests as the store allows)."""
        ...


class DynamoLedger:
    """The ledger in the stack's DeliveryLedgerTable; entries expire after ttl_seconds."""

    def __init__(self, table: str, ttl_seconds: int) -> None:
        self.table = table
        self.ttl_seconds = ttl_seconds

    def done_positions(self, envelope_ids: Iterable[str]) -> dict[str, frozenset[int]]:
        return ledger_entries.done_positions(self.table, envelope_ids)

    def record(self, envelope_id: str, positions: Iterable[int]) -> None:
        item = self._item(envelope_id, positions)
        if item is not None:
            aws.client("dynamodb").put_item(TableName=self.table, Item=item)

    def record_many(self, entries: Mapping[str, Iterable[int]]) -> None:
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

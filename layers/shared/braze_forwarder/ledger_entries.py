"""Reading the delivery ledger (DeliveryLedgerTable): which envelope ids have an entry, and its positions.

The sender writes the ledger and reads it before every batch (delivery/ledger.py); an import worker
resuming a crashed range reads it too, to tell which envelopes of its interrupted chunk a sender
already received (imports/worker.py). Both read through here: features meet in a base module.
"""

from __future__ import annotations

from collections.abc import Iterable

from braze_forwarder import aws


def done_positions(table: str, envelope_ids: Iterable[str]) -> dict[str, frozenset[int]]:
    """The positions recorded done, per envelope id that has an entry (strongly consistent reads)."""
    keys = [{"message_id": {"S": envelope_id}} for envelope_id in dict.fromkeys(envelope_ids)]
    return {
        item["message_id"]["S"]: frozenset(int(n) for n in item["done"]["NS"])
        for item in aws.batch_get(
            aws.client("dynamodb"), table, keys, ConsistentRead=True, ProjectionExpression="message_id, done"
        )
    }

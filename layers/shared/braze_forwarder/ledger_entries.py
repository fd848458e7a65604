"""Reading the delivery ledger (DeliveryLedgerTable): which envelope ids have an entry, and what it holds.

The sender writes the ledger and reads it before every batch (delivery/ledger.py); an import worker
resuming a crashed range reads it too, to tell which envelopes of its interrupted chunk a sender
already received (imports/worker.py). Both read through here: features meet in a base module.

An entry (key `message_id`, the envelope id) holds `done`, the positions delivered or settled, and
`held`, the groups of positions a sender is sending back to the queue as one copy each (the order
gate's holds, docs/ordering.md): a string set, each string the group's positions in the copy's
order, comma-separated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from braze_forwarder import aws


@dataclass(frozen=True)
class LedgerEntry:
    done: frozenset[int] = frozenset()
    # Each group's positions in the order its copy carries them (the copy's id derives from them).
    held: tuple[tuple[int, ...], ...] = ()


def held_group(positions: Iterable[int]) -> str:
    """One held group as the ledger stores it (a member of the `held` string set)."""
    return ",".join(str(position) for position in positions)


def entries(table: str, envelope_ids: Iterable[str]) -> dict[str, LedgerEntry]:
    """The entry of each envelope id that has one (strongly consistent reads)."""
    keys = [{"message_id": {"S": envelope_id}} for envelope_id in dict.fromkeys(envelope_ids)]
    return {
        item["message_id"]["S"]: LedgerEntry(
            frozenset(int(n) for n in item.get("done", {}).get("NS", ())),
            tuple(sorted(tuple(int(n) for n in group.split(",")) for group in item.get("held", {}).get("SS", ()))),
        )
        for item in aws.batch_get(
            aws.client("dynamodb"), table, keys, ConsistentRead=True, ProjectionExpression="message_id, done, held"
        )
    }


def done_positions(table: str, envelope_ids: Iterable[str]) -> dict[str, frozenset[int]]:
    """The positions recorded done, per envelope id that has an entry (strongly consistent reads)."""
    return {envelope_id: entry.done for envelope_id, entry in entries(table, envelope_ids).items()}

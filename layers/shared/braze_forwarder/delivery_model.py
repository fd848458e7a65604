"""The delivery model: a queue message on its way to Braze, its objects (parcels), their states, and
what a batch's delivery comes to.

A base module: the sender and data-point savings (delivery/) both work on these, and the tests,
benches and soak build them; nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from braze_forwarder import queue


class State(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"  # not delivered this time; its message goes back to the queue
    DROPPED = "dropped"  # accepted before its user's delete: never sent (delivery.ordering)
    HELD = "held"  # waits behind an undelivered delete, alias or merge: back in the queue as a new message


DONE = frozenset({State.DELIVERED, State.REJECTED, State.DROPPED, State.HELD})


@dataclass(eq=False)
class Message:
    sqs_message_id: str
    body: str
    envelope: queue.Envelope | None = None
    done_before: frozenset[int] = frozenset()
    # Groups of positions an earlier attempt began sending back to the queue as a copy (the ledger's
    # held groups): sent as that copy again, never judged anew (delivery.ordering).
    held_before: tuple[tuple[int, ...], ...] = ()
    parcels: list[Parcel] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Parcel:
    """One Braze object of one message, on its way to Braze."""

    kind: queue.Kind
    array: str
    object: Any  # a Braze object; for a delete, an identifier (a string in external_ids and braze_ids)
    size: int
    user: Hashable
    message: Message
    position: int  # in the envelope's items: what the ledger records
    index: int  # in the client's original request array: what the client knows
    state: State = State.PENDING
    # A coalesced object (delivery.savings) stands for these parcels of the messages; empty: itself.
    members: list[Parcel] = field(default_factory=list)


@dataclass
class Outcome:
    failed_message_ids: list[str]
    delivered: int = 0
    rejected: int = 0
    failed: int = 0
    skipped_already_done: int = 0
    dropped: int = 0  # accepted before their user's delete (delivery.ordering)
    held: int = 0  # sent back to the queue behind an undelivered delete, alias or merge
    calls: int = 0
    rejected_records_key: str | None = None

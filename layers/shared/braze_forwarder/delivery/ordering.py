"""The order gate: every object of a batch judged against the deletes, aliases and merges accepted
before or after it, so a user's order holds across concurrent senders (docs/ordering.md).

Once per invocation, after the batch is opened, one snapshot of the UserOrderTable
(user_order.OrderStore.snapshot) is taken; every parcel then gets a verdict from the identifiers it
names (user_order.identities):

- drop: the object was accepted at or before a tombstone of its user. It is counted, a report line
  without the object goes to the rejected-objects store, and its position is done: never sent,
  never retried;
- hold: the object was accepted after a delete, alias or merge that has not reached Braze yet. The
  deciding record is read again (a warm container's snapshot may be stale); still undelivered, the
  held objects go back to the queue as a new message (same envelope fields, their own indexes) with
  a delay, and their positions are done, so the rest of the message goes on and no receive count
  grows toward the DLQ. The copy's id derives from the message's and the positions; before it is
  sent the positions are recorded in the delivery ledger as held into it, and when the message comes
  back (its sender died before marking them done) they are sent as that copy again, never judged
  anew: were they sent directly, the first copy, still in the queue, would deliver them a second time;
- after merge: accepted before a merge of its user that may already have reached Braze: sending it
  would re-create the merged-away profile, so it is kept as rejected (ARRIVED_AFTER_MERGE, with the
  object) for an operator to replay against the kept user;
- send.

Deletes, aliases and merges are judged too, each without its own record (a delete is never dropped
by its own tombstone). A delete or merge is sent only from `accepted_at + fence` on (earlier, it goes
back to the queue for the remaining time), once, after one consistent read of its record: delivered
already, it is a duplicate or a redrive and is acknowledged without a call (sending it would delete
the fresh profile). A delete dropped by a later tombstone of the same user, or a merge dropped by a
tombstone, is marked delivered: the later delete covers it, and held objects must not wait for it.

No Braze call starts later than SNAPSHOT_LIFE_SECONDS after the snapshot began: before each call,
a stale snapshot is renewed (incrementally, under a lock) and the call's objects are judged again.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from braze_forwarder import queue
from braze_forwarder.config import SenderSettings
from braze_forwarder.delivery.attribute_state import AttributeStore
from braze_forwarder.delivery.ledger import Ledger
from braze_forwarder.delivery_model import Parcel, State
from braze_forwarder.observability import logger
from braze_forwarder.user_order import (
    CLOCK_SKEW_SECONDS,
    RECORD_WRITE_SECONDS,
    OrderRecord,
    OrderStore,
    Snapshot,
    fence_seconds,
    identities,
    identity,
    user_digest,
)

# Sent behind the fence, marked delivered once Braze has them.
FENCED_KINDS = ("delete", "merge")
# Sent before deletes and merges of the same batch: objects accepted before a merge reach Braze first.
FIRST_KINDS = ("track", "identify", "alias")
DROPPED_AFTER_DELETE = "DROPPED_AFTER_DELETE"
ARRIVED_AFTER_MERGE = "ARRIVED_AFTER_MERGE"
# How far before the batch's oldest object the first snapshot of an execution environment reads: a
# delete, alias or merge accepted earlier than its objects holds them only while it is undelivered,
# which is the fence (about a minute) plus Braze's retries. Later snapshots read only what is new and
# carry older records forward (an undelivered one is read again before it holds anything).
PENDING_LOOKBACK_SECONDS = 3600
# A delete, alias or merge still undelivered this long after its acceptance is overdue (the fence is
# about a minute; Braze's retries within an invocation and a few SQS redeliveries take minutes more):
# counted in OrderRecordsOverdue, which OrderRecordsOverdueAlarm watches. It is a delete Braze refused,
# a message on its way to the DLQ, or Braze down. It holds its user's later objects until it is
# delivered or falls out of the lookback, after which they are sent ahead of it.
OVERDUE_SECONDS = 900
# An overdue record is read again before it is counted (a warm snapshot may carry one delivered
# since), but at most this many an invocation and each at most once a minute per execution
# environment: during an outage hundreds may be overdue, and the count only feeds an alarm.
_OVERDUE_RECHECKS_PER_INVOCATION = 25
_OVERDUE_RECHECK_EVERY_SECONDS = 60.0
_SQS_MAX_DELAY_SECONDS = 900
# Ids of the copies that send objects back to the queue (uuid5 in a namespace of our own): the same
# objects of the same message always get the same copy ids, marked `dedupe`, and a held group is
# recorded in the ledger before its copy is sent. A sender killed after SQS took the copy and before
# the message's positions were marked done meets the group again when the message returns and sends
# the same copy again; the ledger delivers the two copies once. (A delete or merge sent back before
# its fence is not recorded: back past the fence and sent, its copy finds it delivered, no call.)
_COPY_NAMESPACE = uuid.UUID("0d1c4b6e-3f7a-4c52-8e19-7a2b5d9c6f31")
_SQS_MAX_MESSAGE_BYTES = 256 * 1024

Judgement = Literal["send", "drop", "hold", "after_merge"]

# The last snapshot of each table, kept by the warm execution environment: the next invocation
# asks only for the records written since.
_warm: dict[str, Snapshot] = {}
# When each overdue record was last read again (the gate's clock), by sort key, in this environment.
_overdue_read: dict[str, float] = {}


def forget_snapshots() -> None:
    """Drop the warm snapshots (the handler's reset: tests switch tables)."""
    _warm.clear()
    _overdue_read.clear()


def parcel_user(kind: str, array: str, obj: Any) -> Any:
    """The user a parcel is packed by: its first identifier, as braze.packing.user_key would say."""
    named = identities(kind, array, obj)
    return named[0] if named else ("unidentified", id(obj))


def own_record(parcel: Parcel) -> OrderRecord | None:
    """The record the API wrote for a delete, alias or merge item (None for other kinds)."""
    envelope = parcel.message.envelope
    if envelope is None or parcel.kind not in ("delete", "alias", "merge"):
        return None
    accepted_at = envelope.order_time
    if parcel.kind == "merge":
        obj = parcel.object if isinstance(parcel.object, dict) else {}
        merged, kept = identity(obj.get("identifier_to_merge")), identity(obj.get("identifier_to_keep"))
        if merged is None:
            return None
        return OrderRecord("merge", user_digest(merged), accepted_at, keep=user_digest(kept) if kept else None)
    named = identities(parcel.kind, parcel.array, parcel.object)
    if not named:
        return None
    return OrderRecord(parcel.kind, user_digest(named[0]), accepted_at)


class OrderGate:
    """Judges one invocation's parcels against the order records. Create one per invocation."""

    def __init__(
        self,
        store: OrderStore,
        ledger: Ledger,
        config: SenderSettings,
        keep: Callable[[dict[str, Any]], None],
        attributes: AttributeStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ledger = ledger  # held groups are recorded before their copy is sent
        self.keep = keep  # a line for the rejected-objects store
        self.attributes = attributes  # erased for a deleted user (delta sending on)
        self.clock = clock
        self.fence_seconds = fence_seconds(config.braze_connect_timeout_seconds, config.braze_read_timeout_seconds)
        self.hold_delay_seconds = config.order_hold_delay_seconds
        self.queue_url = config.events_queue_url
        self.snapshot: Snapshot | None = None
        self.counts: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._digests: dict[int, list[str]] = {}
        self._own: dict[int, OrderRecord] = {}
        self._digest_of: dict[Hashable, str] = {}
        self._rechecked: set[str] = set()
        self._merges_here: set[str] = set()  # merges of this batch: sent after its other objects

    # ------------------------------------------------------------------ the batch

    def open(self, parcels: Sequence[Parcel]) -> list[Parcel]:
        """Judge every parcel once the batch is open; return the ones to send (the rest are settled)."""
        if not parcels:
            return []
        since = min(min(_order_time(p) for p in parcels), _iso(self.clock() - PENDING_LOOKBACK_SECONDS))
        self.snapshot = self.store.snapshot(since, _warm.get(self.store.table))
        _forget_older(self.snapshot, since)
        _warm[self.store.table] = self.snapshot
        now = self.clock()
        self._count_overdue(now)
        parcels = self._send_held_before(parcels)
        for parcel in parcels:
            own = own_record(parcel)
            if own is not None:
                self._own[id(parcel)] = own
                if own.kind == "merge":
                    self._merges_here.add(own.key["sk"]["S"])
        to_send: list[Parcel] = []
        held: list[Parcel] = []
        early: dict[int, list[Parcel]] = {}
        for parcel in parcels:
            own = self._own.get(id(parcel))
            if parcel.kind in FENCED_KINDS:
                remaining = _seconds(_order_time(parcel)) + self.fence_seconds - now
                if remaining > 0:
                    early.setdefault(math.ceil(remaining), []).append(parcel)
                    continue
            judgement = self._judge(parcel)
            if judgement == "send" and parcel.kind in FENCED_KINDS and own is not None:
                current = self.store.get(own)  # one consistent read: a duplicate or redrive makes no call
                if current is not None and current.delivered:
                    parcel.state = State.DELIVERED
                    self.counts["already_delivered"] += 1
                    continue
            if judgement == "send":
                to_send.append(parcel)
            elif judgement == "hold":
                held.append(parcel)
            else:
                self._settle_unsent(parcel, judgement)
        self._requeue(held, self.hold_delay_seconds, "held")
        for delay, parcels_back in early.items():
            self._requeue(parcels_back, delay, "early")
        return to_send

    def before_call(self, parcels: list[Parcel]) -> list[Parcel]:
        """Renew a stale snapshot and judge a call's parcels again; return those still to send."""
        with self._lock:
            snapshot = self.snapshot
            if snapshot is None or snapshot.fresh():
                return parcels
            self.snapshot = self.store.snapshot(snapshot.since, snapshot)
            _warm[self.store.table] = self.snapshot
            self._rechecked.clear()
            self.counts["snapshots_renewed"] += 1
            to_send: list[Parcel] = []
            held: list[Parcel] = []
            for parcel in parcels:
                judgements = {self._judge(member) for member in parcel.members or [parcel]}
                if judgements == {"send"}:
                    to_send.append(parcel)
                elif parcel.members:  # a coalesced object: its messages come back and are judged anew
                    parcel.state = State.FAILED
                elif judgements == {"hold"}:
                    held.append(parcel)
                else:
                    self._settle_unsent(parcel, next(j for j in ("drop", "after_merge") if j in judgements))
            self._requeue(held, self.hold_delay_seconds, "held")
            return to_send

    def after_send(self, parcels: Iterable[Parcel]) -> None:
        """Record what Braze now has: a delete erases our copies and is marked delivered (releasing
        held objects), a merge is marked delivered, an alias record removed."""
        for parcel in parcels:
            own = self._own.get(id(parcel))
            if own is None or parcel.state not in (State.DELIVERED, State.REJECTED):
                continue
            try:
                if parcel.kind == "alias":
                    self.store.remove(own)
                elif parcel.kind == "merge":
                    self.store.mark_delivered(own)  # refused too: nothing to wait for
                elif parcel.state is State.DELIVERED:  # a delete Braze took
                    if self.attributes is not None:
                        self.attributes.forget(own.user)
                    self.store.mark_delivered(own)
                    self.counts["deletes_delivered"] += 1
                else:  # a refused delete stays undelivered: what follows keeps waiting (DeletesRefused)
                    self.counts["deletes_refused"] += 1
            except Exception:
                # Sent again when the message returns: a repeated delete, merge or alias is harmless.
                logger.exception("could not record a delivered delete, alias or merge")
                parcel.state = State.FAILED

    def merge_waits_for(self, merge: Parcel, first: Iterable[Parcel]) -> bool:
        """Whether a merge must go back because an older object of its merged-away user failed."""
        own = self._own.get(id(merge))
        if own is None:
            return False
        return any(
            p.state is State.FAILED and own.user in self._users(p) and _order_time(p) <= own.accepted_at for p in first
        )

    def _count_overdue(self, now: float) -> None:
        """Count the snapshot's records undelivered OVERDUE_SECONDS after acceptance, the oldest read
        again first (within the limits above): OrderRecordsOverdue, a gauge."""
        snapshot = self.snapshot
        assert snapshot is not None
        cutoff = _iso(now - OVERDUE_SECONDS)
        records = [r for same_user in snapshot.records.values() for r in same_user]
        late = sorted((r for r in records if not r.delivered and r.accepted_at < cutoff), key=lambda r: r.accepted_at)
        rechecks = 0
        for record in late:
            sk = record.key["sk"]["S"]
            current: OrderRecord | None = record
            due = now - _overdue_read.get(sk, -math.inf) >= _OVERDUE_RECHECK_EVERY_SECONDS
            if due and rechecks < _OVERDUE_RECHECKS_PER_INVOCATION:
                rechecks += 1
                _overdue_read[sk] = now
                self._rechecked.add(sk)  # _judge need not read it again
                current = self.store.recheck(snapshot, record)
            if current is not None and not current.delivered:
                self.counts["overdue"] += 1

    # ------------------------------------------------------------------ verdicts

    def _judge(self, parcel: Parcel) -> Judgement:
        """The verdict for one parcel under the current snapshot, rechecking a record that would hold it."""
        snapshot = self.snapshot
        assert snapshot is not None
        if not snapshot.records:  # the usual batch: no delete, alias or merge to judge by
            return "send"
        users = self._users(parcel)
        order_time = _order_time(parcel)
        own = self._own.get(id(parcel))
        while True:
            view = snapshot if own is None else _without_own(snapshot, users, own)
            verdict, record = view.verdict(users, order_time)
            if verdict != "hold" or record is None:
                break
            sk = record.key["sk"]["S"]
            if sk in self._rechecked:
                break
            with self._lock:
                self._rechecked.add(sk)
                self.store.recheck(snapshot, record)
        if verdict == "send" and parcel.kind != "delete" and self._after_merge(snapshot, users, order_time, own):
            return "after_merge"
        return verdict

    def _after_merge(self, snapshot: Snapshot, users: list[str], order_time: str, own: OrderRecord | None) -> bool:
        """Accepted before a merge of its user that may reach Braze before this object: the snapshot was
        taken too long after the merge for the fence to keep this object ahead of it."""
        for user in users:
            for record in snapshot.records.get(user, ()):
                if record.kind != "merge" or (own is not None and record.key == own.key):
                    continue
                if not record.delivered and record.key["sk"]["S"] in self._merges_here:
                    continue  # this batch's merge: it goes after this object (Sender.deliver)
                if order_time <= record.accepted_at and snapshot.taken_at > _plus(
                    record.accepted_at, RECORD_WRITE_SECONDS + CLOCK_SKEW_SECONDS
                ):
                    return True
        return False

    def _users(self, parcel: Parcel) -> list[str]:
        digests = self._digests.get(id(parcel))
        if digests is None:
            digests = [self._digest(u) for u in identities(parcel.kind, parcel.array, parcel.object)]
            self._digests[id(parcel)] = digests
        return digests

    def _digest(self, user: Hashable) -> str:
        """A user's digest, computed once per invocation (a user often has several objects)."""
        digest = self._digest_of.get(user)
        if digest is None:
            digest = self._digest_of[user] = user_digest(user)
        return digest

    # ------------------------------------------------------------------ settling

    def _settle_unsent(self, parcel: Parcel, judgement: Judgement) -> None:
        own = self._own.get(id(parcel))
        if judgement == "after_merge":
            parcel.state = State.REJECTED
            self.counts["after_merge"] += 1
            self.keep(
                _report(parcel, ARRIVED_AFTER_MERGE, "accepted before a merge of its user that reached Braze first")
            )
            return
        parcel.state = State.DROPPED
        self.counts["dropped"] += 1
        self.keep(_report(parcel, DROPPED_AFTER_DELETE, "accepted before a delete of its user", with_object=False))
        if own is None:
            return
        try:  # a delete or merge superseded by a later tombstone; an alias of a deleted user
            if own.kind == "alias":
                self.store.remove(own)
            else:
                self.store.mark_delivered(own)
        except Exception:
            logger.exception("could not settle a superseded order record")
            parcel.state = State.FAILED

    def _send_held_before(self, parcels: Sequence[Parcel]) -> list[Parcel]:
        """Send the parcels of groups an earlier attempt recorded as held into a copy as that copy again,
        whatever their verdict would be now; return the others, to be judged.

        Such a group's copy may be in the queue already (the sender died after SQS took it and before
        the positions were marked done): sending the objects directly would deliver them twice, and
        sending the copy again (same id, `dedupe`) delivers them once. The same delay as a hold keeps
        the two copies apart in time, so the second finds the first recorded whole. The copy is judged
        when it arrives: still held, dropped by a later delete, or sent."""
        groups: dict[tuple[int, tuple[int, ...]], list[Parcel]] = {}
        to_judge: list[Parcel] = []
        for parcel in parcels:
            group = next((g for g in parcel.message.held_before if parcel.position in g), None)
            if group is None:
                to_judge.append(parcel)
            else:
                groups.setdefault((id(parcel.message), group), []).append(parcel)
        for (_, positions), group_parcels in groups.items():
            self._copy(group_parcels, positions, self.hold_delay_seconds, "held", record=False)
        return to_judge

    def _requeue(self, parcels: list[Parcel], delay_seconds: int, count: str) -> None:
        """Send parcels back to the queue as new messages, one per original message, after a delay."""
        by_message: dict[int, list[Parcel]] = {}
        for parcel in parcels:
            by_message.setdefault(id(parcel.message), []).append(parcel)
        for group in by_message.values():
            self._copy(group, tuple(p.position for p in group), delay_seconds, count, record=count == "held")

    def _copy(
        self, parcels: list[Parcel], positions: tuple[int, ...], delay_seconds: int, count: str, record: bool
    ) -> None:
        """Send these positions of one message back to the queue as its copy for `count`; `record`: first
        note them in the ledger as held into it, so that a returning message sends that copy again."""
        message = parcels[0].message
        envelope = message.envelope
        assert envelope is not None
        # From the envelope, not the parcels: the copy sent again when the message returns is the same.
        items = [
            (envelope.items[n].array, envelope.items[n].index, queue.encode_object(envelope.items[n].object))
            for n in positions
        ]
        copy_ids = _copy_ids(f"{envelope.id}/{count}/" + ",".join(str(n) for n in positions))
        try:
            if record:
                self.ledger.record_hold(envelope.id, positions)
            bodies = queue.build_messages(
                envelope.kind,
                items,
                source=envelope.source,
                correlation_id=envelope.correlation_id,
                max_message_bytes=max(_SQS_MAX_MESSAGE_BYTES, len(message.body)),
                received_at=envelope.received_at,
                accepted_at=envelope.order_time,
                envelope_id=copy_ids,
                dedupe=True,
            )
            queue.send_messages(self.queue_url, bodies, delay_seconds=min(delay_seconds, _SQS_MAX_DELAY_SECONDS))
        except Exception:
            # Recorded as held, the group stays so: SQS may have taken the copy (a timeout is no
            # refusal), and the returning message sends the same copy again.
            logger.exception("could not send held objects back to the queue; their message will be retried")
            for parcel in parcels:
                parcel.state = State.FAILED
            return
        for parcel in parcels:
            parcel.state = State.HELD
        self.counts[count] += len(parcels)


def _copy_ids(copy_of: str) -> Callable[[int], str]:
    """The envelope ids of the copies of `copy_of` (an envelope id, why, and the positions sent back)."""
    return lambda number: str(uuid.uuid5(_COPY_NAMESPACE, f"{copy_of}/{number}"))


def _forget_older(snapshot: Snapshot, since: str) -> None:
    """Leave out carried records accepted before `since`, as a cold container's snapshot would: a warm
    container's memory stays bounded by the lookback, and both judge alike."""
    for user in [u for u, records in snapshot.records.items() if any(r.accepted_at < since for r in records)]:
        kept = [r for r in snapshot.records[user] if r.accepted_at >= since]
        if kept:
            snapshot.records[user] = kept
        else:
            del snapshot.records[user]


def _without_own(snapshot: Snapshot, users: list[str], own: OrderRecord) -> Snapshot:
    """The snapshot as a delete, alias or merge sees it: without its own record and, for a delete,
    without earlier tombstones (it deletes the same user again; waiting for them could only delay it)."""

    def counts(record: OrderRecord) -> bool:
        if record.key == own.key:
            return False
        return not (own.kind == "delete" and record.kind == "delete" and record.accepted_at < own.accepted_at)

    records = {user: [r for r in snapshot.records.get(user, ()) if counts(r)] for user in users}
    return Snapshot(snapshot.taken_at_monotonic, snapshot.taken_at, snapshot.since, records)


def _report(parcel: Parcel, reason_type: str, message: str, with_object: bool = True) -> dict[str, Any]:
    envelope = parcel.message.envelope
    assert envelope is not None
    return {
        "rejected_at": queue.utc_now_iso(),
        "reason": {"type": reason_type, "message": message},
        "braze": None,
        "origin": {
            "sqs_message_id": parcel.message.sqs_message_id,
            "envelope_id": envelope.id,
            "source": envelope.source,
            "correlation_id": envelope.correlation_id,
            "received_at": envelope.received_at,
            "accepted_at": envelope.order_time,
            "kind": parcel.kind,
            "array": parcel.array,
            "index": parcel.index,
            "position": parcel.position,
        },
        "object": parcel.object if with_object else None,
    }


def _order_time(parcel: Parcel) -> str:
    envelope = parcel.message.envelope
    assert envelope is not None
    return envelope.order_time


def _seconds(iso: str) -> float:
    try:
        return datetime.strptime(iso[:23].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return datetime.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()


def _plus(iso: str, seconds: float) -> str:
    return _iso(_seconds(iso) + seconds)


def _iso(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

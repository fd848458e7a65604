"""Spending as few Braze data points as the batch allows, without changing what ends up on a profile.

The sender calls `prepare` before packing and `settle` right after sending:

1. Coalescing (always): each user's attributes objects are folded into as few as their meaning
   allows (delivery.coalesce). A coalesced object stands for its members: after sending, every
   member takes its state; a rejection is kept per member, with the member's own object.
2. Delta sending (DELTA_SENDING_ENABLED): one read of the last-sent store for the batch's users
   (delivery.attribute_state) drops each plain attribute value that equals the one last sent, or that
   was received before the value last sent (an older value never overwrites a newer one).
   Operations (`inc`, array operations, `_merge_objects` merges) and subscription states, groups and
   push tokens always go through. An object left with nothing to write is not sent: its members
   count as delivered. A value the store vouches for that an object changes is first marked unknown
   (one write per such user, before sending: a failed record after sending then leaves "unknown", not
   the old value); a user whose marking fails is held back (its messages come back). After sending,
   one write per user records what Braze accepted; what may or may not have reached the profile (a
   failed call, an update-only object) is recorded as unknown, so it is never taken for the
   profile's value.

Delta sending covers objects that name the user by external_id: the one identifier that always
means the same profile. Aliases, emails and phones can be merged into other profiles by
/users/identify or resolve to a different profile over time, which the store cannot see.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from braze_forwarder import queue
from braze_forwarder.braze.datapoints import CONTROL_KEYS, FREE_ATTRIBUTES, data_points, is_plain
from braze_forwarder.delivery.attribute_state import (
    AttributeStore,
    Written,
    user_id,
    value_digest,
)
from braze_forwarder.delivery.coalesce import Fold, Item, coalesce
from braze_forwarder.delivery_model import Parcel, State
from braze_forwarder.observability import MetricUnit, logger, metrics

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WRITE_WORKERS = 8


@dataclasses.dataclass(eq=False)
class _Slot:
    """One coalesced object on its way: its members, what it sends, what that saved."""

    fold: Fold
    members: list[Parcel]
    object: dict[str, Any] | None  # what goes to Braze; None: nothing needs sending
    input_points: int
    coalesced_points: int
    sent_points: int = 0
    user: str | None = None  # the store's key, when delta sending covers the object
    stale: int = 0
    parcel: Parcel | None = None
    held: bool = False  # its stored values could not be marked unknown: not sent, retried


class DataPointSavings:
    """Coalescing and delta sending for one sender invocation."""

    def __init__(self, store: AttributeStore | None = None) -> None:
        self.store = store
        self.counts = {
            "DataPointsSent": 0,
            "DataPointsSavedCoalescing": 0,
            "DataPointsSavedDelta": 0,
            "StaleValuesDropped": 0,
        }
        self._slots: list[_Slot] = []
        self._prepared: list[Parcel] = []
        self._states: dict[str, dict[str, Written]] = {}
        self._unknowns: dict[str, dict[str, Written]] = defaultdict(dict)  # written before sending

    # ------------------------------------------------------------------ before packing

    def prepare(self, parcels: Sequence[Parcel]) -> list[Parcel]:
        """The parcels to pack: coalesced objects in place of their members, nothing for objects with
        nothing to send (their members are delivered already)."""
        attributes = [p for p in parcels if p.kind == "track" and p.array == "attributes" and type(p.object) is dict]
        if not attributes:
            self._prepared = list(parcels)
            return self._prepared
        try:
            self._plan(attributes)
        except Exception:
            # Always on, so a fault here must not hold up delivery: the batch goes as it came.
            logger.exception("could not coalesce the batch's attributes; sending them as received")
            metrics.add_metric(name="DataPointSavingsErrors", unit=MetricUnit.Count, value=1)
            self._slots, self._states = [], {}
            self._unknowns.clear()
            self._prepared = list(parcels)
            return self._prepared
        if self._unknowns:
            self._mark_unknown_before_sending()
        anchors = self._make_parcels(attributes)
        taken = {id(p) for p in attributes}
        prepared: list[Parcel] = []
        for parcel in parcels:
            if id(parcel) in taken:
                # A user's objects go where the user's first one was: packing keeps them together anyway.
                prepared.extend(anchors.pop(id(parcel), ()))
            else:
                prepared.append(parcel)
        self._prepared = prepared
        return prepared

    def _plan(self, attributes: list[Parcel]) -> None:
        times: dict[int, int | None] = {}
        items = [Item(p.object, _received_ms(p, times), p.size) for p in attributes]
        folds = coalesce(items, [p.user for p in attributes])
        for fold in folds:
            members = [attributes[i] for i in fold.members]
            sent = fold.object()
            points = 0 if sent is None else data_points("attributes", sent)
            if len(members) > 1 or sent is not members[0].object:
                input_points = sum(data_points("attributes", m.object) for m in members)
            else:
                input_points = points
            self._slots.append(_Slot(fold, members, sent, input_points, points, sent_points=points))
        if self.store is not None:
            self._drop_known()

    def _drop_known(self) -> None:
        assert self.store is not None
        covered = [s for s in self._slots if s.object is not None and "external_id" in (s.fold.identity or {})]
        for slot in covered:
            slot.user = user_id(slot.members[0].user)
        if not covered:
            return
        try:
            self._states = self.store.read({slot.user for slot in covered if slot.user is not None})
        except Exception:
            # Everything is sent as it is: data points spent, nothing lost. What the store holds is
            # not known, so every value sent is first marked unknown there (see _mark_unknown_before_sending).
            logger.exception("could not read the attribute state; sending every value, marked unknown first")
            metrics.add_metric(name="AttributeStateReadErrors", unit=MetricUnit.Count, value=1)
            for slot in covered:
                assert slot.object is not None and slot.user is not None and slot.fold.identity is not None
                for name in _written_names(slot.object, slot.fold.identity):
                    self._note_unknown(slot.user, name, slot.fold.times.get(name), None)
            return
        # Attributes an earlier object of the user in this batch sends: the stored value no longer
        # says what the profile holds when a later object's value is applied.
        touched: dict[str, set[str]] = defaultdict(set)
        for slot in covered:
            assert slot.object is not None and slot.user is not None and slot.fold.identity is not None
            state = self._states.get(slot.user, {})
            flag = slot.object.get("_merge_objects") is True
            kept: dict[str, Any] = {}
            dropped = False
            for name, value in slot.object.items():
                written = state.get(name)
                if (
                    written is None
                    or name in slot.fold.identity
                    or name in CONTROL_KEYS
                    or name in FREE_ATTRIBUTES  # users ask for these to be sent always; they cost nothing
                    or not is_plain(value, flag)  # operations change the stored value: always sent
                ):
                    kept[name] = value
                    continue
                received = slot.fold.times.get(name)
                if name not in touched[slot.user] and written.digest == value_digest(value):
                    dropped = True  # the profile holds it already
                elif written.at is not None and received is not None and received < written.at:
                    dropped = True  # a newer value was sent already
                    slot.stale += 1
                else:
                    kept[name] = value
            touched[slot.user].update(name for name in kept if name not in slot.fold.identity)
            for name in _written_names(kept, slot.fold.identity):
                written = state.get(name)
                if written is not None and written.digest is not None:
                    # The store vouches for a value this object changes. Should recording the new
                    # value fail after Braze accepted it, the store would go on vouching for the old
                    # one and a change back to it would be left out: mark it unknown first.
                    self._note_unknown(slot.user, name, slot.fold.times.get(name), written.at)
            if dropped:
                writes = [name for name in kept if name not in slot.fold.identity and name not in CONTROL_KEYS]
                slot.object = kept if writes else None
                slot.sent_points = data_points("attributes", kept) if writes else 0

    def _note_unknown(self, user: str, name: str, received: int | None, stored_at: int | None) -> None:
        entries = self._unknowns[user]
        prior = entries.get(name)
        entries[name] = Written(None, _later(_later(received, stored_at), prior.at if prior else None))

    def _mark_unknown_before_sending(self) -> None:
        """One write per user whose stored values this batch changes: those values become unknown
        before Braze sees the new ones. A user whose write fails is not sent this time (retried)."""
        assert self.store is not None
        store, users = self.store, list(self._unknowns.items())
        failed: set[str] = set()
        with ThreadPoolExecutor(max_workers=min(_WRITE_WORKERS, len(users)), thread_name_prefix="state") as pool:
            futures = {pool.submit(store.write, user, entries): user for user, entries in users}
            for future, user in futures.items():
                if future.exception() is not None:
                    failed.add(user)
        for user, entries in users:
            if user not in failed:
                known = self._states.setdefault(user, {})
                known.update(entries)  # what the store now holds
        self._unknowns.clear()
        if not failed:
            return
        logger.error(
            "could not mark attribute values unknown before sending; holding those users' attributes back",
            extra={"users": len(failed), "of_users": len(users)},
        )
        metrics.add_metric(name="AttributeStateWriteErrors", unit=MetricUnit.Count, value=len(failed))
        for slot in self._slots:
            if slot.user in failed and slot.object is not None:
                slot.held = True

    def _make_parcels(self, attributes: list[Parcel]) -> dict[int, list[Parcel]]:
        """Build each slot's parcel; return them by the id of their user's first attributes parcel."""
        first_of_user: dict[Any, int] = {}
        for parcel in attributes:
            first_of_user.setdefault(parcel.user, id(parcel))
        anchors: dict[int, list[Parcel]] = defaultdict(list)
        for slot in self._slots:
            lead = slot.members[0]
            if slot.held:
                for member in slot.members:
                    member.state = State.FAILED  # its message comes back; nothing was sent
                continue
            if slot.object is None:
                for member in slot.members:
                    member.state = State.DELIVERED  # nothing needed sending
                continue
            if len(slot.members) == 1 and slot.object is lead.object:
                slot.parcel = lead
            else:
                slot.parcel = dataclasses.replace(
                    lead,
                    object=slot.object,
                    size=len(queue.encode_object(slot.object)),
                    members=list(slot.members),
                    state=State.PENDING,
                )
            anchors[first_of_user[lead.user]].append(slot.parcel)
        return anchors

    # ------------------------------------------------------------------ after sending

    def settle(self, deadline: float) -> None:
        """Give members their coalesced object's state, count, and record what Braze accepted."""
        for slot in self._slots:
            if slot.parcel is not None and slot.parcel.members:
                state = State.FAILED if slot.parcel.state is State.PENDING else slot.parcel.state
                for member in slot.members:
                    member.state = state
        counted = set()
        for slot in self._slots:
            if slot.parcel is not None:
                counted.add(id(slot.parcel))
                if slot.parcel.state is State.DELIVERED:
                    self.counts["DataPointsSent"] += slot.sent_points
        self.counts["DataPointsSent"] += sum(
            data_points(p.array, p.object)
            for p in self._prepared
            if p.kind == "track" and p.state is State.DELIVERED and id(p) not in counted
        )
        for slot in self._slots:
            if slot.held:
                continue
            if slot.parcel is None or slot.parcel.state is State.DELIVERED:
                self.counts["DataPointsSavedCoalescing"] += slot.input_points - slot.coalesced_points
                self.counts["DataPointsSavedDelta"] += slot.coalesced_points - slot.sent_points
                self.counts["StaleValuesDropped"] += slot.stale
        if self.store is not None:
            self._record(deadline)

    def _record(self, deadline: float) -> None:
        updates: dict[str, dict[str, Written]] = defaultdict(dict)
        for slot in self._slots:
            if slot.user is None or slot.parcel is None or slot.parcel.state is State.REJECTED:
                continue  # nothing sent, or refused: the profile did not change
            assert slot.object is not None and slot.fold.identity is not None
            # Update-only objects of an unknown user are accepted and write nothing (§2.3); a failed
            # call may have been applied before it failed (a timeout, a dropped connection).
            delivered = slot.parcel.state is State.DELIVERED
            creates = slot.fold.identity.get("_update_existing_only") is not True
            before = self._states.get(slot.user, {})
            entries = updates[slot.user]
            flag = slot.object.get("_merge_objects") is True
            for name, value in slot.object.items():
                if name in slot.fold.identity or name in CONTROL_KEYS or name in FREE_ATTRIBUTES:
                    continue
                prior = entries.get(name) or before.get(name)
                prior_at = prior.at if prior is not None else None
                newest = _later(slot.fold.times.get(name), prior_at)
                if delivered and creates and is_plain(value, flag):
                    entries[name] = Written(value_digest(value), newest)
                else:
                    entries[name] = Written(None, newest if creates else prior_at)
        pending = [(user, entries) for user, entries in updates.items() if entries]
        if not pending:
            return
        failed, last_error = 0, ""
        with ThreadPoolExecutor(max_workers=min(_WRITE_WORKERS, len(pending)), thread_name_prefix="state") as pool:
            futures = [pool.submit(self._write, user, entries, deadline) for user, entries in pending]
            for future in futures:
                error = future.exception()
                if error is not None:
                    failed += 1
                    last_error = type(error).__name__
        if failed:
            # The values were delivered; only the record is missing. Until it is written again the
            # store may still hold these attributes' previous values for these users.
            logger.error(
                "could not record sent attribute values",
                extra={"users": failed, "of_users": len(pending), "error": last_error},
            )
            metrics.add_metric(name="AttributeStateWriteErrors", unit=MetricUnit.Count, value=failed)

    def _write(self, user: str, entries: dict[str, Written], deadline: float) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError("no time left in the invocation")
        assert self.store is not None
        self.store.write(user, entries)


def _written_names(obj: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """The attributes an object writes that the store keeps (not its identifier, controls or free fields)."""
    return [name for name in obj if name not in identity and name not in CONTROL_KEYS and name not in FREE_ATTRIBUTES]


def _received_ms(parcel: Parcel, cache: dict[int, int | None]) -> int | None:
    """When the API received the parcel's message, epoch milliseconds (None when unreadable)."""
    message = parcel.message
    key = id(message)
    if key not in cache:
        envelope = message.envelope
        cache[key] = _parse_ms(envelope.received_at) if envelope is not None else None
    return cache[key]


def _parse_ms(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _later(first: int | None, second: int | None) -> int | None:
    if first is None:
        return second
    if second is None:
        return first
    return max(first, second)

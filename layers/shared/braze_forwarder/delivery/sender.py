"""Delivering a batch of queue messages to Braze.

Track, identify, alias, delete and merge objects go to their own endpoints (PATHS). Once the batch is
open, the order gate (delivery.ordering) judges every object against the deletes, aliases and merges
of its users: objects accepted before a delete are dropped, objects after an undelivered one go back
to the queue, deletes and merges wait for their fence and are sent once (docs/ordering.md). The rest
is packed into as few calls as Braze's limits allow (see braze.packing), sent in parallel (deletes
and merges after the batch's other objects), and every Braze answer is mapped back to the objects it
concerns:

- delivered objects are done; objects Braze refuses for good (per-object `errors`, or a 400 that
  splitting narrowed down to one object) are kept with the reason in the rejected-objects store;
- 429 waits as Braze's headers say, 5xx / timeouts / dropped connections back off and retry, all
  inside the invocation's remaining time; what is still unsent then fails only its own messages;
- a message that goes back to the queue after some of its objects were delivered records those in
  the delivery ledger, so its next attempt sends only the rest.

Everything the sender reads or writes outside itself — the Braze client and key, the ledger, the
rejected-objects store, the attribute store — is handed in (SenderParts): the handler wires the real
ones, tests and the soak give their own or wrap the real ones.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from braze_forwarder import queue
from braze_forwarder.braze.client import BrazeClient, BrazeResponse, Verdict, backoff_seconds, retry_delay_seconds
from braze_forwarder.braze.credentials import ApiKey
from braze_forwarder.braze.packing import Call, Limits, pack, user_key
from braze_forwarder.config import SenderSettings, settings
from braze_forwarder.delivery.attribute_state import AttributeStore
from braze_forwarder.delivery.ledger import Ledger
from braze_forwarder.delivery.ordering import FIRST_KINDS, OrderGate, parcel_user
from braze_forwarder.delivery.rate_budget import NoBudget, RateBudget
from braze_forwarder.delivery.savings import DataPointSavings
from braze_forwarder.delivery_model import DONE, Message, Outcome, Parcel, State
from braze_forwarder.ledger_entries import LedgerEntry
from braze_forwarder.observability import MetricUnit, logger, metrics
from braze_forwarder.rejects import RejectStore
from braze_forwarder.user_order import OrderStore

PATHS = {
    "track": "/users/track",
    "identify": "/users/identify",
    "alias": "/users/alias/new",
    "delete": "/users/delete",
    "merge": "/users/merge",
}
IDENTIFY_ARRAYS = ("aliases_to_identify", "emails_to_identify", "phone_numbers_to_identify")
DELETE_ARRAYS = ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers")
# Each kind's request arrays, in the order a body lists them.
ARRAYS = {
    "track": ("attributes", "events", "purchases"),
    "identify": IDENTIFY_ARRAYS,
    "alias": ("user_aliases",),
    "delete": DELETE_ARRAYS,
    "merge": ("merge_updates",),
}


# Kinds whose objects name their user the way braze.packing.user_key reads; the others name theirs in
# Braze's own identifier shapes (user_order.identities).
PACKED_BY_OBJECT = ("track", "identify")


class BrazeUnusable(Exception):
    """Every call would fail the same way (wrong key, missing permission, wrong endpoint)."""


@dataclass
class _Stats:
    calls: int = 0
    retried: int = 0
    rate_limited: int = 0
    rate_limit_wait_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: float) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class _RateGate:
    """Shared by every call of an invocation: after a 429, nobody calls Braze before it said to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def pass_before(self, deadline: float) -> float | None:
        """Wait for the gate; return the seconds waited, or None when it opens too late."""
        until = self._until
        if until > deadline:
            return None
        waited = max(0.0, until - time.monotonic())
        if waited:
            time.sleep(waited)
        return waited


@dataclass(frozen=True)
class SenderParts:
    """What a Sender talks to: Braze (client, key) and its stores. None as attributes: no delta sending.
    `order`: the UserOrderTable that deletes, aliases and merges are ordered by (delivery.ordering)."""

    client: BrazeClient
    api_key: ApiKey
    ledger: Ledger
    rejects: RejectStore
    attributes: AttributeStore | None = None
    order: OrderStore = field(kw_only=True)
    budget: RateBudget | None = None  # None: no budget shared with other invocations


def deliver_records(
    records: Sequence[tuple[str, str]], remaining_seconds: Callable[[], float], parts: SenderParts
) -> Outcome:
    """Deliver one invocation's SQS records, (message id, body) each, with the deployment's settings."""
    return Sender(settings(SenderSettings), parts).deliver(records, remaining_seconds)


class Sender:
    """Delivers one invocation's messages. Create one per invocation."""

    def __init__(self, config: SenderSettings, parts: SenderParts) -> None:
        self.config = config
        self.client = parts.client
        self.api_key = parts.api_key
        self.ledger = parts.ledger
        self.rejects = parts.rejects
        self.limits = {
            "track": Limits(
                config.braze_track_batch_limit, config.braze_track_batch_mode, config.braze_max_request_bytes
            ),
            "identify": Limits(config.braze_identify_batch_limit, "total", config.braze_max_request_bytes),
            "alias": Limits(config.braze_alias_batch_limit, "total", config.braze_max_request_bytes),
            "delete": Limits(config.braze_delete_batch_limit, "total", config.braze_max_request_bytes),
            "merge": Limits(config.braze_merge_batch_limit, "total", config.braze_max_request_bytes),
        }
        self._attempt_seconds = config.braze_connect_timeout_seconds + config.braze_read_timeout_seconds
        # Braze limits /users/track on its own; identify, alias, delete and merge share one budget.
        shared = _RateGate()
        self._gates = {kind: _RateGate() if kind == "track" else shared for kind in PATHS}
        self._budget = parts.budget or NoBudget()
        self._stats = _Stats()
        self._stop = threading.Event()
        self._records_lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._records_kept = True
        self._deadline = 0.0
        # Without DELTA_SENDING_ENABLED the attribute store is neither read nor written.
        self._savings = DataPointSavings(parts.attributes if config.delta_sending_enabled else None)
        self.order = OrderGate(
            parts.order, parts.ledger, config, self._keep, parts.attributes if config.delta_sending_enabled else None
        )

    # ------------------------------------------------------------------ the batch

    def deliver(self, records: Sequence[tuple[str, str]], remaining_seconds: Callable[[], float]) -> Outcome:
        """Deliver SQS records given as (message id, body); return which messages must come back."""
        self._deadline = time.monotonic() + remaining_seconds() - self.config.time_reserve_seconds
        messages = [Message(message_id, body) for message_id, body in records]
        outcome = Outcome(failed_message_ids=[])
        self._open(messages, outcome)
        parcels = self._savings.prepare(self._judge([p for m in messages for p in m.parcels]))
        calls = {kind: self._pack(kind, [p for p in parcels if p.kind == kind]) for kind in PATHS}
        # Deletes and merges go after the rest of the batch: an object accepted before a merge reaches
        # Braze first (objects accepted after a delete, alias or merge are held by the order gate).
        self._send_all({kind: calls[kind] for kind in FIRST_KINDS})
        first = [p for kind in FIRST_KINDS for call in calls[kind] for p in call.parcels]
        for merge in (p for call in calls["merge"] for p in call.parcels):
            if self.order.merge_waits_for(merge, first):
                merge.state = State.FAILED
        self._send_all({kind: calls[kind] for kind in PATHS if kind not in FIRST_KINDS})
        self.order.after_send(p for kind in PATHS for call in calls[kind] for p in call.parcels)
        # Members take their coalesced object's state; the last-sent store learns what Braze accepted.
        self._savings.settle(self._deadline + self.config.time_reserve_seconds / 2)
        for parcel in (p for m in messages for p in m.parcels):
            if parcel.state is State.PENDING:
                parcel.state = State.FAILED
        outcome.rejected_records_key = self._keep_rejections(messages)
        self._settle(messages, outcome)
        outcome.calls = self._stats.calls
        self._emit_metrics(calls, outcome)
        return outcome

    def _judge(self, parcels: list[Parcel]) -> list[Parcel]:
        """The parcels the order gate lets go now; if the order store cannot be read, none: their
        messages come back (sending unjudged objects could re-create a deleted user)."""
        try:
            return self.order.open(parcels)
        except Exception:
            logger.exception("could not read the user order records; the batch will be retried")
            metrics.add_metric(name="OrderStoreErrors", unit=MetricUnit.Count, value=1)
            _mark(parcels, State.FAILED)
            return []

    def _pack(self, kind: str, parcels: list[Parcel]) -> list[Call[Parcel]]:
        """Pack one kind's parcels; Braze takes one identifier type per /users/delete request."""
        if kind != "delete":
            return pack(parcels, self.limits[kind])
        return [
            call
            for array in DELETE_ARRAYS
            for call in pack([p for p in parcels if p.array == array], self.limits[kind])
        ]

    def _open(self, messages: list[Message], outcome: Outcome) -> None:
        """Decode each envelope and turn its objects that are not done yet into parcels."""
        for message in messages:
            try:
                message.envelope = queue.decode(message.body)
            except queue.EnvelopeError as exc:
                logger.error("queue message is not a valid envelope", extra={"sqs_message_id": message.sqs_message_id})
                self._keep(_envelope_record(message, str(exc)))
        opened = [m for m in messages if m.envelope is not None]
        # Each opened message has an envelope; mypy does not narrow through the filter above.
        entries = self.ledger.entries([m.envelope.id for m in opened])  # type: ignore[union-attr]
        deduplicated: set[str] = set()
        for message in opened:
            envelope = message.envelope
            assert envelope is not None
            entry = entries.get(envelope.id, LedgerEntry())
            message.done_before = entry.done
            if envelope.dedupe:
                if envelope.id in deduplicated:  # both copies in one batch: the first one carries the objects
                    message.done_before = frozenset(range(len(envelope.items)))
                deduplicated.add(envelope.id)
            message.held_before = tuple(group for group in entry.held if not message.done_before.issuperset(group))
            for position, item in enumerate(envelope.items):
                if position in message.done_before:
                    outcome.skipped_already_done += 1
                    continue
                size = len(queue.encode_object(item.object))
                message.parcels.append(
                    Parcel(
                        envelope.kind,
                        item.array,
                        item.object,
                        size,
                        user_key(item.object)
                        if envelope.kind in PACKED_BY_OBJECT
                        else parcel_user(envelope.kind, item.array, item.object),
                        message,
                        position,
                        item.index,
                    )
                )

    # ------------------------------------------------------------------ sending

    def _send_all(self, calls: dict[str, list[Call[Parcel]]]) -> None:
        """Send every call, at most BRAZE_MAX_IN_FLIGHT at a time; a chained call waits for its predecessor."""
        followers: dict[int, list[tuple[str, Call[Parcel]]]] = defaultdict(list)
        roots: list[tuple[str, Call[Parcel]]] = []
        for kind, kind_calls in calls.items():
            for call in kind_calls:
                # Only pending parcels go: a merge the order gate sent back waits for its older objects.
                call.parcels[:] = [p for p in call.parcels if p.state is State.PENDING]
                if call.after is None:
                    roots.append((kind, call))
                else:
                    followers[id(call.after)].append((kind, call))
        with ThreadPoolExecutor(max_workers=self.config.braze_max_in_flight, thread_name_prefix="braze") as pool:
            running: dict[Future[None], Call[Parcel]] = {
                pool.submit(self._send, kind, call.parcels): call for kind, call in roots
            }
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    call = running.pop(future)
                    self._note_failure(future, call)
                    succeeded = all(p.state in DONE for p in call.parcels)
                    for kind, follower in followers.pop(id(call), []):
                        if succeeded and not self._stop.is_set():
                            running[pool.submit(self._send, kind, follower.parcels)] = follower
                        else:  # sending it now could apply a user's objects out of order
                            _fail_chain(follower, followers)

    def _note_failure(self, future: Future[None], call: Call[Parcel]) -> None:
        """A call that raised fails its own objects; the batch still settles, so what was delivered
        elsewhere is recorded in the ledger rather than sent again."""
        error = future.exception()
        if error is None:
            return
        _mark(call.parcels, State.FAILED)
        if isinstance(error, BrazeUnusable):
            if not self._stop.is_set():
                logger.error(str(error))
                metrics.add_metric(name="BrazeConfigurationErrors", unit=MetricUnit.Count, value=1)
            self._stop.set()
        else:
            logger.error("unexpected error in a Braze call", exc_info=error)
            metrics.add_metric(name="SenderErrors", unit=MetricUnit.Count, value=1)

    def _send(self, kind: str, parcels: list[Parcel]) -> None:
        """Deliver parcels in one call, or in smaller ones when Braze refuses the call; set their states."""
        attempt = 0
        refreshed_key = False
        while True:
            if self._stop.is_set() or time.monotonic() + self._attempt_seconds > self._deadline:
                return _mark(parcels, State.FAILED)
            waited = self._gates[kind].pass_before(self._deadline - self._attempt_seconds)
            if waited is None:
                return _mark(parcels, State.FAILED)
            budget_waited = self._budget.take(kind, self._deadline - self._attempt_seconds)
            if budget_waited is None:
                return _mark(parcels, State.FAILED)
            waited += budget_waited
            # Last before the call, after every wait: no call starts on a snapshot of the order
            # records older than its life.
            parcels = self.order.before_call(parcels)
            if not parcels:
                return None
            key, generation = self.api_key.value()
            response = self.client.post(PATHS[kind], _body(kind, parcels), key)
            self._stats.add(calls=1, rate_limit_wait_seconds=waited)
            verdict = response.verdict
            if verdict is Verdict.SUCCESS:
                self._accept(kind, parcels, response)
                if response.window_exhausted():
                    self._gates[kind].hold(response.wait_seconds() or 0.0)
                    self._budget.hold(kind, response.wait_seconds() or 0.0)
                return None
            if verdict is Verdict.UNAUTHORIZED and not refreshed_key:
                refreshed_key = True
                self.api_key.refresh(generation)
                continue
            if verdict in (Verdict.UNAUTHORIZED, Verdict.MISCONFIGURED):
                raise BrazeUnusable(_misconfiguration_hint(response, self.config))
            if verdict is Verdict.SPLIT:
                return self._split(kind, parcels, response)
            attempt += 1
            if attempt >= self.config.braze_max_attempts:
                logger.warning("giving up on a Braze call", extra={"status": response.status, "attempts": attempt})
                return _mark(parcels, State.FAILED)
            self._stats.add(retried=1)
            if verdict is Verdict.RATE_LIMITED:
                self._stats.add(rate_limited=1)
                self._gates[kind].hold(retry_delay_seconds(response, attempt))
                self._budget.hold(kind, response.wait_seconds() or 0.0)
            else:
                pause = backoff_seconds(attempt)
                if time.monotonic() + pause + self._attempt_seconds > self._deadline:
                    return _mark(parcels, State.FAILED)
                time.sleep(pause)

    def _split(self, kind: str, parcels: list[Parcel], response: BrazeResponse) -> None:
        """Braze refused the whole call: halve it until the refused object stands alone, then keep it."""
        if len(parcels) == 1:
            self._reject(parcels[0], _braze_error_type(response), response.message, response)
            return
        middle = len(parcels) // 2
        first, second = parcels[:middle], parcels[middle:]
        self._send(kind, first)
        if all(p.state in DONE for p in first):
            self._send(kind, second)
        else:  # the halves may share a user; keep their order by not sending the second
            _mark(second, State.FAILED)

    def _accept(self, kind: str, parcels: list[Parcel], response: BrazeResponse) -> None:
        """Map a 2xx answer's per-object `errors` to their objects; everything else is delivered."""
        by_array: dict[str, list[Parcel]] = defaultdict(list)
        for parcel in parcels:
            by_array[parcel.array].append(parcel)
        unmapped = []
        for error in response.errors():
            target = _error_target(error, by_array)
            if target is None:
                unmapped.append(error)
            elif target.state is State.PENDING:
                self._reject(
                    target,
                    str(error.get("type") or "BRAZE_ERROR"),
                    str(error.get("message") or ""),
                    response,
                    error,
                )
        for parcel in parcels:
            if parcel.state is State.PENDING:
                parcel.state = State.DELIVERED
        if unmapped:
            # Braze named no object (or one outside the call): the objects count as delivered —
            # resending them would double-count the good ones — and the error is kept for a human.
            logger.warning("Braze reported errors that name no object", extra={"count": len(unmapped)})
            self._keep(_unmapped_record(kind, parcels, unmapped, response))

    # ------------------------------------------------------------------ records

    def _reject(
        self,
        parcel: Parcel,
        error_type: str,
        reason: str,
        response: BrazeResponse,
        error: dict[str, Any] | None = None,
    ) -> None:
        parcel.state = State.REJECTED
        # A coalesced object is kept as its members, each with its own object, to be replayed as sent.
        for member in parcel.members or [parcel]:
            record = _rejection_record(member, error_type, reason, response, error)
            if parcel.members:
                record["coalesced_with"] = len(parcel.members) - 1
            self._keep(record)

    def _keep(self, record: dict[str, Any]) -> None:
        with self._records_lock:
            self._records.append(record)

    def _keep_rejections(self, messages: list[Message]) -> str | None:
        """Write the rejected objects; if that fails, their messages go back to the queue instead."""
        try:
            return self.rejects.keep(self._records)
        except Exception:
            logger.exception("could not keep rejected objects; their messages will be retried")
            # Dropped objects too: their report lines were among the records.
            for parcel in (p for m in messages for p in m.parcels if p.state in (State.REJECTED, State.DROPPED)):
                parcel.state = State.FAILED
            self._records_kept = False
            return None

    def _settle(self, messages: list[Message], outcome: Outcome) -> None:
        """Decide each message's fate and record partial deliveries in the ledger; a `dedupe` envelope
        (deterministic id) delivered whole is recorded too, so a copy of it queued twice is skipped."""
        whole: dict[str, frozenset[int]] = {}
        for message in messages:
            states = [p.state for p in message.parcels]
            outcome.delivered += states.count(State.DELIVERED)
            outcome.rejected += states.count(State.REJECTED)
            outcome.failed += states.count(State.FAILED)
            outcome.dropped += states.count(State.DROPPED)
            outcome.held += states.count(State.HELD)
            if message.envelope is None:  # kept as rejected, unless keeping failed
                if not self._records_kept:
                    outcome.failed_message_ids.append(message.sqs_message_id)
                continue
            newly_done = {p.position for p in message.parcels if p.state in DONE}
            if State.FAILED not in states:
                if message.envelope.dedupe and newly_done:
                    whole[message.envelope.id] = message.done_before | newly_done
                continue
            outcome.failed_message_ids.append(message.sqs_message_id)
            if newly_done:
                try:
                    self.ledger.record(message.envelope.id, message.done_before | newly_done)
                except Exception:
                    # The objects will go out again when the message returns: a duplicate, never a loss.
                    logger.exception("could not record a partial delivery in the ledger")
                    metrics.add_metric(name="LedgerWriteErrors", unit=MetricUnit.Count, value=1)
        if whole:
            try:
                self.ledger.record_many(whole)
            except Exception:
                # A copy queued twice (docs/imports.md) would then be delivered again: a duplicate, never a loss.
                logger.exception("could not record delivered import envelopes in the ledger")
                metrics.add_metric(name="LedgerWriteErrors", unit=MetricUnit.Count, value=1)

    def _emit_metrics(self, calls: dict[str, list[Call[Parcel]]], outcome: Outcome) -> None:
        for name, value in (
            ("BrazeCalls", self._stats.calls),
            ("ObjectsDelivered", outcome.delivered),
            ("ObjectsRejected", outcome.rejected),
            ("ObjectsFailed", outcome.failed),
            ("ObjectsSkippedAlreadyDelivered", outcome.skipped_already_done),
            ("CallsRetried", self._stats.retried),
            ("RateLimited", self._stats.rate_limited),
            ("MessagesFailed", len(outcome.failed_message_ids)),
            ("ObjectsDroppedDeleted", outcome.dropped),
            ("ObjectsHeld", self.order.counts["held"]),
            ("ObjectsArrivedAfterMerge", self.order.counts["after_merge"]),
            ("OrderedSentBackEarly", self.order.counts["early"]),
            ("DeletesAlreadyDelivered", self.order.counts["already_delivered"]),
            ("DeletesRefused", self.order.counts["deletes_refused"]),
            ("OrderRecordsOverdue", self.order.counts["overdue"]),
            *self._savings.counts.items(),
        ):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        metrics.add_metric(
            name="RateLimitWait",
            unit=MetricUnit.Milliseconds,
            value=round(self._stats.rate_limit_wait_seconds * 1000),
        )
        efficiency = packing_efficiency(calls.get("track", []), self.limits["track"])
        if efficiency is not None:
            metrics.add_metric(name="PackingEfficiency", unit=MetricUnit.Percent, value=round(efficiency * 100, 1))


def packing_efficiency(calls: Sequence[Call[Any]], limits: Limits) -> float | None:
    """Objects per call divided by what a call may hold (1.0 = every call full)."""
    if not calls:
        return None
    capacity = limits.objects * (3 if limits.mode == "per_array" else 1)
    return sum(call.count for call in calls) / (len(calls) * capacity)


def _body(kind: str, parcels: list[Parcel]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {array: [] for array in ARRAYS[kind]}
    for parcel in parcels:
        grouped[parcel.array].append(parcel.object)
    return {array: objects for array, objects in grouped.items() if objects}


def _error_target(error: dict[str, Any], by_array: dict[str, list[Parcel]]) -> Parcel | None:
    array = error.get("input_array")
    if array is None and len(by_array) == 1:
        array = next(iter(by_array))
    index = error.get("index")
    candidates = by_array.get(array) if isinstance(array, str) else None
    if candidates is None or type(index) is not int or not 0 <= index < len(candidates):
        return None
    return candidates[index]


def _mark(parcels: list[Parcel], state: State) -> None:
    for parcel in parcels:
        if parcel.state is State.PENDING:
            parcel.state = state


def _fail_chain(call: Call[Parcel], followers: dict[int, list[tuple[str, Call[Parcel]]]]) -> None:
    _mark(call.parcels, State.FAILED)
    for _, follower in followers.pop(id(call), []):
        _fail_chain(follower, followers)


def _braze_error_type(response: BrazeResponse) -> str:
    errors = response.errors()
    if len(errors) == 1 and errors[0].get("type"):
        return str(errors[0]["type"])
    return {413: "PAYLOAD_TOO_LARGE"}.get(response.status, f"HTTP_{response.status}")


def _misconfiguration_hint(response: BrazeResponse, config: SenderSettings) -> str:
    if response.status == 401:
        return (
            "Braze answered 401 Unauthorized twice (the key was re-read in between): check that the secret "
            f"{config.braze_api_key_secret_arn} holds a REST API key of the workspace on {config.braze_rest_endpoint} "
            "(a correct key on another instance's host also gets 401), unquoted"
        )
    if response.status == 403:
        return (
            "Braze answered 403 Forbidden: the REST API key lacks the users.track / users.identify / "
            "users.alias.new / users.delete / users.merge permission, "
            "or the account cannot use this endpoint; create a key with those permissions and put it in the secret"
        )
    return (
        f"Braze answered {response.status} for its own endpoint path: BRAZE_REST_ENDPOINT "
        f"({config.braze_rest_endpoint}) is not a Braze REST endpoint"
    )


def _origin(parcel: Parcel) -> dict[str, Any]:
    envelope = parcel.message.envelope
    assert envelope is not None
    return {
        "sqs_message_id": parcel.message.sqs_message_id,
        "envelope_id": envelope.id,
        "source": envelope.source,
        "correlation_id": envelope.correlation_id,
        "received_at": envelope.received_at,
        "kind": parcel.kind,
        "array": parcel.array,
        "index": parcel.index,
        "position": parcel.position,
    }


def _rejection_record(
    parcel: Parcel, error_type: str, reason: str, response: BrazeResponse, error: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "rejected_at": queue.utc_now_iso(),
        "reason": {"type": error_type, "message": reason or response.message},
        "braze": {"status": response.status, "message": response.message, "error": error},
        "origin": _origin(parcel),
        "object": parcel.object,
    }


def _unmapped_record(
    kind: str, parcels: list[Parcel], errors: list[dict[str, Any]], response: BrazeResponse
) -> dict[str, Any]:
    return {
        "rejected_at": queue.utc_now_iso(),
        "reason": {
            "type": "UNMAPPED_BRAZE_ERROR",
            "message": "Braze reported errors that name no object of the call",
        },
        "braze": {"status": response.status, "message": response.message, "errors": errors},
        "origin": {"kind": kind, "objects": [_origin(m) for p in parcels for m in p.members or [p]]},
        "object": None,
    }


def _envelope_record(message: Message, reason: str) -> dict[str, Any]:
    return {
        "rejected_at": queue.utc_now_iso(),
        "reason": {"type": "INVALID_ENVELOPE", "message": reason},
        "braze": None,
        "origin": {"sqs_message_id": message.sqs_message_id},
        "object": None,
        "raw_message": message.body,
    }

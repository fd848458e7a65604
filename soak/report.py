"""What the soak found: every object's fate, counted from what Braze recorded, not from the sender's
own account of it.

An object is *delivered* when a call Braze processed held it and did not name it in `errors[]`
(the sandbox records that whether or not its answer reached the sender); *kept as rejected* when
the rejected-objects bucket holds it; *lost* when the API accepted it and neither is true (an object
whose message sits in the DLQ counts as not delivered, whatever happened to it before).

Every delivery after an object's first must be explained by a window in which a resend is
expected, or the run fails:

(i)  ARCHITECTURE.md's window: the sender was killed after Braze took the call (its 2xx answered,
     or the call on the wire) and before anything recorded it (ledger, SQS delete) — the earlier
     delivery lies inside a killed invocation that carried the object and did not write it to the
     ledger, and the next one came after that invocation ended;
(ii) Braze processed the call but its answer was lost (the sandbox's timeout fault, or a drop after
     processing): the sender cannot tell that from a call that never arrived, so it resends. This
     is not the crash window, and is reported apart from it;
(iii) SQS handed out a message again that the sender had finished: the next delivery came from
     the same SQS message although the invocation that sent it neither failed it nor died. A
     standard queue delivers at least once; AWS does this rarely, moto's server (whose receive is not
     atomic across threads) more often when two pollers receive at once.

An object the sender held (accepted after its user's delete, the delete not yet in Braze) goes back
to the queue in a new envelope of the sender's making (`resent`): not "queued twice". If the
invocation that held it died before its message was acknowledged, the message comes back and sends
the object as the same copy again (the hold is in the ledger, docs/ordering.md), which the ledger
delivers once: a duplicate there is unexplained (the old `after_hold_resend`, closed).

Deleted users (soak/load.py): each of their objects is ordered against the delete by the client's
times. *Before*: the client had the object's 2xx before it sent the delete; *after*: it sent the
object after the delete's 202; otherwise the requests overlapped and the object is *overlapping*
(reported, not judged). The delete reached Braze when the sandbox first processed a /users/delete
naming the user. Promises: no object from before is delivered after it (the sender drops them:
DROPPED_AFTER_DELETE report lines, without the object, matched to it by envelope id, array and
index); every object from after is delivered, and after it; every delete reaches Braze. A dropped
object is explained, not lost.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from soak.kills import KILL_POINTS, WINDOW_POINTS, InvocationRecord, KillSwitch
from soak.load import LoadResult, soak_id

TRACK_PATH = "/users/track"
DELETE_PATH = "/users/delete"
DROPPED_AFTER_DELETE = "DROPPED_AFTER_DELETE"
OBJECT_ARRAYS = ("events", "purchases")


@dataclass(frozen=True, slots=True)
class Delivery:
    time: float  # when Braze received the call
    answered: bool  # the sender heard a 2xx
    fault: str | None  # why it did not (the sandbox's fault name)


@dataclass
class DeletionFindings:
    """The deleted users' objects against their delete (see the module's docstring)."""

    users: int = 0  # deletes the API accepted (202)
    refused_at_ingest: int = 0  # deletes that never got a 202
    delivered: int = 0  # of `users`: deletes Braze processed
    not_delivered: list[str] = field(default_factory=list)  # users whose delete never reached Braze
    before: int = 0  # objects accepted before their user's delete
    before_delivered_before: int = 0
    before_dropped: int = 0
    before_delivered_after: int = 0  # must be 0
    late_examples: list[str] = field(default_factory=list)
    after: int = 0  # objects sent after their user's delete was accepted
    after_delivered_after: int = 0  # must be `after` less after_kept
    after_kept: int = 0  # kept as rejected by Braze, as any object may be
    after_delivered_before: int = 0  # must be 0
    after_missing: int = 0  # must be 0
    after_examples: list[str] = field(default_factory=list)
    overlapping: int = 0  # requests overlapping the delete's: no order to keep
    overlapping_delivered_after: int = 0
    overlapping_dropped: int = 0
    dropped_objects: int = 0  # distinct objects named by DROPPED_AFTER_DELETE report lines
    dropped_lines: int = 0
    dropped_unattributed: int = 0  # report lines naming no object the sender carried
    dropped_unexpected: list[str] = field(default_factory=list)  # dropped, but not from before a delete

    @property
    def kept_promises(self) -> bool:
        return (
            self.before_delivered_after == 0
            and self.after_delivered_before == 0
            and self.after_missing == 0
            and not self.not_delivered
            and not self.dropped_unexpected
            and self.dropped_unattributed == 0
        )


@dataclass
class Findings:
    objects_sent: int = 0
    requests: int = 0
    client_retries: dict[str, int] = field(default_factory=dict)  # the API's status (0: none) → retries
    accepted: int = 0
    rejected_at_ingest: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    rejected_by_braze: Counter[str] = field(default_factory=Counter)
    rejection_records: int = 0  # lines in the bucket; more than the objects when one was kept twice
    dropped_after_delete: int = 0  # report lines of objects accepted before their user's delete (no object)
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    dlq_messages: int = 0
    dlq_objects: int = 0
    delivered_twice: int = 0  # objects delivered more than once
    extra_deliveries: int = 0
    window_kill: Counter[str] = field(default_factory=Counter)  # (i), by kill point
    window_answer_lost: Counter[str] = field(default_factory=Counter)  # (ii), by fault
    window_sqs_again: int = 0  # (iii)
    unexplained: int = 0
    unexplained_examples: list[dict[str, Any]] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    kills_in_window: int = 0
    kills_causing_duplicates: int = 0
    kills_not_landed: Counter[str] = field(default_factory=Counter)
    spared_invocations: int = 0
    calls_in_flight_at_kill: int = 0
    in_flight_processed_after_kill: int = 0
    invocations: int = 0
    invocations_failed: int = 0
    invocations_timed_out: int = 0
    longest_invocation_seconds: float = 0.0
    longest_hold_seconds: float = 0.0  # from SQS handing a message out to its invocation's end
    visibility_timeout_seconds: int = 0
    braze_calls: int = 0
    braze_statuses: dict[str, int] = field(default_factory=dict)
    braze_faults: dict[str, int] = field(default_factory=dict)
    rate_limit_styles: dict[str, int] = field(default_factory=dict)
    outage_seconds: float = 0.0
    outage_calls: int = 0  # of the injected 500s, those of the outage
    objects_per_call: float = 0.0
    objects_per_processed_call: float = 0.0
    drained: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    ingest_partial_failures: int = 0  # requests answered 503 after part of them was queued (injected)
    ingest_objects_queued_before_503: int = 0
    queued_twice: int = 0  # objects found in more than one envelope: queued again by a retry
    held_resent: int = 0  # objects the sender held and sent back to the queue (a delete not yet in Braze)
    hold_writes: int = 0  # held groups recorded in the ledger before their copy: one write each
    hold_write_objects: int = 0  # the objects of those groups (a returning message's copy writes nothing)
    deletions: DeletionFindings = field(default_factory=lambda: DeletionFindings())

    @property
    def passed(self) -> bool:
        return (
            self.drained
            and self.lost == 0
            and self.unexplained == 0
            and self.queued_twice == 0
            and self.refused_by_server_errors == 0
            and self.deletions.kept_promises
        )

    @property
    def refused_by_server_errors(self) -> int:
        """Objects the API still answered with a 5xx after the client's retries: lost to their client."""
        return sum(count for reason, count in self.rejected_at_ingest.items() if reason.startswith("5"))

    def to_json(self) -> dict[str, Any]:
        data = {name: value for name, value in vars(self).items()}
        data["deletions"] = {**dataclasses.asdict(self.deletions), "kept_promises": self.deletions.kept_promises}
        data["passed"] = self.passed
        return json.loads(json.dumps(data, default=dict))


def analyse(
    load: LoadResult,
    braze_requests: list[Any],
    braze_stats: dict[str, Any],
    kept: list[dict[str, Any]],
    dlq_bodies: list[str],
    switch: KillSwitch,
    resent: frozenset[str] = frozenset(),
) -> Findings:
    """Judge one run. `resent`: ids of the envelopes the sender sent back to the queue (held objects)."""
    found = Findings(objects_sent=load.sent, requests=load.requests, accepted=len(load.accepted))
    found.rejected_at_ingest = Counter(load.rejected.values())
    found.client_retries = {str(status): count for status, count in load.retried.items()}

    deliveries = _deliveries(braze_requests)
    kept_ids: dict[str, str] = {}
    for record in kept:
        identifier = soak_id(record.get("object"))
        if identifier is not None:
            kept_ids[identifier] = str((record.get("reason") or {}).get("type"))
    found.rejection_records = len(kept)
    drop_lines = [record for record in kept if (record.get("reason") or {}).get("type") == DROPPED_AFTER_DELETE]
    found.dropped_after_delete = len(drop_lines)
    found.rejected_by_braze = Counter(kept_ids.values())
    in_dlq = _dlq_ids(dlq_bodies)
    found.dlq_messages, found.dlq_objects = len(dlq_bodies), len(in_dlq)
    carriers = _carriers(switch.invocations)
    dropped, unattributed = _dropped_ids(drop_lines, switch.invocations)

    delivered = {identifier for identifier in deliveries if identifier in load.accepted} - in_dlq
    found.delivered = len(delivered)
    lost = sorted(load.accepted - delivered - (set(kept_ids) - in_dlq) - (dropped - in_dlq))
    found.lost, found.lost_examples = len(lost), lost[:10]

    found.deletions = _judge_deletions(load, deliveries, _delete_times(braze_requests), dropped, set(kept_ids))
    found.deletions.dropped_lines, found.deletions.dropped_unattributed = len(drop_lines), unattributed
    found.held_resent = sum(any(c.envelope_id in resent for c in held) for held in carriers.values())
    found.hold_writes, found.hold_write_objects = switch.hold_writes, switch.hold_write_positions
    _explain_duplicates(found, deliveries, carriers, switch.unanswered, resent)
    _count_kills(found, switch)
    _count_braze(found, braze_requests, braze_stats)
    return found


def _deliveries(braze_requests: list[Any]) -> dict[str, list[Delivery]]:
    found: dict[str, list[Delivery]] = defaultdict(list)
    for request in braze_requests:
        if request.path != TRACK_PATH or not request.processed or not isinstance(request.json, dict):
            continue
        refused = {(e.get("input_array"), e.get("index")) for e in request.errors if isinstance(e, dict)}
        answered = request.status is not None and 200 <= request.status < 300
        for array in OBJECT_ARRAYS:
            for index, obj in enumerate(request.json.get(array) or []):
                identifier = soak_id(obj)
                if identifier is not None and (array, index) not in refused:
                    found[identifier].append(Delivery(request.time, answered, request.fault))
    for times in found.values():
        times.sort(key=lambda delivery: delivery.time)
    return found


def _delete_times(braze_requests: list[Any]) -> dict[str, float]:
    """When Braze first processed a delete of each external_id."""
    found: dict[str, float] = {}
    for request in braze_requests:
        if request.path != DELETE_PATH or not request.processed or not isinstance(request.json, dict):
            continue
        for user in request.json.get("external_ids") or []:
            if isinstance(user, str) and (user not in found or request.time < found[user]):
                found[user] = request.time
    return found


def _dropped_ids(lines: list[dict[str, Any]], invocations: list[InvocationRecord]) -> tuple[set[str], int]:
    """The objects the drop report lines name (by envelope id, array and index, in the messages the
    sender received), and how many lines name none."""
    from braze_forwarder import queue

    wanted = {
        (origin.get("envelope_id"), origin.get("array"), origin.get("index"))
        for origin in (line.get("origin") or {} for line in lines)
    }
    named: dict[tuple[Any, Any, Any], str] = {}
    for invocation in invocations:
        for body in invocation.bodies:
            try:
                envelope = queue.decode(body)
            except queue.EnvelopeError:
                continue
            for item in envelope.items:
                identifier = soak_id(item.object)
                if identifier is not None and (envelope.id, item.array, item.index) in wanted:
                    named[(envelope.id, item.array, item.index)] = identifier
    return set(named.values()), len(wanted - set(named))


def _judge_deletions(
    load: LoadResult,
    deliveries: dict[str, list[Delivery]],
    delete_times: dict[str, float],
    dropped: set[str],
    kept: set[str],
) -> DeletionFindings:
    found = DeletionFindings(users=len(load.deletes), refused_at_ingest=len(load.deletes_refused))
    for user in sorted(load.deletes):
        if user in delete_times:
            found.delivered += 1
        else:
            found.not_delivered.append(user)
    for identifier, user in sorted(load.users.items()):
        delete = load.deletes.get(user)
        span = load.spans.get(identifier)
        if delete is None or span is None:
            if identifier in dropped:
                found.dropped_unexpected.append(identifier)  # its user was never deleted
            continue
        deleted_at = delete_times.get(user, float("inf"))
        times = [delivery.time for delivery in deliveries.get(identifier, ())]
        late = any(at > deleted_at for at in times)
        if span.answered < delete.sent:
            found.before += 1
            if late:
                found.before_delivered_after += 1
                found.late_examples.append(identifier)
            elif times:
                found.before_delivered_before += 1
            if identifier in dropped:
                found.before_dropped += 1
        elif span.sent > delete.answered:
            found.after += 1
            if identifier in dropped:
                found.dropped_unexpected.append(identifier)
            if any(at < deleted_at for at in times):
                found.after_delivered_before += 1
                found.after_examples.append(identifier)
            elif times:
                found.after_delivered_after += 1
            elif identifier in kept:
                found.after_kept += 1
            else:
                found.after_missing += 1
                found.after_examples.append(identifier)
        else:
            found.overlapping += 1
            found.overlapping_delivered_after += late
            found.overlapping_dropped += identifier in dropped
    found.dropped_objects = len(dropped)
    found.late_examples = found.late_examples[:10]
    found.after_examples = found.after_examples[:10]
    found.dropped_unexpected = found.dropped_unexpected[:10] + (["..."] if len(found.dropped_unexpected) > 10 else [])
    return found


def _dlq_ids(bodies: list[str]) -> set[str]:
    from braze_forwarder import queue

    found = set()
    for body in bodies:
        try:
            envelope = queue.decode(body)
        except queue.EnvelopeError:
            continue
        found.update(filter(None, (soak_id(item.object) for item in envelope.items)))
    return found


@dataclass(frozen=True, slots=True)
class Carrier:
    """One invocation that held an object: which message, which receive, and how it ended."""

    invocation: int
    started: float
    ended: float
    message_id: str
    envelope_id: str
    receive_count: int
    kill_point: str | None
    recorded: bool  # the invocation wrote the object's position to the ledger
    failed: bool  # the invocation gave the message back (batchItemFailures, or it died)


def _carriers(invocations: list[InvocationRecord]) -> dict[str, list[Carrier]]:
    from braze_forwarder import queue

    found: dict[str, list[Carrier]] = defaultdict(list)
    for invocation in invocations:
        end = invocation.ended or invocation.killed_at or invocation.started
        for message_id, body, receive_count in zip(
            invocation.message_ids, invocation.bodies, invocation.receive_counts, strict=True
        ):
            try:
                envelope = queue.decode(body)
            except queue.EnvelopeError:
                continue
            recorded = invocation.ledger.get(envelope.id, frozenset())
            for position, item in enumerate(envelope.items):
                identifier = soak_id(item.object)
                if identifier is not None:
                    found[identifier].append(
                        Carrier(
                            invocation.number,
                            invocation.started,
                            end,
                            message_id,
                            envelope.id,
                            receive_count,
                            invocation.kill_point,
                            position in recorded,
                            invocation.dead or message_id in invocation.failed_ids,
                        )
                    )
    return found


def _sqs_handed_out_again(carriers: Sequence[Carrier], delivery: Delivery, resent: Delivery) -> bool:
    """The invocation that sent the object finished its message, and the resend came from that same
    SQS message, in another invocation."""
    sent_by = [c for c in carriers if c.started <= delivery.time <= c.ended and not c.failed]
    resent_by = [c for c in carriers if c.started <= resent.time <= c.ended]
    return any(
        first.message_id == second.message_id and first.invocation != second.invocation
        for first in sent_by
        for second in resent_by
    )


def _describe(carrier: Carrier) -> dict[str, Any]:
    described = {name: getattr(carrier, name) for name in Carrier.__slots__}
    described["started"], described["ended"] = round(carrier.started, 3), round(carrier.ended, 3)
    return described


def _explain_duplicates(
    found: Findings,
    deliveries: dict[str, list[Delivery]],
    carriers: dict[str, list[Carrier]],
    unanswered: list[tuple[float, float, frozenset[str]]],
    resent: frozenset[str] = frozenset(),
) -> None:
    found.queued_twice = sum(
        len({c.envelope_id for c in held if c.envelope_id not in resent}) > 1 for held in carriers.values()
    )
    causing: set[int] = set()
    for identifier, times in deliveries.items():
        if len(times) < 2:
            continue
        found.delivered_twice += 1
        found.extra_deliveries += len(times) - 1
        for delivery, again in itertools.pairwise(times):  # each one was followed by another: why?
            if not delivery.answered:
                found.window_answer_lost[delivery.fault or "no answer"] += 1
                continue
            if any(sent <= delivery.time <= gave_up and identifier in ids for sent, gave_up, ids in unanswered):
                # Braze answered, but too late: the sender had stopped reading.
                found.window_answer_lost["answered after the sender gave up"] += 1
                continue
            # Sent by an invocation that was then killed without recording the object in the
            # ledger (an object it recorded must never go out again), and sent again only after
            # that invocation was gone.
            inside = [
                carrier
                for carrier in carriers.get(identifier, ())
                if carrier.kill_point is not None
                and not carrier.recorded
                and carrier.started <= delivery.time <= carrier.ended <= again.time
            ]
            if inside:
                found.window_kill[str(inside[0].kill_point)] += 1
                causing.add(inside[0].invocation)
                continue
            if _sqs_handed_out_again(carriers.get(identifier, ()), delivery, again):
                found.window_sqs_again += 1
                continue
            found.unexplained += 1
            if len(found.unexplained_examples) < 10:
                found.unexplained_examples.append(
                    {
                        "soak_id": identifier,
                        "deliveries": [(round(d.time, 3), d.answered, d.fault) for d in times],
                        "carriers": [_describe(carrier) for carrier in carriers.get(identifier, ())],
                    }
                )
    found.kills_causing_duplicates = len(causing)


def _count_kills(found: Findings, switch: KillSwitch) -> None:
    invocations = switch.invocations
    found.invocations = len(invocations)
    found.spared_invocations = sum(invocation.spared for invocation in invocations)
    found.kills_not_landed = switch.unlanded()
    found.longest_invocation_seconds = round(
        max(((i.ended or i.started) - i.started for i in invocations), default=0.0), 2
    )
    found.longest_hold_seconds = round(
        max(((i.ended or i.started) - i.first_received for i in invocations if i.first_received), default=0.0), 2
    )
    for invocation in switch.killed():
        found.kills[str(invocation.kill_point)] += 1
        processed_after = sum(n for status, n in invocation.answers_after_kill.items() if 200 <= status < 300)
        found.calls_in_flight_at_kill += invocation.in_flight_at_kill
        found.in_flight_processed_after_kill += processed_after
        # In the window: Braze had some of the batch when the environment died.
        if invocation.kill_point in WINDOW_POINTS and (invocation.answers_2xx or processed_after):
            found.kills_in_window += 1
    found.kills = Counter({point: found.kills[point] for point in KILL_POINTS if found.kills[point]})


def _count_braze(found: Findings, braze_requests: list[Any], stats: dict[str, Any]) -> None:
    track = [request for request in braze_requests if request.path == TRACK_PATH]
    found.braze_calls = len(track)
    found.braze_statuses = dict(stats.get("statuses", {}).get(TRACK_PATH, {}))
    found.braze_faults = dict(stats.get("faults_injected", {}))
    found.rate_limit_styles = dict(stats.get("rate_limit_styles", {}))
    sizes = [_objects(request.json) for request in track]
    processed = [_objects(request.json) for request in track if request.processed]
    found.objects_per_call = round(sum(sizes) / len(sizes), 1) if sizes else 0.0
    found.objects_per_processed_call = round(sum(processed) / len(processed), 1) if processed else 0.0


def _objects(body: Any) -> int:
    if not isinstance(body, dict):
        return 0
    return sum(len(body.get(array) or []) for array in ("attributes", *OBJECT_ARRAYS))


# --------------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------------


def render(found: Findings, title: str, spare_from_receive: int) -> str:
    def n(value: float) -> str:
        return f"{value:,}"

    def reasons(counts: Counter[str] | dict[str, int]) -> str:
        ordered = sorted(counts.items(), key=lambda pair: -pair[1])
        return ", ".join(f"{reason} {n(count)}" for reason, count in ordered) or "-"

    def row(label: str, value: str, detail: str = "") -> str:
        return f"  {label:<24}{value:>9}   {detail}".rstrip()

    seconds = found.seconds
    deleted = found.deletions
    lost_detail = ""
    if found.lost_examples:
        lost_detail = f"e.g. {', '.join(found.lost_examples[:3])}"
    if found.dlq_messages:
        lost_detail += f" (DLQ: {n(found.dlq_messages)} messages, {n(found.dlq_objects)} objects)"
    in_flight = (
        f"{n(found.calls_in_flight_at_kill)} calls in flight at a kill, Braze processed "
        f"{n(found.in_flight_processed_after_kill)} (answers discarded)"
    )
    lines = [
        title,
        row(
            "wall time",
            f"{seconds.get('total', 0):.1f} s",
            f"stack start {seconds.get('start', 0):.1f} s, load {seconds.get('load', 0):.1f} s, "
            f"drain {seconds.get('drain', 0):.1f} s",
        ),
        row(
            "sent",
            n(found.objects_sent),
            f"objects in {n(found.requests)} requests; retried after: {reasons(found.client_retries)}",
        ),
        row("accepted", n(found.accepted)),
        row("rejected at ingest", n(sum(found.rejected_at_ingest.values())), reasons(found.rejected_at_ingest)),
        row("delivered", n(found.delivered), "at least once, as Braze recorded it"),
        row(
            "rejected by Braze",
            n(sum(found.rejected_by_braze.values())),
            f"{reasons(found.rejected_by_braze)}; kept in S3 ({n(found.rejection_records)} records)",
        ),
        row(
            "dropped after delete",
            n(deleted.dropped_objects),
            f"objects accepted before their user's delete, never sent ({n(found.dropped_after_delete)} report lines)",
        ),
        row("lost", n(found.lost), lost_detail),
        row("delivered twice", n(found.delivered_twice), f"objects ({n(found.extra_deliveries)} extra deliveries)"),
        row(
            "  (i) kill window",
            n(sum(found.window_kill.values())),
            f"killed after Braze's 2xx, before ledger/delete (ARCHITECTURE.md): {reasons(found.window_kill)}",
        ),
        row(
            "  (ii) answer lost",
            n(sum(found.window_answer_lost.values())),
            f"Braze processed, the answer never came (not the crash window): {reasons(found.window_answer_lost)}",
        ),
        row(
            "  (iii) SQS again",
            n(found.window_sqs_again),
            "SQS handed out a message the sender had finished (standard queues deliver at least once)",
        ),
        row("  unexplained", n(found.unexplained)),
        row(
            "ingest retry fault",
            n(found.ingest_partial_failures),
            f"requests answered 503 after SQS took part ({n(found.ingest_objects_queued_before_503)} objects), "
            "then retried",
        ),
        row("  queued twice", n(found.queued_twice), "objects in more than one envelope (a retry queued them again)"),
        row(
            "  held, re-queued",
            n(found.held_resent),
            "objects sent after their user's delete, held until it reached Braze (not queued twice); "
            f"{n(found.hold_writes)} held groups recorded in the ledger for {n(found.hold_write_objects)} held objects",
        ),
        row(
            "deleted users",
            n(deleted.users),
            f"deletes accepted (refused at ingest {n(deleted.refused_at_ingest)}); reached Braze "
            f"{n(deleted.delivered)}, never {n(len(deleted.not_delivered))}"
            + (f" e.g. {', '.join(deleted.not_delivered[:3])}" if deleted.not_delivered else ""),
        ),
        row(
            "  accepted before",
            n(deleted.before),
            f"delivered AFTER the delete {n(deleted.before_delivered_after)} (must be 0)"
            + (f" e.g. {', '.join(deleted.late_examples[:3])}" if deleted.late_examples else "")
            + f"; delivered before it {n(deleted.before_delivered_before)}; dropped {n(deleted.before_dropped)}",
        ),
        row(
            "  sent after",
            n(deleted.after),
            f"delivered after the delete {n(deleted.after_delivered_after)}, kept by Braze {n(deleted.after_kept)}; "
            f"before it {n(deleted.after_delivered_before)}, missing {n(deleted.after_missing)} (both must be 0)"
            + (f" e.g. {', '.join(deleted.after_examples[:3])}" if deleted.after_examples else ""),
        ),
        row(
            "  overlapping",
            n(deleted.overlapping),
            "request overlapped the delete's, not judged: delivered after it "
            f"{n(deleted.overlapping_delivered_after)}, dropped {n(deleted.overlapping_dropped)}",
        ),
        row(
            "  drops unexplained",
            n(len(deleted.dropped_unexpected) + deleted.dropped_unattributed),
            "dropped objects not accepted before a delete, or report lines naming no object (must be 0)",
        ),
        row("kills", n(sum(found.kills.values())), reasons(found.kills)),
        row(
            "  in the window",
            n(found.kills_in_window),
            f"Braze had part of the batch; {n(found.kills_causing_duplicates)} caused duplicates; {in_flight}",
        ),
        row("  planned, not reached", n(sum(found.kills_not_landed.values())), reasons(found.kills_not_landed)),
        row("  spared", n(found.spared_invocations), f"batches holding a message on receive {spare_from_receive}+"),
        row(
            "sender invocations",
            n(found.invocations),
            f"failed {n(found.invocations_failed)}, timed out {n(found.invocations_timed_out)}, "
            f"longest {found.longest_invocation_seconds} s; a message held at most {found.longest_hold_seconds} s "
            f"(visibility timeout {found.visibility_timeout_seconds} s)",
        ),
        row("Braze calls", n(found.braze_calls), f"/users/track: {reasons(found.braze_statuses)}"),
        row(
            "  faults injected",
            n(sum(found.braze_faults.values())),
            f"{reasons(found.braze_faults)}; {n(found.outage_calls)} of the errors in the "
            f"{found.outage_seconds} s outage",
        ),
        row("  429 header variants", n(sum(found.rate_limit_styles.values())), reasons(found.rate_limit_styles)),
        row(
            "objects per call",
            f"{found.objects_per_call}",
            f"all calls; {found.objects_per_processed_call} in calls Braze processed",
        ),
    ]
    if not found.drained:
        lines.append("  NOT DRAINED: the events queue still held messages when the wait ended")
    lines.extend(f"  unexplained: {json.dumps(example)}" for example in found.unexplained_examples[:3])
    lines.append(row("result", "PASS" if found.passed else "FAIL"))
    return "\n".join(lines)

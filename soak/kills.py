"""Killing the sender's execution environment at chosen points, as a crash would.

A Lambda that dies mid-invocation does nothing more: no further Braze call, no ledger write, no
rejected-objects write, no answer to the event source mapping, so no SQS delete and no
batchItemFailures; its whole batch comes back after the queue's visibility timeout. The functions
run in this process (local/runtime.py), so the kill is emulated at the sender's I/O boundaries,
from outside the product code:

* the handler is wrapped (`LocalFunction.wrap_handler`): the environment dies before the handler
  runs, or after it returned and before the event source could delete the messages;
* the sender's Braze client, ledger and rejected-objects store are wrapped: the wrapped handler
  hands the sender (its `parts` argument) the real ones the handler wires, each inside a stand-in
  of the kill switch, so it dies after a Braze 2xx answer (before anything records it), or right
  after a ledger write. Nothing is patched: every other user keeps the real ones.

A kill raises `Killed` (a BaseException, so no `except Exception` in the product swallows it) and
marks the invocation dead. The invocation's other threads cannot be stopped, so every boundary
refuses to act for a dead invocation: a call not yet sent is never sent; a call already on the wire
reaches Braze (as it would: the crash cannot recall it) and its answer is thrown away — counted as
`in_flight_at_kill`, with what Braze answered. The handler then raises, the runtime reports an
error, and the event source fails the whole batch, exactly as after a crash.

Sender invocations run one at a time (one execution environment, local/runtime.py), so one
`current` invocation is enough to know whose call, write or answer it is.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BEFORE_HANDLER = "before_handler"
AFTER_BRAZE_2XX = "after_braze_2xx"
AFTER_LEDGER_WRITE = "after_ledger_write"
AFTER_HANDLER_RETURN = "after_handler_return"
KILL_POINTS = (BEFORE_HANDLER, AFTER_BRAZE_2XX, AFTER_LEDGER_WRITE, AFTER_HANDLER_RETURN)
# After these, Braze may have the batch's objects while SQS still has its messages: ARCHITECTURE.md's
# duplicate window. A kill before the handler runs is outside it.
WINDOW_POINTS = (AFTER_BRAZE_2XX, AFTER_LEDGER_WRITE, AFTER_HANDLER_RETURN)
OBJECTS_PER_CALL = 75  # the sender's default /users/track limit: how many calls a batch will make


class Killed(BaseException):
    """The execution environment died here."""


@dataclass
class KillPlan:
    """Which invocations die, and where.

    `forced` points land first, one per invocation, in order; one the invocation never reaches (no
    2xx came back) is tried again on the next. Then each invocation dies with probability `rate` at
    a random point. AFTER_LEDGER_WRITE cannot be aimed at an invocation (few write the ledger), so
    choosing it arms it for the next ledger write of any invocation.
    An invocation holding a message received `spare_from_receive` times or more is never killed:
    five receives send a message to the DLQ, and repeated crashes of one message are the DLQ's
    story (tests/local), not the duplicate window's.
    """

    rate: float = 0.0
    forced: list[str] = field(default_factory=list)
    seed: int | None = None
    spare_from_receive: int = 3

    def __post_init__(self) -> None:
        unknown = [point for point in self.forced if point not in KILL_POINTS]
        if unknown:
            raise ValueError(f"unknown kill points {unknown}; known: {', '.join(KILL_POINTS)}")


@dataclass
class InvocationRecord:
    """One sender invocation as the harness saw it."""

    number: int
    started: float
    message_ids: list[str]
    bodies: list[str]  # the report reads which objects each invocation carried
    objects: int
    receive_counts: list[int]
    max_receive_count: int
    # When SQS first handed out the batch's messages now on their first receive (None: none are):
    # how long the batch was held, from there to `ended`, must stay under the visibility timeout.
    first_received: float | None = None
    planned: str | None = None
    forced: bool = False  # planned from KillPlan.forced
    kill_after_2xx: int = 0  # AFTER_BRAZE_2XX: the answer that kills
    spared: bool = False
    killed_at: float | None = None
    kill_point: str | None = None
    ended: float | None = None
    calls: int = 0
    answers_2xx: int = 0
    ledger_writes: int = 0
    ledger: dict[str, frozenset[int]] = field(default_factory=dict)  # envelope id → positions recorded done
    failed_ids: frozenset[str] = frozenset()  # messages the handler reported as failed (batchItemFailures)
    in_flight: int = 0
    in_flight_at_kill: int = 0
    answers_after_kill: Counter[int] = field(default_factory=Counter)  # status → calls (0: none)

    @property
    def dead(self) -> bool:
        return self.killed_at is not None


class KillSwitch:
    """Installs the kill points around one sender function of a running local stack."""

    def __init__(self, plan: KillPlan) -> None:
        self.plan = plan
        self.invocations: list[InvocationRecord] = []
        self.not_landed: Counter[str] = Counter()  # planned kills the invocation never reached
        self.ledger_kill_armed = False
        self._rng = random.Random(plan.seed)
        self._forced = list(plan.forced)
        self._lock = threading.Lock()
        self._current: InvocationRecord | None = None
        # Told (event, invocation) on "2xx" (an answer the invocation reads) and "end": the soak's
        # Braze outage starts and ends with these.
        self.listeners: list[Callable[[str, InvocationRecord], None]] = []
        # Calls the sender got no answer to: (sent, gave up, soak ids of their objects).
        self.unanswered: list[tuple[float, float, frozenset[str]]] = []
        self.hold_writes = 0  # held groups recorded in the ledger before their copy (one write each)
        self.hold_write_positions = 0  # the objects those groups held

    # -- installing --------------------------------------------------------------------------------

    def install(self, function: Any) -> None:
        """Wrap `function` (a LocalFunction of the sender): its handler, and the sender's parts."""
        function.wrap_handler(self._wrap_handler)

    # -- the handler ---------------------------------------------------------------------------------

    def _wrap_handler(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def environment(event: Any, context: Any) -> Any:
            invocation = self._begin(event)
            try:
                if invocation.planned == BEFORE_HANDLER:
                    self._kill(invocation, BEFORE_HANDLER)
                result = handler(event, context, parts=self._parts())
                invocation.failed_ids = _failed_ids(result)
                # A kill in one of the handler's threads that the handler let pass: still dead.
                self.check_alive(invocation)
                if invocation.planned == AFTER_HANDLER_RETURN:
                    self._kill(invocation, AFTER_HANDLER_RETURN)
                return result
            finally:
                self._end(invocation)

        return environment

    def _begin(self, event: Any) -> InvocationRecord:
        records = event.get("Records", [])
        receive_counts = [int(r.get("attributes", {}).get("ApproximateReceiveCount", 1)) for r in records]
        first_receives = [
            int(r["attributes"]["ApproximateFirstReceiveTimestamp"]) / 1000
            for r, count in zip(records, receive_counts, strict=True)
            if count == 1 and "ApproximateFirstReceiveTimestamp" in r.get("attributes", {})
        ]
        with self._lock:
            invocation = InvocationRecord(
                number=len(self.invocations) + 1,
                started=time.time(),
                message_ids=[r["messageId"] for r in records],
                bodies=[r["body"] for r in records],
                objects=sum(len(_items(r["body"])) for r in records),
                receive_counts=receive_counts,
                max_receive_count=max(receive_counts, default=0),
                first_received=min(first_receives, default=None),
            )
            self.invocations.append(invocation)
            if invocation.max_receive_count >= self.plan.spare_from_receive:
                invocation.spared = True
            else:
                self._plan(invocation)
            self._current = invocation
        return invocation

    def _plan(self, invocation: InvocationRecord) -> None:
        if self._forced:
            point: str | None = self._forced.pop(0)
            invocation.forced = True
        elif self.plan.rate and self._rng.random() < self.plan.rate:
            point = self._rng.choice(KILL_POINTS)
        else:
            point = None
        if point == AFTER_LEDGER_WRITE:
            self.ledger_kill_armed = True  # lands on the next ledger write, this invocation's or a later one's
            return
        invocation.planned = point
        if point == AFTER_BRAZE_2XX:
            # Somewhere among the calls the batch will make; the first one in tests (forced).
            calls = max(1, math.ceil(invocation.objects / OBJECTS_PER_CALL))
            invocation.kill_after_2xx = 1 if invocation.forced else self._rng.randint(1, calls)

    def _end(self, invocation: InvocationRecord) -> None:
        with self._lock:
            invocation.ended = time.time()
            # Not reached, or another kill (the armed ledger one) came first.
            if invocation.planned and invocation.kill_point != invocation.planned:
                if invocation.forced:
                    self._forced.insert(0, invocation.planned)  # the next invocation, then
                else:
                    self.not_landed[invocation.planned] += 1
            self._current = None
        self._tell("end", invocation)
        if invocation.dead:
            _cold_start()

    def _tell(self, event: str, invocation: InvocationRecord) -> None:
        for listener in self.listeners:
            listener(event, invocation)

    def _parts(self) -> Any:
        """The sender's real parts, as its handler wires them, with the kill points around them."""
        from functions.braze_sender.app import sender_parts

        real = sender_parts()
        return dataclasses.replace(
            real,
            client=_KillableClient(real.client, self),
            ledger=_KillableLedger(real.ledger, self),
            rejects=_KillableRejects(real.rejects, self),
        )

    # -- the boundaries --------------------------------------------------------------------------------

    def current(self) -> InvocationRecord | None:
        return self._current

    def forced_landed(self) -> bool:
        """Every forced kill has landed (but a forced AFTER_LEDGER_WRITE, which waits for a ledger write)."""
        with self._lock:
            running = self._current is not None and self._current.forced and not self._current.dead
            return not self._forced and not running

    def check_alive(self, invocation: InvocationRecord | None) -> None:
        if invocation is not None and invocation.dead:
            raise Killed(f"invocation {invocation.number} is dead ({invocation.kill_point})")

    def _kill(self, invocation: InvocationRecord, point: str) -> None:
        with self._lock:
            if not invocation.dead:
                invocation.killed_at = time.time()
                invocation.kill_point = point
                # The call that kills (AFTER_BRAZE_2XX) has its answer; the others on the wire do not.
                invocation.in_flight_at_kill = invocation.in_flight
        raise Killed(f"invocation {invocation.number} killed {point}")

    def before_call(self, invocation: InvocationRecord) -> None:
        with self._lock:
            self.check_alive(invocation)  # a dead process sends nothing
            invocation.calls += 1
            invocation.in_flight += 1

    def after_call(self, invocation: InvocationRecord, status: int) -> None:
        with self._lock:
            invocation.in_flight -= 1
            if invocation.dead:
                invocation.answers_after_kill[status] += 1  # nobody reads it
        self.check_alive(invocation)
        if 200 <= status < 300:
            with self._lock:
                invocation.answers_2xx += 1
                due = invocation.planned == AFTER_BRAZE_2XX and invocation.answers_2xx == invocation.kill_after_2xx
            if due:
                self._kill(invocation, AFTER_BRAZE_2XX)
            self._tell("2xx", invocation)

    def ledger_recorded(self, invocation: InvocationRecord | None, envelope_id: str, positions: Iterable[int]) -> None:
        """After a ledger write of the invocation: note it, and die if a ledger kill is armed."""
        if invocation is None:
            return
        with self._lock:
            invocation.ledger_writes += 1
            if positions := frozenset(positions):  # none: a held group noted, nothing done
                invocation.ledger[envelope_id] = positions
            due = self.ledger_kill_armed and not invocation.spared
            if due:
                self.ledger_kill_armed = False
        if due:
            self._kill(invocation, AFTER_LEDGER_WRITE)

    def hold_recorded(self, invocation: InvocationRecord | None, envelope_id: str, objects: int) -> None:
        """After a held group's ledger write: count it; the armed ledger kill may land here (nothing done)."""
        with self._lock:
            self.hold_writes += 1
            self.hold_write_positions += objects
        self.ledger_recorded(invocation, envelope_id, ())

    # -- what happened ----------------------------------------------------------------------------------

    def killed(self) -> list[InvocationRecord]:
        return [invocation for invocation in self.invocations if invocation.dead]

    def unlanded(self) -> Counter[str]:
        """Planned kills that never happened: not reached, still waiting, or armed at the end."""
        with self._lock:
            counts = Counter(self.not_landed)
            counts.update(self._forced)
            if self.ledger_kill_armed:
                counts[AFTER_LEDGER_WRITE] += 1
            return counts


class _KillableClient:
    """The sender's Braze client, with the kill switch between it and the wire."""

    def __init__(self, real: Any, switch: KillSwitch) -> None:
        self._real = real
        self._switch = switch

    def post(self, path: str, body: Any, api_key: str) -> Any:
        invocation = self._switch.current()
        if invocation is None:
            return self._real.post(path, body, api_key)
        self._switch.before_call(invocation)
        status = 0
        started = time.time()
        try:
            response = self._real.post(path, body, api_key)
            status = response.status
        finally:
            if status == 0:
                # No answer read. Braze may still have written one, just as the read timed out: the
                # report must not take its record of a 2xx for what the sender heard.
                self._switch.unanswered.append((started, time.time(), _soak_ids(body)))
            self._switch.after_call(invocation, status)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _KillableLedger:
    """The sender's ledger: a dead invocation writes nothing; a write may be the kill point."""

    def __init__(self, real: Any, switch: KillSwitch) -> None:
        self._real = real
        self._switch = switch

    def entries(self, envelope_ids: Iterable[str]) -> Any:
        return self._real.entries(envelope_ids)

    def record(self, envelope_id: str, positions: Iterable[int]) -> None:
        positions = frozenset(positions)
        invocation = self._switch.current()
        self._switch.check_alive(invocation)  # a dead process writes nothing
        self._real.record(envelope_id, positions)
        self._switch.ledger_recorded(invocation, envelope_id, positions)

    def record_many(self, entries: Mapping[str, Iterable[int]]) -> None:
        for envelope_id, positions in entries.items():
            self.record(envelope_id, positions)

    def record_hold(self, envelope_id: str, positions: Sequence[int]) -> None:
        """Held positions, noted before their copy is queued: the armed ledger kill may land here, between
        the note and SQS (the copy is then sent when the message returns); nothing is recorded done."""
        invocation = self._switch.current()
        self._switch.check_alive(invocation)
        self._real.record_hold(envelope_id, positions)
        self._switch.hold_recorded(invocation, envelope_id, len(positions))


class _KillableRejects:
    """The sender's rejected-objects store: a dead invocation writes nothing."""

    def __init__(self, real: Any, switch: KillSwitch) -> None:
        self._real = real
        self._switch = switch

    def keep(self, records: Any) -> str | None:
        self._switch.check_alive(self._switch.current())  # a dead process writes nothing
        return self._real.keep(records)


def _soak_ids(body: Any) -> frozenset[str]:
    from soak.load import soak_id

    objects = [obj for array in body.values() for obj in array] if isinstance(body, dict) else []
    return frozenset(filter(None, map(soak_id, objects)))


def _failed_ids(response: Any) -> frozenset[str]:
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    return frozenset(f.get("itemIdentifier") for f in failures or () if isinstance(f, dict))


def _items(body: str) -> list[Any]:
    from braze_forwarder import queue

    try:
        return list(queue.decode(body).items)
    except queue.EnvelopeError:
        return []


def _cold_start() -> None:
    """A crashed environment is replaced: the next invocation has no pooled connection, no cached key."""
    from functions.braze_sender import app

    app.reset()

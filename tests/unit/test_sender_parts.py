"""The sender with parts of its own: a Braze stand-in and stores in memory, handed in as the handler
hands in the real ones (no AWS, no HTTP, no patching)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from braze_forwarder import queue
from braze_forwarder.braze.client import BrazeResponse
from braze_forwarder.config import SenderSettings
from braze_forwarder.delivery.attribute_state import Written
from braze_forwarder.delivery.sender import Sender, SenderParts
from braze_forwarder.ledger_entries import LedgerEntry
from braze_forwarder.user_order import OrderRecord, OrderStore

CONFIG = SenderSettings(
    braze_rest_endpoint="https://rest.iad-01.braze.com",
    braze_api_key_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:braze",
    braze_max_attempts=1,
    ledger_table="not-read",
    rejected_bucket="not-written",
    user_order_table="not-read",
    events_queue_url="not-written",
    time_reserve_seconds=0.5,
)


class Braze:
    """Answers 201, or 500 to a call that holds `failing`, or a per-object error for `refused`."""

    def __init__(self, failing: str | None = None, refused: str | None = None) -> None:
        self.failing, self.refused = failing, refused
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def post(self, path: str, body: Mapping[str, Any], api_key: str) -> BrazeResponse:
        ids = [obj["external_id"] for objects in body.values() for obj in objects]
        with self._lock:
            self.sent.extend(ids)
        if self.failing in ids:
            return BrazeResponse(500, {"message": "internal"}, {})
        if self.refused not in ids:
            return BrazeResponse(201, {"message": "success"}, {})
        error = {"type": "BLOCKED", "input_array": "events", "index": ids.index(self.refused), "message": "blocked"}
        return BrazeResponse(201, {"message": "success", "errors": [error]}, {})


class Key:
    def value(self) -> tuple[str, int]:
        return "key", 0

    def refresh(self, seen_generation: int) -> None:
        raise AssertionError("no 401 here")


class Ledger:
    def __init__(self) -> None:
        self.done: dict[str, frozenset[int]] = {}
        self.held: dict[str, set[tuple[int, ...]]] = {}

    def entries(self, envelope_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        return {
            envelope_id: LedgerEntry(
                self.done.get(envelope_id, frozenset()), tuple(sorted(self.held.get(envelope_id, ())))
            )
            for envelope_id in envelope_ids
            if envelope_id in self.done or envelope_id in self.held
        }

    def record(self, envelope_id: str, positions: Iterable[int]) -> None:
        self.done[envelope_id] = frozenset(positions)

    def record_hold(self, envelope_id: str, positions: Sequence[int]) -> None:
        self.held.setdefault(envelope_id, set()).add(tuple(positions))

    def record_many(self, entries: Mapping[str, Iterable[int]]) -> None:
        for envelope_id, positions in entries.items():
            self.record(envelope_id, positions)


class Rejects:
    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []

    def keep(self, records: Sequence[dict[str, Any]]) -> str | None:
        self.kept.extend(records)
        return "memory" if records else None


class Attributes:
    def read(self, users: Iterable[str]) -> dict[str, dict[str, Written]]:
        raise AssertionError("delta sending is off: the store is not read")

    def write(self, user: str, attributes: Mapping[str, Written]) -> None:
        raise AssertionError("delta sending is off: the store is not written")

    def forget(self, user: str) -> None:
        raise AssertionError("delta sending is off: the store is not written")


class NoOrderRecords(OrderStore):
    """A UserOrderTable with no delete, alias or merge in it."""

    def __init__(self) -> None:
        super().__init__("not-read")

    def _query(self, since: str) -> Iterator[OrderRecord]:
        return iter(())


def message(count: int) -> str:
    objects = [{"external_id": f"user-{n}", "name": "played", "time": "2026-12-07T03:00:00Z"} for n in range(count)]
    items = [("events", n, queue.encode_object(obj)) for n, obj in enumerate(objects)]
    [body] = queue.build_messages("track", items, source="tests", correlation_id=None, max_message_bytes=1 << 20)
    return body


def import_message(count: int) -> str:
    """An import's envelope: a deterministic id, marked `dedupe`."""
    objects = [{"external_id": f"user-{n}", "name": "played", "time": "2026-12-07T03:00:00Z"} for n in range(count)]
    items = [("events", n, queue.encode_object(obj)) for n, obj in enumerate(objects)]
    [body] = queue.build_messages(
        "track",
        items,
        source="import:imp-1",
        correlation_id="imp-1",
        max_message_bytes=1 << 20,
        envelope_id=lambda number: f"imp-1-envelope-{number}",
        dedupe=True,
    )
    return body


def deliver(braze: Braze, ledger: Ledger, rejects: Rejects, *bodies: str) -> Any:
    parts = SenderParts(braze, Key(), ledger, rejects, Attributes(), order=NoOrderRecords())  # type: ignore[arg-type]
    records = [(f"msg-{n}", body) for n, body in enumerate(bodies)]
    return Sender(CONFIG, parts).deliver(records, lambda: 60.0)


def test_a_partly_delivered_message_records_its_delivered_objects_in_the_ledger_it_was_given() -> None:
    body, ledger, rejects = message(100), Ledger(), Rejects()

    first = deliver(Braze(failing="user-99"), ledger, rejects, body)  # 75 + 25: the second call fails
    assert first.failed_message_ids == ["msg-0"] and (first.delivered, first.failed) == (75, 25)
    [(_, done)] = ledger.done.items()
    assert done == frozenset(range(75))

    again = Braze()
    second = deliver(again, ledger, rejects, body)
    assert second.failed_message_ids == [] and second.skipped_already_done == 75
    assert sorted(again.sent) == sorted(f"user-{n}" for n in range(75, 100))


def test_a_dedupe_envelope_delivered_whole_is_recorded_and_its_later_copy_is_skipped() -> None:
    body, ledger, rejects = import_message(100), Ledger(), Rejects()
    assert queue.decode(body).dedupe and not queue.decode(message(1)).dedupe  # only imports are marked
    assert '"dedupe"' not in message(1)  # other envelopes read as before

    first = deliver(Braze(), ledger, rejects, body)
    assert first.failed_message_ids == [] and first.delivered == 100
    assert ledger.done == {"imp-1-envelope-0": frozenset(range(100))}

    again = Braze()
    copy = deliver(again, ledger, rejects, body)
    assert copy.failed_message_ids == [] and copy.skipped_already_done == 100 and again.sent == []


def test_two_copies_of_a_dedupe_envelope_in_one_batch_go_out_once_and_a_plain_one_is_not_recorded() -> None:
    braze, ledger = Braze(), Ledger()
    outcome = deliver(braze, ledger, Rejects(), import_message(10), import_message(10), message(5))
    assert outcome.failed_message_ids == [] and outcome.skipped_already_done == 10
    assert sorted(braze.sent) == sorted([f"user-{n}" for n in range(10)] + [f"user-{n}" for n in range(5)])
    assert list(ledger.done) == ["imp-1-envelope-0"]  # the plain envelope, delivered whole, writes nothing


def test_an_object_braze_refuses_goes_to_the_rejects_store_it_was_given() -> None:
    ledger, rejects = Ledger(), Rejects()

    outcome = deliver(Braze(refused="user-1"), ledger, rejects, message(3))

    assert outcome.failed_message_ids == [] and (outcome.delivered, outcome.rejected) == (2, 1)
    [record] = rejects.kept
    assert record["object"]["external_id"] == "user-1" and record["reason"]["type"] == "BLOCKED"
    assert outcome.rejected_records_key == "memory" and ledger.done == {}


class UnreadableOrderRecords(OrderStore):
    def __init__(self) -> None:
        super().__init__("unreadable")

    def _query(self, since: str) -> Iterator[OrderRecord]:
        raise RuntimeError("DynamoDB is unavailable")


def test_when_the_order_records_cannot_be_read_nothing_is_sent_and_the_messages_come_back() -> None:
    braze, ledger, rejects = Braze(), Ledger(), Rejects()
    parts = SenderParts(braze, Key(), ledger, rejects, Attributes(), order=UnreadableOrderRecords())  # type: ignore[arg-type]

    outcome = Sender(CONFIG, parts).deliver([("msg-0", message(3))], lambda: 60.0)

    assert outcome.failed_message_ids == ["msg-0"] and outcome.failed == 3
    assert braze.sent == [] and ledger.done == {}

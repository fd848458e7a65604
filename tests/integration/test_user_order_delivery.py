"""Deletes, aliases and merges through the sender and the Braze sandbox, in each user's order
(docs/ordering.md): the handler with moto's UserOrderTable, queue, ledger and bucket."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import boto3
import pytest

from braze_forwarder import queue
from braze_forwarder.delivery import ordering
from braze_forwarder.delivery.ledger import DynamoLedger
from braze_forwarder.user_order import OrderRecord, OrderStore, user_digest
from local.braze_sandbox import BrazeSandbox, SandboxConfig, ScriptedResponse
from tests.conftest import LambdaContextStub, load_event, use_sender_environment
from tests.integration.test_braze_sender import failed_ids, rejected_records

pytestmark = pytest.mark.clock

BRAZE_KEY = "braze-rest-key-0123456789"
_timeline = [0.0]


@pytest.fixture(autouse=True)
def timeline() -> None:
    """Each test's accept times on a timeline that began ten minutes before it (every fence has
    passed), read from the clock the test runs on (tests/clock.py moves it)."""
    _timeline[0] = time.time() - 600


def at(second: float) -> str:
    """An accept time `second` seconds into the test's timeline."""
    return ordering._iso(_timeline[0] + second)


@pytest.fixture
def braze() -> Iterator[BrazeSandbox]:
    with BrazeSandbox(SandboxConfig(api_key=BRAZE_KEY, seed=1)) as sandbox:
        yield sandbox


@pytest.fixture
def store(aws_stack) -> OrderStore:
    return OrderStore(aws_stack.refs["UserOrderTable"])


@pytest.fixture
def send(aws_stack, monkeypatch, braze) -> Iterator[Callable[..., dict[str, Any]]]:
    # Held objects come back after a second: the tests read their copies from the queue.
    use_sender_environment(monkeypatch, aws_stack, braze.url, BRAZE_KEY, ORDER_HOLD_DELAY_SECONDS="1")
    from functions.braze_sender import app

    app.reset()

    def run(*bodies: str, order: OrderStore | None = None, ledger: DynamoLedger | None = None) -> dict[str, Any]:
        event = load_event("braze_sender_sqs.json")
        template = event["Records"][0]
        event["Records"] = [{**template, "messageId": f"msg-{n}", "body": body} for n, body in enumerate(bodies)]
        # Each invocation a fresh execution environment: the records here were accepted minutes
        # before they are written, which a warm snapshot (reading only what is new) would not expect.
        ordering.forget_snapshots()
        parts = app.sender_parts()
        if order is not None:
            parts = dataclasses.replace(parts, order=order)
        if ledger is not None:
            parts = dataclasses.replace(parts, ledger=ledger)
        return app.lambda_handler(event, LambdaContextStub(remaining_millis=60_000), parts=parts)

    yield run
    app.reset()


def envelope(kind: str, objects: list[tuple[str, Any]], accepted_at: str) -> str:
    items = [(array, index, queue.encode_object(obj)) for index, (array, obj) in enumerate(objects)]
    [body] = queue.build_messages(
        kind,  # type: ignore[arg-type]
        items,
        source="tests",
        correlation_id="corr-1",
        max_message_bytes=1 << 20,
        accepted_at=accepted_at,
    )
    return body


def played(seq: int, user: str = "alice") -> tuple[str, dict[str, Any]]:
    """An event whose time names it: the sandbox's history keeps an event's name and time."""
    return ("events", {"external_id": user, "name": "played", "time": stamp(seq)})


def stamp(seq: int) -> str:
    return f"2026-12-07T00:00:{seq:02d}Z"


def delete(store: OrderStore, user: str, accepted_at: str) -> str:
    """What the API does for a delete: the tombstone first, then the message."""
    store.put([OrderRecord("delete", user_digest(("external_id", user)), accepted_at)])
    return envelope("delete", [("external_ids", user)], accepted_at)


def held_copies(aws_stack, count: int = 1) -> list[str]:
    """The next `count` copies of held objects the sender sent back to the events queue, as SQS hands
    them out once their delay is over (taken off the queue: the tests hand them to the sender)."""
    sqs, url = boto3.client("sqs"), aws_stack.refs["EventsQueue"]
    bodies: list[str] = []
    for _ in range(10):  # each receive waits up to 2 s for the delay to end
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
        for message in received:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            bodies.append(message["Body"])
        if len(bodies) >= count:
            break
    assert len(bodies) == count and all(queue.decode(body).dedupe for body in bodies)
    return bodies


def seqs(entries: list[dict[str, Any]] | None) -> list[int]:
    """The events of a sandbox history, by the seq their time names."""
    return [int(e["time"][-3:-1]) for e in entries or [] if e.get("op") == "event"]


def history_seqs(braze: BrazeSandbox, user: str) -> list[int]:
    return seqs(braze.history(user))


def test_track_delete_track_leaves_only_the_objects_accepted_after_the_delete(send, braze, store, aws_stack):
    assert failed_ids(send(envelope("track", [played(1), played(2)], at(10)))) == []
    deletion = delete(store, "alice", at(20))  # the API's tombstone, written when the delete was accepted
    after = envelope("track", [played(3)], at(30))
    held = send(after)  # accepted after an undelivered delete: back to the queue, the message acknowledged
    assert failed_ids(held) == []
    assert failed_ids(send(deletion)) == []
    [copy] = held_copies(aws_stack)
    assert failed_ids(send(copy)) == []  # the held objects, once more
    redriven = send(envelope("track", [played(0)], at(5)))  # a pre-delete message from the DLQ

    assert failed_ids(redriven) == []
    [record] = braze.deletions
    assert record["found"] == 1 and seqs(record["history"]) == [1, 2]
    assert seqs(braze.since_deletion("alice")) == [3]
    [dropped] = [r for r in rejected_records(aws_stack) if r["reason"]["type"] == "DROPPED_AFTER_DELETE"]
    assert dropped["object"] is None and dropped["origin"]["accepted_at"] == at(5)


class DiesBeforeMarkingDelivered(OrderStore):
    """The sender killed between Braze's answer and mark_delivered."""

    def mark_delivered(self, record: OrderRecord, delivered_at: str | None = None) -> None:
        raise RuntimeError("killed")


def test_a_delete_sent_twice_is_harmless_and_a_delivered_one_never_deletes_the_fresh_profile(send, braze, store):
    assert failed_ids(send(envelope("track", [played(1)], at(10)))) == []
    deletion = delete(store, "alice", at(20))

    dying = send(deletion, order=DiesBeforeMarkingDelivered(store.table))
    assert failed_ids(dying) == ["msg-0"]  # comes back
    assert failed_ids(send(deletion)) == []  # sent again: Braze finds nobody
    assert failed_ids(send(envelope("track", [played(3)], at(30)))) == []
    assert failed_ids(send(deletion)) == []  # a duplicate or redrive: no call

    assert [d["found"] for d in braze.deletions] == [1, 0]
    assert seqs(braze.since_deletion("alice")) == [3]


def test_a_sender_killed_after_queueing_held_objects_delivers_them_once(send, braze, store, aws_stack):
    """The sender holds an object, queues its copy and dies before SQS deletes the message (here: the
    handler returns and its answer is lost). The message comes back after the delete reached Braze,
    when a fresh judgement would send the object at once while its copy still waits in the queue."""
    assert failed_ids(send(envelope("track", [played(1)], at(10)))) == []
    deletion = delete(store, "alice", at(20))
    after = envelope("track", [played(3)], at(30))

    assert failed_ids(send(after)) == []  # held, its copy queued; then the sender died: the message returns
    assert failed_ids(send(deletion)) == []
    assert failed_ids(send(after)) == []  # the held group goes as the same copy again, not to Braze
    assert braze.since_deletion("alice") == []
    first, second = held_copies(aws_stack, 2)
    assert queue.decode(first).id == queue.decode(second).id
    assert failed_ids(send(first)) == []
    assert failed_ids(send(second)) == []  # the ledger has the copy whole: skipped

    assert seqs(braze.since_deletion("alice")) == [3]


class Killed(BaseException):
    """The execution environment died (no `except Exception` in the sender catches it)."""


class DiesAfterRecordingAHold(DynamoLedger):
    """The sender killed between recording a held group and SQS taking its copy."""

    def record_hold(self, envelope_id: str, positions: Sequence[int]) -> None:
        super().record_hold(envelope_id, positions)
        raise Killed


def test_a_sender_killed_between_recording_a_hold_and_queueing_its_copy_loses_nothing(send, braze, store, aws_stack):
    assert failed_ids(send(envelope("track", [played(1)], at(10)))) == []
    deletion = delete(store, "alice", at(20))
    after = envelope("track", [played(3), played(4, "bob")], at(30))
    dying = DiesAfterRecordingAHold(aws_stack.refs["DeliveryLedgerTable"], ttl_seconds=3600)

    with pytest.raises(Killed):
        send(after, ledger=dying)
    assert failed_ids(send(deletion)) == []
    assert failed_ids(send(after)) == []  # back: bob's event goes, alice's is sent as the recorded copy
    [copy] = held_copies(aws_stack)
    assert failed_ids(send(copy)) == []

    assert seqs(braze.since_deletion("alice")) == [3]
    assert history_seqs(braze, "bob") == [4]


def test_a_delete_whose_answer_was_lost_is_sent_again_and_the_order_holds(send, braze, store):
    assert failed_ids(send(envelope("track", [played(1)], at(10)))) == []
    deletion = delete(store, "alice", at(20))
    braze.script(
        ScriptedResponse(process=True, drop_connection=True, path="/users/delete"),
        ScriptedResponse(status=429, path="/users/delete"),
    )

    assert failed_ids(send(deletion)) == []  # retried within the invocation
    assert failed_ids(send(envelope("track", [played(3)], at(30)))) == []

    assert [d["found"] for d in braze.deletions] == [1, 0]  # processed, answer lost; 429; sent again
    assert seqs(braze.since_deletion("alice")) == [3]


def test_events_after_an_alias_wait_until_braze_has_the_alias(send, braze, store, aws_stack):
    alias = {"alias_name": "device-1", "alias_label": "device"}
    store.put([OrderRecord("alias", user_digest(("user_alias", "device-1", "device")), at(10))])
    aliased = envelope("alias", [("user_aliases", alias)], at(10))
    events = envelope(
        "track",
        [("events", {"user_alias": alias, "name": "opened", "time": stamp(1)})],
        at(11),
    )
    braze.script(*[ScriptedResponse(status=500, path="/users/alias/new") for _ in range(3)])

    assert failed_ids(send(events)) == []  # held: the alias is not in Braze yet
    assert failed_ids(send(aliased)) == ["msg-0"]  # three 500s: back to the queue
    [copy] = held_copies(aws_stack)
    assert failed_ids(send(copy)) == []  # still held: a copy of the copy
    assert failed_ids(send(aliased)) == []
    [copy] = held_copies(aws_stack)
    assert failed_ids(send(copy)) == []

    assert seqs(braze.alias_history("device-1", "device")) == [1]
    assert store.get(OrderRecord("alias", user_digest(("user_alias", "device-1", "device")), at(10))) is None


def test_a_merge_goes_after_older_objects_and_newer_ones_wait_for_it(send, braze, store):
    merged = user_digest(("external_id", "old"))
    store.put([OrderRecord("merge", merged, at(20), keep=user_digest(("external_id", "new")))])
    update = {"identifier_to_merge": {"external_id": "old"}, "identifier_to_keep": {"external_id": "new"}}
    older = envelope("track", [played(1, "old"), played(2, "new")], at(10))
    newer = envelope("track", [played(3, "old")], at(30))
    merge = envelope("merge", [("merge_updates", update)], at(20))

    # The older objects and the merge in one batch: the merge goes after them.
    assert failed_ids(send(older, merge)) == []
    assert failed_ids(send(newer)) == []

    [record] = braze.merges
    assert record["outcome"] == "merged" and seqs(record["merged_history"]) == [1]
    assert history_seqs(braze, "old") == [3]  # accepted after the merge: a new profile, after it


def test_deletes_go_50_a_call_one_identifier_type_each_and_a_refused_one_is_kept(send, braze, store, aws_stack):
    users = [f"user-{n}" for n in range(60)] + [""]  # Braze refuses the empty id: a 400 for the call
    aliases = [{"alias_name": f"d{n}", "alias_label": "device"} for n in range(2)]
    records = [OrderRecord("delete", user_digest(("external_id", u)), at(20)) for u in users]
    records += [OrderRecord("delete", user_digest(("user_alias", a["alias_name"], "device")), at(20)) for a in aliases]
    store.put(records)
    by_id = envelope("delete", [("external_ids", u) for u in users], at(20))
    by_alias = envelope("delete", [("user_aliases", a) for a in aliases], at(20))

    assert failed_ids(send(by_id, by_alias)) == []

    answered = [r.json for r in braze.requests if r.path == "/users/delete" and r.status == 200]
    assert all(len(body) == 1 for body in answered)  # one identifier type per request
    deleted = [i for body in answered for i in body.get("external_ids", [])]
    assert sorted(deleted) == sorted(users[:-1]) and max(len(b.get("external_ids", [])) for b in answered) == 50
    assert [a for body in answered for a in body.get("user_aliases", [])] == aliases
    [refused] = [r for r in rejected_records(aws_stack) if r["origin"]["kind"] == "delete"]
    assert refused["object"] == "" and refused["braze"]["status"] == 400
    undelivered = [r for r in records if not (store.get(r) or r).delivered]
    assert undelivered == [records[60]]  # a refused delete keeps what follows waiting (DeletesRefused)


def test_a_merge_waits_when_an_older_object_of_its_user_fails_in_the_same_batch(send, braze, store):
    store.put(
        [OrderRecord("merge", user_digest(("external_id", "old")), at(20), keep=user_digest(("external_id", "new")))]
    )
    update = {"identifier_to_merge": {"external_id": "old"}, "identifier_to_keep": {"external_id": "new"}}
    older = envelope("track", [played(1, "old"), played(2, "new")], at(10))
    merge = envelope("merge", [("merge_updates", update)], at(20))
    braze.script(*[ScriptedResponse(status=500, path="/users/track") for _ in range(3)])

    assert failed_ids(send(older, merge)) == ["msg-0", "msg-1"]  # the merge went back with its older object
    assert braze.merges == []
    assert failed_ids(send(older, merge)) == []

    [record] = braze.merges
    assert record["outcome"] == "merged" and seqs(record["merged_history"]) == [1]

"""The order gate (delivery/ordering.py): what a batch's objects become under the order records."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from braze_forwarder import aws, ledger_entries, queue, user_order
from braze_forwarder.config import SenderSettings
from braze_forwarder.delivery import ordering
from braze_forwarder.delivery.ledger import DynamoLedger
from braze_forwarder.delivery.ordering import OrderGate
from braze_forwarder.delivery_model import Message, Parcel, State
from braze_forwarder.ledger_entries import LedgerEntry
from braze_forwarder.user_order import OrderRecord, OrderStore, user_digest

pytestmark = pytest.mark.clock

ALICE = user_digest(("external_id", "alice"))
CONFIG = SenderSettings(
    braze_rest_endpoint="https://rest.iad-01.braze.com",
    braze_api_key_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:braze",
    ledger_table="not-read",
    rejected_bucket="not-written",
    user_order_table="order",
    events_queue_url="not-written",
)


@pytest.fixture
def store():
    with mock_aws():
        aws.reset()
        ordering.forget_snapshots()
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="order",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="ledger",
            KeySchema=[{"AttributeName": "message_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "message_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield OrderStore("order")
        ordering.forget_snapshots()
        aws.reset()


@pytest.fixture
def events_queue(store) -> str:
    return boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="events")["QueueUrl"]


LEDGER = DynamoLedger("ledger", ttl_seconds=14 * 24 * 3600)


def gate(store: OrderStore, queue_url: str = "", now: float | None = None) -> tuple[OrderGate, list[dict[str, Any]]]:
    kept: list[dict[str, Any]] = []
    config = dataclasses.replace(CONFIG, events_queue_url=queue_url or "not-written")
    clock = (lambda: now) if now is not None else time.time
    return OrderGate(store, LEDGER, config, kept.append, clock=clock), kept


def parcels(kind: str, objects: list[tuple[str, Any]], accepted_at: str = "", received_at: str = "") -> list[Parcel]:
    items = [(array, index, queue.encode_object(obj)) for index, (array, obj) in enumerate(objects)]
    [body] = queue.build_messages(
        kind,  # type: ignore[arg-type]
        items,
        source="tests",
        correlation_id="corr",
        max_message_bytes=1 << 20,
        received_at=received_at or accepted_at or None,
        accepted_at=accepted_at or None,
    )
    if not accepted_at:  # an envelope from before accept times existed
        data = json.loads(body)
        del data["accepted_at"]
        body = json.dumps(data)
    message = Message("m-1", body, queue.decode(body))
    assert message.envelope is not None
    return [
        Parcel(
            kind,
            item.array,
            item.object,
            10,
            ordering.parcel_user(kind, item.array, item.object),
            message,
            n,
            item.index,
        )  # type: ignore[arg-type]
        for n, item in enumerate(message.envelope.items)
    ]


def event(user: str = "alice", seq: int = 0) -> tuple[str, dict[str, Any]]:
    return (
        "events",
        {"external_id": user, "name": "played", "time": "2026-12-07T00:00:00Z", "properties": {"seq": seq}},
    )


_timeline = [0.0]


@pytest.fixture(autouse=True)
def timeline() -> None:
    """Each test's accept times on a timeline that began ten minutes before it (every fence has
    passed), read from the clock the test runs on (tests/clock.py moves it)."""
    _timeline[0] = time.time() - 600


def at(second: float) -> str:
    """An accept time `second` seconds into the test's timeline."""
    return ordering._iso(_timeline[0] + second)


def test_objects_accepted_at_or_before_a_tombstone_are_dropped_and_reported_without_the_object(store):
    store.put([OrderRecord("delete", ALICE, at(10))])
    before, tie, other = parcels("track", [event()], at(9))[0], parcels("track", [event()], at(10))[0], None
    other = parcels("track", [event("bob")], at(9))[0]
    judge, kept = gate(store)

    assert judge.open([before, tie, other]) == [other]

    assert (before.state, tie.state) == (State.DROPPED, State.DROPPED)  # ties drop
    assert [r["reason"]["type"] for r in kept] == ["DROPPED_AFTER_DELETE"] * 2
    assert all(r["object"] is None and r["origin"]["accepted_at"] and r["origin"]["array"] == "events" for r in kept)
    assert judge.counts["dropped"] == 2


def test_an_envelope_without_accept_time_is_judged_by_its_received_at(store):
    store.put([OrderRecord("delete", ALICE, at(10))])
    old = parcels("track", [event()], received_at=at(9))[0]
    assert old.message.envelope is not None and old.message.envelope.accepted_at == ""

    judge, _ = gate(store)

    assert judge.open([old]) == [] and old.state is State.DROPPED


def test_objects_after_an_undelivered_delete_go_back_to_the_queue_and_after_a_delivered_one_are_sent(
    store, events_queue
):
    tombstone = OrderRecord("delete", ALICE, at(10))
    store.put([tombstone])
    after = parcels("track", [event(seq=1), event(seq=2)], at(11))
    judge, _ = gate(store, events_queue)

    assert judge.open(after) == []

    assert [p.state for p in after] == [State.HELD, State.HELD] and judge.counts["held"] == 2
    [held] = boto3.client("sqs").receive_message(QueueUrl=events_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    ) or [None]
    # Delayed: not visible yet; the message's content is checked through the queue's attributes instead.
    assert held is None
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=events_queue, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"

    store.mark_delivered(tombstone)
    again = parcels("track", [event(seq=1)], at(11))
    # The warm snapshot still says undelivered: the deciding record is read again before holding.
    judge2, _ = gate(store, events_queue)
    assert judge2.open(again) == again


def test_a_held_message_keeps_its_envelope_fields_and_indexes(store, events_queue):
    store.put([OrderRecord("alias", ALICE, at(10))])
    objects = [event("bob", 0), event("alice", 1), event("alice", 2)]
    batch = parcels("track", objects, at(11))
    judge, _ = gate(store, events_queue)
    judge.hold_delay_seconds = 0  # visible at once, to read it

    sent = judge.open(batch)

    assert [p.object["external_id"] for p in sent] == ["bob"]
    [message] = boto3.client("sqs").receive_message(QueueUrl=events_queue, MaxNumberOfMessages=10)["Messages"]
    held = queue.decode(message["Body"])
    original = batch[0].message.envelope
    assert original is not None
    assert (held.kind, held.source, held.correlation_id, held.received_at, held.accepted_at) == (
        "track",
        "tests",
        "corr",
        original.received_at,
        original.accepted_at,
    )
    assert [(i.index, i.object["properties"]["seq"]) for i in held.items] == [(1, 1), (2, 2)]
    assert held.id != original.id and held.dedupe


def test_the_same_objects_held_twice_go_back_as_copies_of_one_envelope_the_ledger_delivers_once(store, events_queue):
    """A sender killed after queueing held objects and before marking them done meets the message
    again and holds them again: both copies carry one deterministic id, marked dedupe."""
    store.put([OrderRecord("alias", ALICE, at(10))])
    batch = parcels("track", [event("alice", 1), event("alice", 2)], at(11))
    ids = []
    for _ in range(2):
        judge, _ = gate(store, events_queue)
        judge.hold_delay_seconds = 0
        assert judge.open([dataclasses.replace(p) for p in batch]) == []
        [message] = boto3.client("sqs").receive_message(QueueUrl=events_queue, MaxNumberOfMessages=10)["Messages"]
        copy = queue.decode(message["Body"])
        assert copy.dedupe
        ids.append(copy.id)
        ordering.forget_snapshots()
    assert ids[0] == ids[1]

    other = parcels("track", [event("alice", 1)], at(11))  # another message: another copy id
    judge, _ = gate(store, events_queue)
    judge.hold_delay_seconds = 0
    judge.open(other)
    [message] = boto3.client("sqs").receive_message(QueueUrl=events_queue, MaxNumberOfMessages=10)["Messages"]
    assert queue.decode(message["Body"]).id != ids[0]


def returning(batch: list[Parcel]) -> list[Parcel]:
    """The batch's message come back from the queue, as the sender opens it: with the ledger's entry."""
    original = batch[0].message
    assert original.envelope is not None
    entry = LEDGER.entries([original.envelope.id]).get(original.envelope.id, LedgerEntry())
    message = Message(original.sqs_message_id, original.body, original.envelope, entry.done, entry.held)
    back = [dataclasses.replace(p, message=message) for p in batch if p.position not in entry.done]
    message.parcels = back
    return back


def copies(queue_url: str) -> list[queue.Envelope]:
    received = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [queue.decode(m["Body"]) for m in received]


def test_a_returning_message_sends_its_held_objects_as_the_same_copy_whatever_the_verdict_now(store, events_queue):
    """Killed after the copy was queued and before the message was acknowledged: the message comes
    back after the delete reached Braze. Sent directly, its objects would reach Braze twice (the copy
    still waits in the queue); sent as the same copy (same id, dedupe), the ledger delivers them once."""
    tombstone = OrderRecord("delete", ALICE, at(10))
    store.put([tombstone])
    batch = parcels("track", [event("bob", 0), event("alice", 1), event("alice", 2)], at(11))
    judge, _ = gate(store, events_queue)
    judge.hold_delay_seconds = 0

    assert [p.object["external_id"] for p in judge.open(batch)] == ["bob"]
    [first] = copies(events_queue)
    assert batch[0].message.envelope is not None
    assert LEDGER.entries([batch[0].message.envelope.id])[batch[0].message.envelope.id].held == ((1, 2),)

    store.mark_delivered(tombstone)  # a fresh judgement would now send alice's objects
    ordering.forget_snapshots()
    back = returning(batch)
    judge, _ = gate(store, events_queue)
    judge.hold_delay_seconds = 0

    assert [p.object["external_id"] for p in judge.open(back)] == ["bob"]
    assert [p.state for p in back] == [State.PENDING, State.HELD, State.HELD]
    [second] = copies(events_queue)
    assert (second.id, second.items, second.dedupe) == (first.id, first.items, True)


def test_a_copy_sqs_refused_stays_recorded_and_goes_as_that_copy_when_its_message_returns(store, events_queue):
    """SQS's refusal may be a timeout after it took the copy: the held group stays in the ledger and
    the returning message sends the same copy, not its objects directly."""
    tombstone = OrderRecord("delete", ALICE, at(10))
    store.put([tombstone])
    batch = parcels("track", [event("alice", 1), event("alice", 2)], at(11))
    refused, _ = gate(store, events_queue + "-gone")

    assert refused.open(batch) == []
    assert [p.state for p in batch] == [State.FAILED, State.FAILED] and refused.counts["held"] == 0

    store.mark_delivered(tombstone)
    ordering.forget_snapshots()
    back = returning(batch)
    judge, _ = gate(store, events_queue)
    judge.hold_delay_seconds = 0

    assert judge.open(back) == []
    [copy] = copies(events_queue)
    envelope = batch[0].message.envelope
    assert envelope is not None
    assert copy.id == ordering._copy_ids(f"{envelope.id}/held/0,1")(0)
    assert [i.object["properties"]["seq"] for i in copy.items] == [1, 2]


def test_the_ledger_keeps_held_groups_through_a_partial_delivery_and_across_attempts(store):
    """A message whose copy SQS refused fails, and its partial delivery is recorded: the held group
    must stay, or the returning message would judge those objects anew while the copy may exist."""
    LEDGER.record_hold("envelope-1", (4, 2))
    LEDGER.record("envelope-1", [0, 1])
    LEDGER.record_hold("envelope-1", (3,))  # another call's objects held on the next attempt
    LEDGER.record_hold("envelope-1", (4, 2))  # the same group again: one group

    assert LEDGER.entries(["envelope-1", "envelope-2"]) == {
        "envelope-1": LedgerEntry(frozenset({0, 1}), ((3,), (4, 2)))
    }
    assert ledger_entries.done_positions("ledger", ["envelope-1"]) == {"envelope-1": frozenset({0, 1})}


def test_a_held_group_is_not_recorded_when_nothing_is_held(store, events_queue):
    """The ledger write is the hold's alone: a batch the gate lets go writes nothing."""
    tombstone = OrderRecord("delete", ALICE, at(10))
    store.put([tombstone])
    store.mark_delivered(tombstone)
    batch = parcels("track", [event("alice", 1)], at(11))
    judge, _ = gate(store, events_queue)

    assert judge.open(batch) == batch
    assert batch[0].message.envelope is not None
    assert LEDGER.entries([batch[0].message.envelope.id]) == {}


def test_a_delete_before_its_fence_goes_back_with_the_remaining_delay(store, events_queue):
    store.put([OrderRecord("delete", ALICE, at(10))])
    [delete] = parcels("delete", [("external_ids", "alice")], at(10))
    now = ordering._seconds(at(10)) + 5
    judge, _ = gate(store, events_queue, now=now)

    assert judge.open([delete]) == []

    assert delete.state is State.HELD and judge.counts["early"] == 1
    assert judge.fence_seconds > 5


def test_a_delete_is_not_dropped_by_its_own_tombstone_nor_held_by_an_earlier_one(store):
    store.put([OrderRecord("delete", ALICE, at(5)), OrderRecord("delete", ALICE, at(10))])
    [delete] = parcels("delete", [("external_ids", "alice")], at(10))
    judge, _ = gate(store, now=ordering._seconds(at(10)) + 3600)

    assert judge.open([delete]) == [delete]


def test_a_delivered_delete_makes_no_call_and_a_superseded_one_is_marked_delivered(store):
    delivered = OrderRecord("delete", ALICE, at(10))
    store.put([delivered])
    store.mark_delivered(delivered)
    [duplicate] = parcels("delete", [("external_ids", "alice")], at(10))
    judge, _ = gate(store, now=ordering._seconds(at(20)) + 3600)

    assert judge.open([duplicate]) == []
    assert duplicate.state is State.DELIVERED and judge.counts["already_delivered"] == 1

    later = OrderRecord("delete", ALICE, at(20))
    store.put([later, OrderRecord("delete", ALICE, at(30))])
    ordering.forget_snapshots()
    [superseded] = parcels("delete", [("external_ids", "alice")], at(20))
    judge2, _ = gate(store, now=ordering._seconds(at(30)) + 3600)
    assert judge2.open([superseded]) == [] and superseded.state is State.DROPPED
    current = store.get(later)
    assert current is not None and current.delivered  # objects after it need not wait for it


def ago(seconds: float) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_a_stale_snapshot_is_taken_again_before_a_call_and_the_call_judged_again(store):
    objects = parcels("track", [event(seq=1), event("bob", 2)], ago(2))
    judge, _ = gate(store)
    assert judge.open(objects) == objects
    first = judge.snapshot
    assert first is not None

    store.put([OrderRecord("delete", ALICE, ago(1))])  # accepted after the objects, written after the snapshot
    assert judge.before_call(objects) == objects  # still fresh: trusted
    first.taken_at_monotonic -= user_order.SNAPSHOT_LIFE_SECONDS  # now stale

    assert [p.object["external_id"] for p in judge.before_call(objects)] == ["bob"]
    assert judge.snapshot is not first and objects[0].state is State.DROPPED
    assert judge.counts["snapshots_renewed"] == 1


def test_an_object_older_than_a_merge_that_may_have_reached_braze_is_kept_not_sent(store):
    store.put([OrderRecord("merge", ALICE, at(10), keep=user_digest(("external_id", "kept")))])
    [late] = parcels("track", [event()], at(9))
    judge, kept = gate(store)

    assert judge.open([late]) == []

    assert late.state is State.REJECTED
    [record] = kept
    assert record["reason"]["type"] == "ARRIVED_AFTER_MERGE" and record["object"]["external_id"] == "alice"


def test_after_send_erases_the_deleted_user_and_marks_the_delete_delivered(store):
    tombstone = OrderRecord("delete", ALICE, at(10))
    alias = OrderRecord("alias", user_digest(("user_alias", "n", "l")), at(11))
    store.put([tombstone, alias])
    forgotten: list[str] = []
    [delete] = parcels("delete", [("external_ids", "alice")], at(10))
    [new_alias] = parcels("alias", [("user_aliases", {"alias_name": "n", "alias_label": "l"})], at(11))
    judge, _ = gate(store, now=ordering._seconds(at(11)) + 3600)
    judge.attributes = type("Attributes", (), {"forget": lambda self, user: forgotten.append(user)})()  # type: ignore[assignment]
    assert judge.open([delete, new_alias]) == [delete, new_alias]

    delete.state = new_alias.state = State.DELIVERED
    judge.after_send([delete, new_alias])

    current = store.get(tombstone)
    assert current is not None and current.delivered and forgotten == [ALICE]
    assert store.get(alias) is None


def test_a_merge_is_sent_once_and_marked_delivered_then_a_redrive_makes_no_call(store):
    merge = OrderRecord("merge", ALICE, at(10), keep=user_digest(("external_id", "kept")))
    store.put([merge])
    update = {"identifier_to_merge": {"external_id": "alice"}, "identifier_to_keep": {"external_id": "kept"}}
    [first] = parcels("merge", [("merge_updates", update)], at(10))
    judge, _ = gate(store, now=ordering._seconds(at(10)) + 3600)
    assert judge.open([first]) == [first]
    first.state = State.DELIVERED
    judge.after_send([first])

    [redriven] = parcels("merge", [("merge_updates", update)], at(10))
    judge2, _ = gate(store, now=ordering._seconds(at(10)) + 3600)

    assert judge2.open([redriven]) == [] and redriven.state is State.DELIVERED
    current = store.get(merge)
    assert current is not None and current.delivered


def test_records_undelivered_past_the_overdue_time_are_counted_once_read_again(store):
    stuck = OrderRecord("delete", ALICE, ordering._iso(time.time() - ordering.OVERDUE_SECONDS - 60))
    recent = OrderRecord("delete", user_digest(("external_id", "bob")), at(10))
    delivered = OrderRecord("merge", user_digest(("external_id", "carol")), stuck.accepted_at)
    store.put([stuck, recent, delivered])
    store.mark_delivered(delivered)
    judge, _ = gate(store)

    judge.open(parcels("track", [event("dave")], at(20)))

    assert judge.counts["overdue"] == 1  # the stuck delete; not the recent one, not the delivered merge

    # A warm snapshot carries the stuck delete; delivered meanwhile, it is read again (at most once
    # a minute) and no longer counted.
    store.mark_delivered(stuck)
    judge2, _ = gate(store, now=time.time() + ordering._OVERDUE_RECHECK_EVERY_SECONDS + 1)
    judge2.open(parcels("track", [event("dave")], at(21)))
    assert judge2.counts["overdue"] == 0


def test_overdue_records_are_read_again_at_most_25_an_invocation(store):
    old = ordering._iso(time.time() - ordering.OVERDUE_SECONDS - 60)
    store.put([OrderRecord("alias", user_digest(("external_id", f"u{n}")), old) for n in range(40)])
    reads = []
    real_get = store.get
    store.get = lambda record: reads.append(record) or real_get(record)  # counts the store's reads

    judge, _ = gate(store)
    judge.open(parcels("track", [event("dave")], at(20)))

    assert judge.counts["overdue"] == 40 and len(reads) == ordering._OVERDUE_RECHECKS_PER_INVOCATION

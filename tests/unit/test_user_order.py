"""The order records and the verdict they give an object (user_order.py, docs/ordering.md)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from braze_forwarder import aws, queue, user_order
from braze_forwarder.user_order import OrderRecord, OrderStore, Snapshot, user_digest

pytestmark = pytest.mark.clock

ALICE = user_digest(("external_id", "alice"))
BOB = user_digest(("external_id", "bob"))


def _snapshot(*records: OrderRecord) -> Snapshot:
    snapshot = Snapshot(0.0, "2030-01-01T00:00:00.000Z", "2030-01-01T00:00:00.000Z")
    for record in records:
        snapshot.add(record)
    return snapshot


def test_an_object_accepted_at_or_before_a_delete_is_dropped_whether_or_not_the_delete_was_sent():
    for delivered in (None, "2030-01-01T00:01:00.000Z"):
        tombstone = OrderRecord("delete", ALICE, "2030-01-01T00:00:10.000Z", delivered)
        snapshot = _snapshot(tombstone)
        assert snapshot.verdict([ALICE], "2030-01-01T00:00:09.999Z") == ("drop", tombstone)
        assert snapshot.verdict([ALICE], "2030-01-01T00:00:10.000Z") == ("drop", tombstone)  # ties drop
        assert snapshot.verdict([BOB], "2030-01-01T00:00:09.999Z") == ("send", None)


def test_an_object_accepted_after_a_delete_waits_for_it_then_goes():
    waiting = OrderRecord("delete", ALICE, "2030-01-01T00:00:10.000Z")
    assert _snapshot(waiting).verdict([ALICE], "2030-01-01T00:00:10.001Z") == ("hold", waiting)
    sent = OrderRecord("delete", ALICE, "2030-01-01T00:00:10.000Z", "2030-01-01T00:01:00.000Z")
    assert _snapshot(sent).verdict([ALICE], "2030-01-01T00:00:10.001Z") == ("send", None)


def test_a_drop_wins_over_a_hold_for_an_object_naming_two_users():
    alias = OrderRecord("alias", BOB, "2030-01-01T00:00:01.000Z")
    tombstone = OrderRecord("delete", ALICE, "2030-01-01T00:00:10.000Z")
    assert _snapshot(alias, tombstone).verdict([BOB, ALICE], "2030-01-01T00:00:05.000Z") == ("drop", tombstone)


def test_identities_name_every_user_an_item_touches():
    digests = user_order.identities
    assert digests("track", "events", {"external_id": "a", "name": "x"}) == [("external_id", "a")]
    assert digests("delete", "external_ids", "a") == [("external_id", "a")]
    assert digests("delete", "user_aliases", {"alias_name": "n", "alias_label": "l"}) == [("user_alias", "n", "l")]
    assert digests("delete", "email_addresses", {"email": "a@x.com", "prioritization": ["identified"]}) == [
        ("email", "a@x.com")
    ]
    assert digests("alias", "user_aliases", {"external_id": "a", "alias_name": "n", "alias_label": "l"}) == [
        ("user_alias", "n", "l"),
        ("external_id", "a"),
    ]
    merge = {"identifier_to_merge": {"external_id": "old"}, "identifier_to_keep": {"external_id": "new"}}
    assert digests("merge", "merge_updates", merge) == [("external_id", "old"), ("external_id", "new")]
    identify = {"external_id": "a", "user_alias": {"alias_name": "n", "alias_label": "l"}}
    assert digests("identify", "aliases_to_identify", identify) == [("external_id", "a"), ("user_alias", "n", "l")]


@pytest.fixture
def store():
    with mock_aws():
        aws.reset()
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="order",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield OrderStore("order")
        aws.reset()


def test_a_snapshot_holds_every_record_since_the_oldest_object_and_a_later_one_reads_only_what_is_new(store):
    earlier = queue.utc_now_iso()
    tombstone = OrderRecord("delete", ALICE, queue.utc_now_iso())
    alias = OrderRecord("alias", BOB, queue.utc_now_iso())
    store.put([tombstone, alias])
    store.put([tombstone])  # a repeated put changes nothing
    first = store.snapshot(earlier)
    assert first.tombstones(ALICE) == [tombstone]
    assert first.verdict([BOB], queue.utc_now_iso())[0] == "hold"

    store.remove(alias)
    store.mark_delivered(tombstone)
    later = store.snapshot(earlier, previous=first)
    assert later.verdict([BOB], queue.utc_now_iso()) == ("send", None)  # the removed alias is re-read
    assert store.recheck(later, tombstone).delivered
    assert later.verdict([ALICE], queue.utc_now_iso()) == ("send", None)
    assert [r.kind for r in store.records(earlier)] == ["delete"]


def test_the_fence_covers_the_snapshot_life_the_call_timeouts_and_the_record_write():
    assert user_order.fence_seconds(3.05, 15.0) == 56

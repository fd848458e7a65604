"""Coalescing and delta sending keep every profile as applying the objects one by one would leave it.

The model profile is the Braze sandbox's (local/braze_sandbox/): a model of Braze written from
BRAZE_API.md independently of the forwarder, which applies attributes as Braze documents (inc,
add/remove, null unsets, nested replace or merge, $add/$remove/$update, subscription groups, push
tokens) and resolves identifiers (update-only objects, alias-only profiles).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braze_forwarder import queue
from braze_forwarder.braze.datapoints import data_points
from braze_forwarder.braze.packing import user_key
from braze_forwarder.braze.validation import check_track_object
from braze_forwarder.delivery.attribute_state import Written
from braze_forwarder.delivery.coalesce import Item, coalesce
from braze_forwarder.delivery.savings import DataPointSavings
from braze_forwarder.delivery_model import Message, Parcel, State
from local import braze_sandbox as sandbox

# Coalescing orders values by when they were received —
# make test runs these on other days (tests/clock.py).
pytestmark = pytest.mark.clock

# ---------------------------------------------------------------- the model profile


def apply_one_by_one(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The profiles the sandbox's Braze model holds after applying the objects in order."""
    store = sandbox._ProfileStore(random.Random(0))
    for obj in objects:
        assert sandbox._validate_track_object("attributes", obj, frozenset()) is None, obj
        profile = store.resolve(obj, create_alias_profile=True)
        if profile is not None:
            sandbox._apply_attributes(profile, obj)
    return {
        profile.key(): {
            "attributes": profile.attributes,
            "subscription_groups": profile.subscription_groups,
            "push_tokens": profile.push_tokens,
        }
        for profile in store.all()
    }


# ---------------------------------------------------------------- random attributes objects

GROUPS = ["8f4c2d3e-1a2b-4c5d-8e9f-0a1b2c3d4e5f", "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e"]
ALIAS = {"alias_name": "a-1", "alias_label": "crm"}
USERS = [
    {"external_id": "u-1"},
    {"external_id": "u-2"},
    {"user_alias": ALIAS},
    {"email": "e1@example.com"},  # no primary identifier: the email identifies
]
# A few names, so that objects keep meeting on the same attribute with every kind of value.
NAMES = ["n1", "n2", "n3"]

leaf = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y"]), st.booleans())
nested = st.recursive(
    leaf,
    lambda children: st.dictionaries(st.sampled_from(["a", "b", "c"]), children, min_size=1, max_size=3),
    max_leaves=6,
).filter(lambda value: isinstance(value, dict))
date = st.sampled_from(["2024-01-01", "2025-06-30T10:00:00Z"]).map(lambda text: {"$time": text})
nested_with_dates = st.one_of(nested, date, st.builds(lambda d, n: {**n, "d": d}, date, nested))
item = st.builds(lambda i, v: {"id": i, "v": v}, st.integers(0, 2), leaf)
plain_values = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False, allow_infinity=False).map(lambda f: round(f, 1)),
    st.sampled_from(["x", "y", ""]),
    st.booleans(),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
    st.lists(item, min_size=1, max_size=2),
)
operations = st.one_of(
    st.integers(-3, 3).map(lambda n: {"inc": n}),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=2).map(lambda values: {"add": values}),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=2).map(lambda values: {"remove": values}),
    st.lists(item, max_size=2).map(lambda items: {"$add": items}),
    st.lists(st.integers(0, 2), max_size=2).map(
        lambda ids: {"$remove": [{"$identifier_key": "id", "$identifier_value": i} for i in ids]}
    ),
)
update = st.lists(st.tuples(st.integers(0, 2), nested), min_size=1, max_size=2).map(
    lambda pairs: {"$update": [{"$identifier_key": "id", "$identifier_value": i, "$new_object": o} for i, o in pairs]}
)
reserved = st.one_of(
    st.tuples(st.just("first_name"), st.sampled_from(["Jon", "Ann", None])),
    st.tuples(st.just("email_subscribe"), st.sampled_from(["opted_in", "subscribed", "unsubscribed"])),
    st.tuples(
        st.just("subscription_groups"),
        st.lists(
            st.builds(
                lambda g, s: {"subscription_group_id": g, "subscription_state": s},
                st.sampled_from(GROUPS),
                st.sampled_from(["subscribed", "unsubscribed"]),
            ),
            min_size=1,
            max_size=2,
        ),
    ),
    st.tuples(st.just("push_tokens"), st.sampled_from(["t1", "t2"]).map(lambda t: [{"app_id": "app", "token": t}])),
)


@st.composite
def attributes_objects(draw: st.DrawFn, users: list[dict[str, Any]] = USERS, plain_only: bool = False) -> dict:
    obj: dict[str, Any] = dict(draw(st.sampled_from(users)))
    update_only = draw(st.sampled_from([None, False] if plain_only else [None, False, True]))
    if update_only is not None:
        obj["_update_existing_only"] = update_only
    merge = False if plain_only else draw(st.booleans())
    if merge:
        obj["_merge_objects"] = True
    kinds = [plain_values, nested_with_dates] if plain_only else [plain_values, nested_with_dates, operations]
    if merge:
        kinds.append(update)
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=3)):
        obj[name] = draw(st.one_of(*kinds))
    for name, value in draw(st.lists(reserved, max_size=2, unique_by=lambda pair: pair[0])):
        obj[name] = value
    return obj


def stream(plain_only: bool = False, users: list[dict[str, Any]] = USERS) -> st.SearchStrategy:
    """Objects, each with the millisecond the API received it: few distinct times, so ties and
    out-of-order arrivals are common."""
    return st.lists(st.tuples(attributes_objects(users, plain_only), st.integers(0, 4)), max_size=14).filter(
        lambda pairs: all(_valid(obj) for obj, _ in pairs)
    )


def _valid(obj: dict[str, Any]) -> bool:
    return check_track_object("attributes", obj, len(queue.encode_object(obj))) is None


def items_of(pairs: list[tuple[dict, int]]) -> list[Item]:
    return [Item(obj, 1_000_000 + t, len(queue.encode_object(obj))) for obj, t in pairs]


def in_arrival_order(pairs: list[tuple[dict, int]]) -> list[dict]:
    return [obj for obj, _ in sorted(pairs, key=lambda pair: pair[1])]


def coalesced(pairs: list[tuple[dict, int]]) -> list[dict]:
    folds = coalesce(items_of(pairs), [user_key(obj) for obj, _ in pairs])
    assert sorted(i for fold in folds for i in fold.members) == list(range(len(pairs)))
    return [obj for obj in (fold.object() for fold in folds) if obj is not None]


def points(objects: Iterable[Mapping[str, Any]]) -> int:
    return sum(data_points("attributes", dict(obj)) for obj in objects)


# ---------------------------------------------------------------- coalescing


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(pairs=stream())
def test_the_coalesced_objects_leave_every_profile_as_the_objects_one_by_one(pairs):
    output = coalesced(pairs)

    assert apply_one_by_one(output) == apply_one_by_one(in_arrival_order(pairs))
    assert points(output) <= points(obj for obj, _ in pairs)
    assert all(_valid(obj) for obj in output)  # still what Braze takes


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(pairs=stream(plain_only=True))
def test_plain_values_of_one_user_become_one_object(pairs):
    output = coalesced(pairs)

    # Without operations only subscription groups, push tokens or another _update_existing_only split.
    def splits(obj: dict) -> tuple:
        return (obj.get("_update_existing_only"), "subscription_groups" in obj, "push_tokens" in obj)

    if all(splits(obj) == (None, False, False) for obj, _ in pairs):
        assert len(output) == len({repr(user_key(obj)) for obj, _ in pairs})


def test_later_values_win_increments_add_up_and_merges_merge():
    pairs = [
        ({"external_id": "u", "plan": "free", "visits": {"inc": 2}, "car": {"a": 1}, "_merge_objects": True}, 1),
        ({"external_id": "u", "plan": "pro", "visits": {"inc": 3}, "car": {"b": {"c": 2}}, "_merge_objects": True}, 2),
        ({"external_id": "u", "score": 10, "tags": ["x"]}, 3),
        ({"external_id": "u", "score": {"inc": 5}, "tags": None}, 4),
    ]

    assert coalesced(pairs) == [
        {
            "external_id": "u",
            "_merge_objects": True,
            "plan": "pro",
            "visits": {"inc": 5},
            "car": {"a": 1, "b": {"c": 2}},
            "score": 15,
            "tags": None,
        }
    ]


def test_an_older_object_arriving_later_in_the_batch_does_not_win():
    pairs = [({"external_id": "u", "plan": "pro"}, 3), ({"external_id": "u", "plan": "free"}, 1)]

    assert coalesced(pairs) == [{"external_id": "u", "plan": "pro"}]


def test_a_conflict_starts_the_next_object_and_later_plain_values_leave_the_earlier_one():
    pairs = [
        ({"external_id": "u", "tags": {"add": ["a"]}, "plan": "free"}, 1),
        ({"external_id": "u", "tags": {"add": ["b"]}, "plan": "pro"}, 2),
    ]

    assert coalesced(pairs) == [
        {"external_id": "u", "tags": {"add": ["a"]}},
        {"external_id": "u", "tags": {"add": ["b"]}, "plan": "pro"},
    ]


def test_objects_that_only_create_a_profile_are_still_sent():
    pairs = [({"external_id": "u"}, 1), ({"external_id": "u"}, 2)]

    assert coalesced(pairs) == [{"external_id": "u"}]


def test_merging_into_a_value_that_is_not_an_object_is_a_conflict():
    # One by one, {"x": 5} replaces the stored x and {"x": {"q": 2}} then replaces 5; merged first,
    # {"x": {"q": 2}} would be merged into whatever the profile holds.
    pairs = [
        ({"external_id": "u", "car": {"x": 5}, "_merge_objects": True}, 1),
        ({"external_id": "u", "car": {"x": {"q": 2}}, "_merge_objects": True}, 2),
    ]

    assert len(coalesced(pairs)) == 2


def test_different_identifiers_or_update_only_flags_are_never_mixed():
    pairs = [
        ({"external_id": "u", "plan": "a"}, 1),
        ({"external_id": "u", "plan": "b", "_update_existing_only": True}, 2),
        ({"external_id": "u", "plan": "c"}, 3),
        ({"email": "u@example.com", "plan": "d"}, 4),
    ]

    output = coalesced(pairs)

    assert [obj.get("plan") for obj in output] == ["a", "b", "c", "d"]


def test_token_imports_are_sent_as_they_are():
    token_import = {"user_alias": ALIAS, "push_token_import": True, "push_tokens": [{"app_id": "a", "token": "t"}]}
    pairs = [({"user_alias": ALIAS, "plan": "a"}, 1), (token_import, 2), ({"user_alias": ALIAS, "plan": "b"}, 3)]

    output = coalesced(pairs)

    assert output[1] is token_import and len(output) == 3


# ---------------------------------------------------------------- delta sending, at the unit level


class MemoryStore:
    """The last-sent store in a dict, as DynamoAttributeStore keeps it in a table."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Written]] = {}
        self.reads = self.writes = 0

    def read(self, users):
        self.reads += 1
        return {user: dict(self.items[user]) for user in users if user in self.items}

    def write(self, user, attributes):
        self.writes += 1
        self.items.setdefault(user, {}).update(attributes)


def parcels_of(pairs: list[tuple[dict, int]], base_ms: int = 1_000_000) -> list[Parcel]:
    """Each object in its own queue message received at its time, as the sender opens them."""
    parcels = []
    for n, (obj, t) in enumerate(pairs):
        received_at = _iso(base_ms + t)
        envelope = queue.Envelope("track", f"env-{n}", "tests", received_at, None, (queue.Item("attributes", 0, obj),))
        message = Message(f"msg-{n}", "", envelope)
        parcel = Parcel("track", "attributes", obj, len(queue.encode_object(obj)), user_key(obj), message, 0, 0)
        message.parcels.append(parcel)
        parcels.append(parcel)
    return parcels


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return f"{queue.time.strftime('%Y-%m-%dT%H:%M:%S', queue.time.gmtime(seconds))}.{millis:03d}Z"


def send_batch(store: MemoryStore | None, pairs: list[tuple[dict, int]], base_ms: int = 1_000_000):
    """One sender batch through coalescing and delta sending, Braze accepting everything."""
    savings = DataPointSavings(store)
    parcels = parcels_of(pairs, base_ms)
    prepared = savings.prepare(parcels)
    for parcel in prepared:
        parcel.state = State.DELIVERED
    savings.settle(deadline=math.inf)
    assert all(p.state is State.DELIVERED for p in parcels)  # every member took its object's state
    return [p.object for p in prepared], savings


EXTERNAL_ID_USERS = [{"external_id": "u-1"}, {"external_id": "u-2"}, {"external_id": "u-3"}]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(pairs=stream(plain_only=True, users=EXTERNAL_ID_USERS), later_ms=st.sampled_from([0, 5_000]))
def test_resending_the_same_values_costs_no_data_point(pairs, later_ms):
    store = MemoryStore()
    first, _ = send_batch(store, pairs)

    second, savings = send_batch(store, pairs, base_ms=1_000_000 + later_ms)

    assert points(second) == 0
    assert savings.counts["DataPointsSent"] == 0
    assert apply_one_by_one(first + second) == apply_one_by_one(in_arrival_order(pairs) * 2)
    assert store.reads == (2 if pairs else 0) and store.writes <= len({repr(user_key(obj)) for obj, _ in pairs})


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(batches=st.lists(stream(users=EXTERNAL_ID_USERS), min_size=1, max_size=3))
def test_delta_sending_leaves_every_profile_as_sending_everything(batches):
    """Batches one after another (each received after the previous), with every operation."""
    store = MemoryStore()
    sent: list[dict] = []
    expected: list[dict] = []
    for n, pairs in enumerate(batches):
        output, savings = send_batch(store, pairs, base_ms=1_000_000 + 10_000 * n)
        sent += output
        expected += in_arrival_order(pairs)
        assert savings.counts["DataPointsSent"] == points(output)

    assert apply_one_by_one(sent) == apply_one_by_one(expected)
    assert points(sent) <= points(expected)


def test_an_older_value_arriving_after_a_newer_one_is_not_sent():
    store = MemoryStore()
    send_batch(store, [({"external_id": "u", "plan": "pro"}, 0)], base_ms=2_000_000)

    output, savings = send_batch(store, [({"external_id": "u", "plan": "free", "visits": {"inc": 1}}, 0)])

    assert output == [{"external_id": "u", "visits": {"inc": 1}}]
    assert savings.counts["StaleValuesDropped"] == 1


def test_operations_and_free_fields_always_go_through():
    store = MemoryStore()
    batch = [
        (
            {
                "external_id": "u",
                "visits": {"inc": 1},
                "tags": {"add": ["a"]},
                "email_subscribe": "opted_in",
                "subscription_groups": [{"subscription_group_id": GROUPS[0], "subscription_state": "subscribed"}],
                "plan": "pro",
            },
            0,
        )
    ]
    send_batch(store, batch)

    output, _ = send_batch(store, batch, base_ms=1_005_000)

    assert output == [{key: value for key, value in batch[0][0].items() if key != "plan"}]


def test_a_value_after_an_operation_is_sent_even_if_it_was_the_last_one_sent():
    store = MemoryStore()
    send_batch(store, [({"external_id": "u", "score": 5}, 0)])
    send_batch(store, [({"external_id": "u", "score": {"inc": 1}}, 0)], base_ms=1_001_000)

    output, _ = send_batch(store, [({"external_id": "u", "score": 5}, 0)], base_ms=1_002_000)

    assert output == [{"external_id": "u", "score": 5}]


def test_update_only_objects_are_never_taken_for_what_the_profile_holds():
    # Braze accepts an update-only object for an unknown user and writes nothing (BRAZE_API.md §2.3).
    store = MemoryStore()
    send_batch(store, [({"external_id": "u", "_update_existing_only": True, "plan": "pro"}, 0)])

    output, _ = send_batch(store, [({"external_id": "u", "plan": "pro"}, 0)], base_ms=1_001_000)

    assert output == [{"external_id": "u", "plan": "pro"}]


def test_only_external_id_objects_use_the_store():
    store = MemoryStore()
    batch = [({"user_alias": ALIAS, "plan": "pro"}, 0), ({"email": "e1@example.com", "plan": "pro"}, 0)]
    send_batch(store, batch)

    output, _ = send_batch(store, batch, base_ms=1_001_000)

    assert output == [obj for obj, _ in batch] and store.items == {}


def test_without_a_store_nothing_is_dropped_but_coalescing():
    output, savings = send_batch(None, [({"external_id": "u", "plan": "a"}, 0), ({"external_id": "u", "plan": "b"}, 1)])

    assert output == [{"external_id": "u", "plan": "b"}]
    assert savings.counts == {
        "DataPointsSent": 1,
        "DataPointsSavedCoalescing": 1,
        "DataPointsSavedDelta": 0,
        "StaleValuesDropped": 0,
    }


def test_an_older_value_is_not_sent_even_after_an_operation_in_the_same_batch():
    store = MemoryStore()
    send_batch(store, [({"external_id": "u", "score": 10}, 0)], base_ms=2_000_000)
    # Another _update_existing_only: not coalesced, so the increment stays in the earlier object.
    older = [
        ({"external_id": "u", "_update_existing_only": True, "score": {"inc": 1}}, 0),
        ({"external_id": "u", "score": 5, "tags": {"add": ["b"]}}, 1),
    ]

    output, savings = send_batch(store, older)

    assert output == [older[0][0], {"external_id": "u", "tags": {"add": ["b"]}}]
    assert savings.counts["StaleValuesDropped"] == 1


def test_a_fault_in_coalescing_sends_the_batch_as_received(monkeypatch):
    from braze_forwarder.delivery import savings as savings_module

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(savings_module, "coalesce", broken)
    pairs = [({"external_id": "u", "plan": "a"}, 0), ({"external_id": "u", "plan": "b"}, 1)]

    output, savings = send_batch(MemoryStore(), pairs)

    assert output == [obj for obj, _ in pairs]
    assert savings.counts["DataPointsSent"] == 2

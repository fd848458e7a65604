"""Data points per BRAZE_API.md §10, on its own examples, and in agreement with the Braze sandbox."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braze_forwarder.braze.datapoints import attribute_points, data_points, is_plain, operation
from local.braze_sandbox import _attribute_data_points as sandbox_points

USER = {"external_id": "u-1"}


DOG = {"id": 1, "type": "dog", "breed": "x", "name": "a"}
CAT = {"id": 2, "type": "cat", "breed": "y", "name": "b"}
GROUP = {"subscription_group_id": "8f4c2d3e-1a2b-4c5d-8e9f-0a1b2c3d4e5f", "subscription_state": "subscribed"}


def criterion(key: str, value: object) -> dict[str, object]:
    return {"$identifier_key": key, "$identifier_value": value}


@pytest.mark.parametrize(
    ("attributes", "points"),
    [
        # "example object with 7 keys = 7"
        ({"car": {"make": "x", "model": "y", "year": 2020, "color": "red", "doors": 4, "ev": True, "seats": 5}}, 7),
        # each key at every level: "owner" and its two keys
        ({"car": {"owner": {"name": "a", "since": 2020}}}, 3),
        # arrays of objects, create: "2 objects × 4 keys = 8" — set whole or with $add
        ({"pets": [DOG, CAT]}, 8),
        ({"pets": {"$add": [DOG, CAT]}}, 8),
        # $update: one per property updated; $remove: one per criterion
        (
            {
                "pets": {"$update": [{**criterion("id", 1), "$new_object": {"breed": "z", "age": 3}}]},
                "_merge_objects": True,
            },
            2,
        ),
        ({"pets": {"$remove": [criterion("id", 1), criterion("id", 2), criterion("type", "cat")]}}, 3),
        # arrays: the whole array at once = 1; add = 1 per value
        ({"tags": ["a", "b", "c", "d"]}, 1),
        ({"tags": {"add": ["a", "b", "c"]}}, 3),
        ({"tags": {"remove": ["a", "b"]}}, 2),
        # setting to null counts, nested object included
        ({"plan": None}, 1),
        ({"car": None}, 1),
        ({"visits": {"inc": 5}}, 1),
        # reserved profile fields are billable
        ({"first_name": "Jon", "email": "a@b.co", "country": "US", "language": "en", "dob": "1990-01-01"}, 5),
        # not billable: subscription state changes, push tokens; identifiers and flags are not written
        ({"email_subscribe": "opted_in", "push_subscribe": "unsubscribed"}, 0),
        ({"subscription_groups": [GROUP]}, 0),
        ({"push_tokens": [{"app_id": "app", "token": "t"}]}, 0),
        ({"_update_existing_only": True, "_merge_objects": True}, 0),
    ],
)
def test_attributes_objects_cost_what_section_10_says(attributes, points):
    assert data_points("attributes", {**USER, **attributes}) == points


def test_identifiers_are_free_but_an_email_or_phone_written_to_the_profile_is_not():
    alias = {"user_alias": {"alias_name": "a", "alias_label": "l"}}
    assert data_points("attributes", {**alias, "plan": "pro"}) == 1
    assert data_points("attributes", {"braze_id": "b", "plan": "pro"}) == 1
    # With no primary identifier, Braze looks the user up by email and writes it onto the profile.
    assert data_points("attributes", {"email": "a@b.co", "plan": "pro"}) == 2


def test_events_and_purchases_are_one_each_and_identify_objects_none():
    assert (
        data_points("events", {**USER, "name": "played", "time": "2026-01-01T00:00:00Z", "properties": {"a": 1}}) == 1
    )
    assert data_points("purchases", {**USER, "product_id": "p", "currency": "USD", "price": 1, "quantity": 3}) == 1
    assert data_points("aliases_to_identify", {**USER, "user_alias": {"alias_name": "a", "alias_label": "l"}}) == 0


@pytest.mark.parametrize(
    ("value", "kind", "plain", "plain_with_merge"),
    [
        ({"inc": 1}, "inc", False, False),
        ({"add": [1]}, "array", False, False),
        ({"remove": [1]}, "array", False, False),
        ({"$add": [{"a": 1}]}, "object_array", False, False),
        ({"$update": []}, "object_array", False, False),
        ({"a": 1}, None, True, False),  # a nested object replaces, or merges with _merge_objects
        ({"inc": 1, "a": 2}, None, True, False),  # not an operation (the ingest refuses it anyway)
        ({}, None, True, False),
        (["a"], None, True, True),
        (None, None, True, True),
        ("x", None, True, True),
    ],
)
def test_how_a_value_is_read(value, kind, plain, plain_with_merge):
    assert operation(value) == kind
    assert is_plain(value, merge_objects=False) is plain
    assert is_plain(value, merge_objects=True) is plain_with_merge


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text("ab", max_size=3))
nested = st.recursive(
    st.one_of(st.booleans(), st.integers(-5, 5), st.text("ab", max_size=3)),
    lambda children: st.dictionaries(st.sampled_from("abcd"), children, max_size=3) | st.lists(children, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(st.sampled_from("abcd"), nested, max_size=3)
values = st.one_of(
    scalars,
    st.lists(st.text("ab", max_size=3), max_size=4),
    st.lists(objects, min_size=1, max_size=3),
    st.builds(lambda n: {"inc": n}, st.integers(-3, 3)),
    st.builds(
        lambda op, items: {op: items}, st.sampled_from(["add", "remove"]), st.lists(st.integers(0, 5), max_size=4)
    ),
    st.builds(lambda items: {"$add": items}, st.lists(objects, max_size=3)),
    st.builds(
        lambda ids: {"$remove": [{"$identifier_key": "id", "$identifier_value": i} for i in ids]},
        st.lists(st.integers(0, 3), max_size=3),
    ),
    st.builds(
        lambda updates: {
            "$update": [{"$identifier_key": "id", "$identifier_value": i, "$new_object": o} for i, o in updates]
        },
        st.lists(st.tuples(st.integers(0, 3), objects), max_size=3),
    ),
    objects,
)


@settings(max_examples=500, deadline=None)
@given(name=st.sampled_from(["plan", "pets", "email_subscribe", "subscription_groups", "push_tokens"]), value=values)
def test_every_value_costs_what_the_sandbox_charges(name, value):
    """The sandbox is an independent model of Braze (local/braze_sandbox/): the two counts agree."""
    assert attribute_points(name, value) == sandbox_points(name, value)

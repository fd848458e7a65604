"""Packing objects into Braze calls: limits, completeness, per-user order, fullness."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from braze_forwarder.braze.packing import TRACK_ARRAYS, Call, Limits, pack, user_key


@dataclass(frozen=True)
class Obj:
    user: str
    array: str
    size: int
    seq: int

    @property
    def object(self) -> dict[str, Any]:
        return {"external_id": self.user, "seq": self.seq}


parcels_strategy = st.lists(
    st.tuples(st.integers(0, 30), st.sampled_from(TRACK_ARRAYS), st.integers(20, 3000)), max_size=400
).map(lambda rows: [Obj(f"u{user}", array, size, seq) for seq, (user, array, size) in enumerate(rows)])
limits_strategy = st.builds(
    Limits,
    objects=st.integers(1, 75),
    mode=st.sampled_from(["total", "per_array"]),
    max_bytes=st.integers(4000, 60_000),
)


def chain_of(call: Call[Obj]) -> list[Call[Obj]]:
    chain = [call]
    while chain[0].after is not None:
        chain.insert(0, chain[0].after)
    return chain


@settings(max_examples=300, deadline=None)
@given(parcels=parcels_strategy, limits=limits_strategy)
def test_no_call_exceeds_the_limits(parcels, limits):
    for call in pack(parcels, limits):
        assert call.parcels
        assert call.size <= limits.max_bytes
        if limits.mode == "total":
            assert len(call.parcels) <= limits.objects
        else:
            for array in TRACK_ARRAYS:
                assert sum(p.array == array for p in call.parcels) <= limits.objects


@settings(max_examples=300, deadline=None)
@given(parcels=parcels_strategy, limits=limits_strategy)
def test_every_object_travels_in_exactly_one_call(parcels, limits):
    packed = [p.seq for call in pack(parcels, limits) for p in call.parcels]

    assert sorted(packed) == [p.seq for p in parcels]


@settings(max_examples=300, deadline=None)
@given(parcels=parcels_strategy, limits=limits_strategy)
def test_each_users_objects_keep_their_arrival_order(parcels, limits):
    calls = pack(parcels, limits)
    call_of = {p.seq: call for call in calls for p in call.parcels}
    for user in {p.user for p in parcels}:
        arrived = [p.seq for p in parcels if p.user == user]
        # All of a user's objects sit in one call, or in one chain whose calls go out in order.
        last_call = call_of[arrived[-1]]
        chain = chain_of(last_call)
        assert {id(call_of[seq]) for seq in arrived} <= {id(call) for call in chain}
        sent_order = [p.seq for call in chain for p in call.parcels if p.user == user]
        assert sent_order == arrived


def test_a_user_with_more_objects_than_a_call_holds_becomes_a_chain():
    parcels = [Obj("big", "events", 100, seq) for seq in range(160)] + [Obj("small", "events", 100, 999)]

    calls = pack(parcels, Limits(objects=75))

    assert [len(c.parcels) for c in calls] == [75, 75, 11]
    assert calls[0].after is None and calls[1].after is calls[0] and calls[2].after is calls[1]
    assert calls[2].parcels[-1].user == "small"  # other users fill the chain's last call


def test_a_mixed_backlog_packs_full_calls():
    rng = random.Random(7)
    parcels, seq = [], 0
    while seq < 100_000:
        user = f"user-{rng.randrange(40_000)}"
        for _ in range(rng.choice([1, 1, 1, 2, 3, 5])):
            parcels.append(Obj(user, rng.choice(TRACK_ARRAYS), rng.randrange(80, 600), seq))
            seq += 1

    calls = pack(parcels, Limits(objects=75))

    efficiency = sum(len(c.parcels) for c in calls) / (len(calls) * 75)
    assert efficiency >= 0.98


def test_the_request_body_keeps_packing_order_per_array():
    call: Call[Obj] = Call()
    call.add([Obj("a", "events", 10, 0), Obj("a", "attributes", 10, 1), Obj("b", "events", 10, 2)])

    assert call.body() == {
        "attributes": [{"external_id": "a", "seq": 1}],
        "events": [{"external_id": "a", "seq": 0}, {"external_id": "b", "seq": 2}],
    }


def test_user_key_follows_brazes_identifier_precedence():
    alias = {"alias_name": "n", "alias_label": "l"}
    assert user_key({"external_id": "e", "email": "x@y.z"}) == ("external_id", "e")
    assert user_key({"user_alias": alias}) == ("user_alias", "n", "l")
    assert user_key({"braze_id": "b"}) == ("braze_id", "b")
    assert user_key({"email": "x@y.z", "phone": "+1"}) == ("email", "x@y.z")
    assert user_key({"phone": "+1"}) == ("phone", "+1")

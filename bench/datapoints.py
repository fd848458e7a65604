"""Data points sent for a stream of attribute updates in which most values repeat: without savings,
with coalescing, and with coalescing plus delta sending (an in-memory last-sent store, so that what
is measured is the sender's own logic, not DynamoDB)."""

from __future__ import annotations

import random
import time
from collections.abc import Collection, Mapping
from typing import Any

from bench.common import print_table

UPDATES = 100_000
USERS = 10_000
BATCH = 100  # SenderBatchSize's default: 100 queue messages, here one object each
_START_MS = 1_795_000_000_000


class MemoryStore:
    """DynamoAttributeStore's contract in a dict; counts the keys read and the items written."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.keys_read = 0
        self.writes = 0

    def read(self, users: Collection[str]) -> dict[str, dict[str, Any]]:
        self.keys_read += len(users)
        return {user: dict(self.items[user]) for user in users if user in self.items}

    def write(self, user: str, attributes: Mapping[str, Any]) -> None:
        self.writes += 1
        self.items.setdefault(user, {}).update(attributes)


def _stream(rng: random.Random) -> list[dict[str, Any]]:
    """Every update re-sends all of a user's traits (what identify calls do), each trait changing
    rarely, plus a session counter. A user's 10 updates come in 1-4 bursts of activity; bursts of
    different users interleave."""
    genres = ["rock", "jazz", "pop", "folk", "metal"]
    bursts: list[list[dict[str, Any]]] = []
    for n in range(USERS):
        traits: dict[str, Any] = {
            "plan": rng.choice(["free", "pro"]),
            "country": rng.choice(["US", "DE", "FR", "BR", "JP"]),
            "language": rng.choice(["en", "de", "fr", "pt", "ja"]),
            "level": rng.randrange(1, 50),
            "favorite_genre": rng.choice(genres),
            "app_version": "5.2.0",
            "devices": {"phone": "ios", "watch": False},  # a nested object: 2 data points
            "email_subscribe": "subscribed",  # free: always sent
        }
        updates = []
        for _ in range(UPDATES // USERS):
            if rng.random() < 0.2:
                traits["level"] += 1
            if rng.random() < 0.05:
                traits["app_version"] = rng.choice(["5.2.1", "5.3.0"])
            if rng.random() < 0.02:
                traits["plan"] = "pro" if traits["plan"] == "free" else "free"
            if rng.random() < 0.02:
                traits["favorite_genre"] = rng.choice(genres)
            updates.append({"external_id": f"user-{n}", **traits, "sessions": {"inc": 1}})
        cuts = sorted(rng.sample(range(1, len(updates)), rng.randrange(0, 4)))
        bursts.extend(updates[a:b] for a, b in zip([0, *cuts], [*cuts, len(updates)], strict=True))
    rng.shuffle(bursts)
    # Interleave neighbouring bursts a little: a burst spreads over about one batch.
    stream: list[tuple[float, dict[str, Any]]] = []
    position = 0.0
    for burst in bursts:
        for k, update in enumerate(burst):
            stream.append((position + k * rng.uniform(5, 30), update))
        position += len(burst)
    stream.sort(key=lambda pair: pair[0])
    return [update for _, update in stream]


def _batches(updates: list[dict[str, Any]]):
    from braze_forwarder import queue
    from braze_forwarder.braze.packing import user_key
    from braze_forwarder.delivery_model import Message, Parcel

    for start in range(0, len(updates), BATCH):
        parcels = []
        for n, obj in enumerate(updates[start : start + BATCH], start):
            ms = _START_MS + n * 10  # the API received the stream's updates 10 ms apart
            received_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
            item = queue.Item("attributes", 0, obj)
            message = Message(f"m{n}", "", queue.Envelope("track", f"e{n}", "bench", received_at, None, (item,)))
            size = len(queue.encode_object(obj))
            parcel = Parcel("track", "attributes", obj, size, user_key(obj), message, 0, 0)
            message.parcels.append(parcel)
            parcels.append(parcel)
        yield parcels


def _run(updates: list[dict[str, Any]], store: MemoryStore | None) -> tuple[int, int, float]:
    """Data points sent, objects sent, and seconds spent in the sender's savings logic."""
    from braze_forwarder.braze.datapoints import data_points
    from braze_forwarder.delivery.savings import DataPointSavings
    from braze_forwarder.delivery_model import State

    points = objects = 0
    elapsed = 0.0
    for parcels in _batches(updates):
        start = time.perf_counter()
        savings = DataPointSavings(store)
        prepared = savings.prepare(parcels)
        for parcel in prepared:
            parcel.state = State.DELIVERED  # Braze accepts everything
        savings.settle(deadline=float("inf"))
        elapsed += time.perf_counter() - start
        points += sum(data_points(p.array, p.object) for p in prepared)
        objects += len(prepared)
    return points, objects, elapsed


def rows() -> list[list[str]]:
    from braze_forwarder.braze.datapoints import data_points

    updates = _stream(random.Random(7))
    baseline = sum(data_points("attributes", obj) for obj in updates)
    coalesced, coalesced_objects, coalesce_seconds = _run(updates, None)
    store = MemoryStore()
    delta, delta_objects, delta_seconds = _run(updates, store)
    batches = -(-len(updates) // BATCH)
    return [
        ["neither", f"{len(updates):,}", f"{baseline:,}", "1.00", "–", "–", "–"],
        [
            "coalescing",
            f"{coalesced_objects:,}",
            f"{coalesced:,}",
            f"{coalesced / baseline:.2f}",
            "–",
            "–",
            f"{coalesce_seconds / len(updates) * 1e6:.1f}",
        ],
        [
            "coalescing + delta",
            f"{delta_objects:,}",
            f"{delta:,}",
            f"{delta / baseline:.2f}",
            f"{store.keys_read:,} in {batches:,}",
            f"{store.writes:,}",
            f"{delta_seconds / len(updates) * 1e6:.1f}",
        ],
    ]


def main() -> None:
    print_table(
        f"Data points, {UPDATES:,} attribute updates over {USERS:,} users, most values repeating",
        ["sending", "objects sent", "data points", "ratio", "store keys read", "store writes", "µs/update"],
        rows(),
        "each update re-sends all of a user's 7 traits (8 data points, rarely changed) plus sessions {inc: 1} and "
        "email_subscribe; 10 updates per user in 1-4 bursts; batches of 100; Braze accepts everything; "
        "in-memory last-sent store (one BatchGetItem key per user per batch, one UpdateItem per user per batch)",
    )


if __name__ == "__main__":
    main()

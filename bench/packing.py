"""Packing efficiency on a mixed backlog, and sender throughput against a Braze answering in 50 ms."""

from __future__ import annotations

import contextlib
import io
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

from bench.common import print_table
from braze_forwarder.user_order import OrderRecord, OrderStore


class _NoOrderRecords(OrderStore):
    """A UserOrderTable with no delete, alias or merge: packing is measured, not the order store."""

    def _query(self, since: str) -> Iterator[OrderRecord]:
        return iter(())


OBJECTS = 100_000
LATENCY_SECONDS = 0.05


@dataclass(frozen=True)
class _Parcel:
    user: str
    array: str
    size: int
    object: Any = None


def _backlog(rng: random.Random) -> list[_Parcel]:
    """Mostly one object per user, some users with a few, a few with hundreds (a backfill)."""
    parcels: list[_Parcel] = []
    while len(parcels) < OBJECTS:
        user = f"user-{rng.randrange(60_000)}"
        burst = rng.choices([1, 2, 3, 5, 40, 300], weights=[60, 15, 10, 10, 4, 1])[0]
        parcels.extend(
            _Parcel(user, rng.choice(("attributes", "events", "purchases")), rng.randrange(80, 900))
            for _ in range(burst)
        )
    return parcels[:OBJECTS]


def packing_rows() -> list[list[str]]:
    from braze_forwarder.braze.packing import Limits, pack
    from braze_forwarder.delivery.sender import packing_efficiency

    parcels = _backlog(random.Random(42))
    rows = []
    for limits in (Limits(75, "total"), Limits(50, "total"), Limits(75, "per_array")):
        start = time.perf_counter()
        calls = pack(parcels, limits)
        elapsed = time.perf_counter() - start
        rows.append(
            [
                f"{limits.mode} {limits.objects}",
                f"{len(parcels):,}",
                f"{len(calls):,}",
                f"{packing_efficiency(calls, limits):.4f}",
                f"{elapsed * 1000:,.0f}",
            ]
        )
    return rows


@contextlib.contextmanager
def _stand_in(latency_seconds: float) -> Iterator[str]:
    """A Braze stand-in in its own process, so its work does not share the sender's interpreter lock."""
    command = [sys.executable, "-m", "bench.standin", "--port", "0", "--latency", str(latency_seconds)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()  # "stand-in listening on http://127.0.0.1:PORT"
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def throughput_rows() -> list[list[str]]:
    """One sender invocation against a Braze stand-in answering every call after 50 ms."""
    from braze_forwarder import queue
    from braze_forwarder.braze.client import BrazeClient
    from braze_forwarder.config import SenderSettings
    from braze_forwarder.delivery import sender as sender_module

    rows = []
    with _stand_in(LATENCY_SECONDS) as url:
        for in_flight in (4, 8, 16):
            objects = int(in_flight * 75 / LATENCY_SECONDS * 2)  # about two seconds of ideal sending
            config = SenderSettings(
                braze_rest_endpoint=url,
                braze_api_key_secret_arn="bench",
                braze_max_in_flight=in_flight,
                ledger_table="bench",
                rejected_bucket="bench",
                user_order_table="bench",
                events_queue_url="bench",
            )
            records = []
            for n in range(0, objects, 250):
                items = [
                    (
                        "events",
                        i,
                        queue.encode_object(
                            {"external_id": f"user-{n + i}", "name": "played", "time": "2026-11-22T07:00:00Z"}
                        ),
                    )
                    for i in range(min(250, objects - n))
                ]
                [body] = queue.build_messages(
                    "track", items, source="bench", correlation_id=None, max_message_bytes=1024 * 1024
                )
                records.append((f"m{n}", body))
            client = BrazeClient(url, pool_size=in_flight, connect_timeout_seconds=2, read_timeout_seconds=10)
            api_key = mock.Mock(value=mock.Mock(return_value=("bench", 0)))
            # Nothing is partly delivered or rejected here: stores that hold nothing stand in for AWS.
            parts = sender_module.SenderParts(
                client,
                api_key,
                ledger=mock.Mock(entries=mock.Mock(return_value={})),
                rejects=mock.Mock(),
                order=_NoOrderRecords("bench"),
            )
            with contextlib.redirect_stdout(io.StringIO()):
                start = time.perf_counter()
                outcome = sender_module.Sender(config, parts).deliver(records, lambda: 600.0)
                elapsed = time.perf_counter() - start
            assert not outcome.failed_message_ids and outcome.delivered == objects, outcome
            rate = objects / elapsed
            ideal = in_flight * 75 / LATENCY_SECONDS
            rows.append(
                [
                    str(in_flight),
                    f"{objects:,}",
                    f"{outcome.calls:,}",
                    f"{elapsed:.2f}",
                    f"{rate:,.0f}",
                    f"{ideal:,.0f}",
                    f"{rate / ideal:.2f}",
                ]
            )
    return rows


def main() -> None:
    print_table(
        f"Packing efficiency, mixed backlog of {OBJECTS:,} objects",
        ["limit", "objects", "calls", "efficiency", "pack ms"],
        packing_rows(),
        "objects per call ÷ the limit (per_array: ÷ 3×75); users with 1–300 objects; target ≥ 0.98",
    )
    print_table(
        "Sender throughput, one invocation, Braze stand-in answering in 50 ms",
        ["in flight", "objects", "calls", "seconds", "objects/s", "limit/s", "ratio"],
        throughput_rows(),
        "limit = in_flight × 75 / 0.05 s; real HTTP on loopback to bench/standin.py in its own process; "
        "ledger stubbed; target ≥ 0.7",
    )


if __name__ == "__main__":
    main()

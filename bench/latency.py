"""End-to-end latency through the local stack: from the API's 202 to the Braze call carrying the object.

The whole pipeline runs as `make run` runs it (local HTTP API → ingest handler → SQS in moto → the
event source mapping with the template's batching window → sender → Braze sandbox). Clients post
one event per request at a steady rate; each event carries an id, and the sandbox records when the
call holding it arrived. The batching window is the dominant term at light load — it is a setting
(SenderBatchingWindowSeconds: longer fills Braze calls better) — so the figure is printed for the
shortest window and for the default.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import requests

from bench.common import print_table

REQUESTS_PER_RUN = 240
CLIENTS = 4
REQUESTS_PER_SECOND = 40.0
WINDOWS_SECONDS = ("1", "5")


def _post_events(api_url: str, key: str, answered: dict[str, float], count: int, interval: float) -> None:
    session = requests.Session()
    next_at = time.monotonic()
    for _ in range(count):
        event_id = uuid.uuid4().hex
        body = {
            "events": [
                {
                    "external_id": f"latency-{event_id[:8]}",
                    "name": "latency_probe",
                    "time": "2026-11-22T10:00:00Z",
                    "properties": {"probe_id": event_id},
                }
            ]
        }
        answer = session.post(f"{api_url}/users/track", json=body, headers={"Authorization": f"Bearer {key}"})
        if answer.status_code == 202:
            answered[event_id] = time.time()
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def _arrivals(recorded: list[Any]) -> dict[str, float]:
    """probe id → when the first Braze call carrying it arrived."""
    first: dict[str, float] = {}
    for request in recorded:
        if request.path != "/users/track" or not isinstance(request.json, dict):
            continue
        for event in request.json.get("events") or []:
            probe = (event.get("properties") or {}).get("probe_id")
            if probe is not None and probe not in first:
                first[probe] = request.time
    return first


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(window_seconds: str) -> dict[str, float]:
    from local.stack import Stack, StackOptions

    options = StackOptions(
        api_port=0,
        lambda_port=0,
        aws_port=0,
        sandbox_port=0,
        parameter_overrides={"SenderBatchingWindowSeconds": window_seconds},
    )
    answered: dict[str, float] = {}
    # The functions' log lines (every invocation's) would bury the table.
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), Stack(options) as stack:
        per_client = REQUESTS_PER_RUN // CLIENTS
        interval = CLIENTS / REQUESTS_PER_SECOND
        clients = [
            threading.Thread(
                target=_post_events, args=(stack.api.url, stack.options.ingest_key, answered, per_client, interval)
            )
            for _ in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        stack.wait_until_drained(timeout=120)
        arrivals = _arrivals(list(stack.sandbox.requests))
    latencies = [arrivals[probe] - at for probe, at in answered.items() if probe in arrivals]
    return {
        "answered": len(answered),
        "delivered": len(latencies),
        "p50": statistics.median(latencies),
        "p99": _percentile(latencies, 0.99),
        "max": max(latencies),
    }


def measure_in_own_process(window_seconds: str) -> dict[str, float]:
    """One stack per process: the functions' module-level caches (settings, clients, keys) would
    otherwise keep pointing at the previous stack's endpoints."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.latency", "--window", window_seconds],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])


def run() -> list[list[str]]:
    rows = []
    for window in WINDOWS_SECONDS:
        figures = measure_in_own_process(window)
        rows.append(
            [
                f"{window} s",
                f"{figures['delivered']}/{figures['answered']}",
                f"{figures['p50'] * 1000:,.0f}",
                f"{figures['p99'] * 1000:,.0f}",
                f"{figures['max'] * 1000:,.0f}",
            ]
        )
    return rows


def main() -> None:
    print_table(
        "End-to-end latency through the local stack (API 202 → Braze call)",
        ["batching window", "delivered", "p50 ms", "p99 ms", "max ms"],
        run(),
        f"{REQUESTS_PER_RUN} single-event requests from {CLIENTS} clients at {REQUESTS_PER_SECOND:g}/s; "
        "time from each 202 to the sandbox's receipt of the call carrying it; the window dominates",
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--window"]:
        print(json.dumps(measure(sys.argv[2])))
    else:
        main()

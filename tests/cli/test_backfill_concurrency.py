"""`backfill` sends up to 4 requests at once, and never one user's rows in two of them at once."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cli import backfill


def test_four_requests_in_flight_and_each_users_rows_in_one_of_them_in_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "events.ndjson"
    lines = [json.dumps({"external_id": f"user-{n % 37}", "name": "step", "seq": n}) for n in range(3_000)]
    data.write_text("\n".join(lines) + "\n")
    lock = threading.Lock()
    in_flight: dict[str, int] = {}  # user → requests carrying them right now
    most_at_once = 0
    now_sending = 0
    seen: dict[str, list[int]] = {}
    overlaps = 0

    def fake_sender(target: Any, args: Any) -> Any:
        def send(array: str, objects: list[dict[str, Any]], key: str) -> list[tuple[int, str, str]]:
            nonlocal most_at_once, now_sending, overlaps
            users = {obj["external_id"] for obj in objects}
            with lock:
                now_sending += 1
                most_at_once = max(most_at_once, now_sending)
                overlaps += sum(1 for user in users if in_flight.get(user))
                for user in users:
                    in_flight[user] = in_flight.get(user, 0) + 1
            time.sleep(0.01)  # long enough for the others of the window to start
            with lock:
                for obj in objects:
                    seen.setdefault(obj["external_id"], []).append(obj["seq"])
                for user in users:
                    in_flight[user] -= 1
                now_sending -= 1
            return []

        return send

    monkeypatch.setattr(backfill, "_api_sender", fake_sender)
    args = argparse.Namespace(
        file=data, kind="events", format=None, map=[], via="api", state=tmp_path / "state.json", ingest_key="k"
    )
    assert backfill.backfill_command(None, args) == 0
    assert most_at_once == backfill.IN_FLIGHT
    assert overlaps == 0
    assert sum(len(values) for values in seen.values()) == 3_000
    assert all(values == sorted(values) for values in seen.values())  # file order per user

"""A backfill never re-creates a user deleted after it began: not in a later window, not on resume
(docs/ordering.md). Its rows count as accepted when the first run started."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from braze_forwarder import queue
from braze_forwarder.user_order import OrderRecord, OrderStore, user_digest
from cli import backfill
from cli.target import Target
from local.resources import LocalStack

pytestmark = pytest.mark.clock  # tombstones are filed by the day they were accepted


class Interrupted(Exception):
    pass


def test_a_resumed_backfill_skips_the_rows_of_users_deleted_after_it_began(
    aws_stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    order_table = aws_stack.refs["UserOrderTable"]
    target = Target(stack_name="t", api_url="", outputs={"UserOrderTableName": order_table}, region="us-east-1")
    # Deleted before the backfill began: the file may legitimately bring the user back.
    OrderStore(order_table).put([OrderRecord("delete", user_digest(("external_id", "came-back")), queue.utc_now_iso())])
    users = ["kept", "deleted-midway", "came-back"]
    data = tmp_path / "users.ndjson"
    data.write_text("".join(json.dumps({"external_id": users[n % 3], "seq": n}) + "\n" for n in range(600)))
    sent: list[dict[str, Any]] = []
    calls = {"n": 0}

    def sender(_target: Any, _args: Any) -> Any:
        def send(_array: str, objects: list[dict[str, Any]], _key: str) -> list[tuple[int, str, str]]:
            calls["n"] += 1
            if calls["n"] == 3:  # the first window (one request per user here) went through
                raise Interrupted
            sent.extend(objects)
            return []

        return send

    monkeypatch.setattr(backfill, "_api_sender", sender)
    args = argparse.Namespace(
        file=data, kind="users", format=None, map=[], via="api", state=tmp_path / "state.json", ingest_key="k"
    )
    with pytest.raises(Interrupted):
        backfill.backfill_command(target, args)
    first_run = {obj["seq"] for obj in sent}
    assert first_run and {obj["external_id"] for obj in sent} <= set(users)

    # The user is deleted through the API while the backfill is stopped; then it is resumed.
    OrderStore(order_table).put(
        [OrderRecord("delete", user_digest(("external_id", "deleted-midway")), queue.utc_now_iso())]
    )
    capsys.readouterr()
    assert backfill.backfill_command(target, args) == 0
    out = capsys.readouterr().out

    after = [obj for obj in sent if obj["seq"] not in first_run]
    assert not [obj for obj in after if obj["external_id"] == "deleted-midway"]
    assert {obj["external_id"] for obj in after} == {"kept", "came-back"}
    resent = {obj["seq"] for obj in after}
    skipped = 600 - len(first_run | resent)
    assert skipped == sum(1 for n in range(600) if users[n % 3] == "deleted-midway" and n not in first_run)
    assert f"{skipped} row(s) not sent: their user was deleted after the backfill began" in out

"""The `python -m cli` commands against the local stack, started in this process on free ports.

One stack for the module (starting one takes seconds); each test makes its own users, so the tests
do not see each other's objects except in the rejected store, which they filter by --source or time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from cli.__main__ import main
from local.stack import Stack, StackOptions

# Rejected objects are filed by the hour they were kept —
# make test runs these on other days (tests/clock.py).
pytestmark = [pytest.mark.local, pytest.mark.clock]

INGEST_KEY = "cli-test-ingest-key"
PERSONAL = "blocked.person@example.com"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    options = StackOptions(
        api_port=0,
        lambda_port=0,
        aws_port=0,
        sandbox_port=0,
        ingest_key=INGEST_KEY,
        parameter_overrides={"SenderBatchingWindowSeconds": "1"},
    )
    with Stack(options) as running:
        yield running


def cli(stack: Stack, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "--local", "--aws-endpoint-url", stack.aws_url, "--api-url", stack.api.url])
    out, err = capsys.readouterr()
    return code, out, err


def track(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        stack.api.url + "/users/track", json=body, headers={"Authorization": f"Bearer {INGEST_KEY}"}, timeout=10
    )
    assert response.status_code == 202, response.text
    return response.json()


def drained(stack: Stack) -> None:
    # The queues these commands work on. The import queues are left out: S3's test event for the
    # import bucket's notification, sent when the module's stack starts, is received by no poller
    # and held invisible when the tests run a month or more after the stack began (moto's SQS in
    # this process, under --clock=month-ends), so it would never count as drained.
    done, _ = stack.wait_until_drained(timeout=30, queues=("EventsQueue", "CopyTasksQueue"))
    assert done


def test_rejects_list_shows_reasons_without_personal_values_and_replay_delivers(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.sandbox is not None
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stack.sandbox.config.blocked_external_ids = {"cli-blocked-1", "cli-blocked-2"}
    track(
        stack,
        {
            "attributes": [
                {"external_id": "cli-blocked-1", "email": PERSONAL},
                {"external_id": "cli-fine-1", "first_name": "Fine"},
            ],
            "events": [{"external_id": "cli-blocked-2", "name": "cli_test_event", "time": "2026-01-01T00:00:00Z"}],
        },
    )
    drained(stack)
    assert stack.sandbox.profile("cli-fine-1") is not None
    assert stack.sandbox.profile("cli-blocked-1") is None

    code, out, _ = cli(stack, capsys, "rejects", "list", "--since", since, "--reason", "BLACKLISTED_EXTERNAL_USER_ID")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3, out
    assert "BLACKLISTED_EXTERNAL_USER_ID" in lines[0]
    assert any("track/attributes[0]" in line for line in lines)
    assert any("track/events[0]" in line for line in lines)
    assert PERSONAL not in out and "cli-blocked-1" not in out
    assert lines[-1].startswith("2 rejected record(s)")

    code, out, _ = cli(stack, capsys, "rejects", "list", "--since", since, "--show-objects")
    assert PERSONAL in out

    code, out, _ = cli(stack, capsys, "rejects", "list", "--since", since, "--source", "nobody")
    assert out.strip() == "0 rejected record(s)"

    # Still blocked: the replay is accepted by the API (it queues), and Braze refuses again.
    code, out, _ = cli(stack, capsys, "rejects", "replay", "--since", since, "--dry-run")
    assert code == 0 and "would send 2 object(s) to POST /users/track in 1 request(s)" in out

    stack.sandbox.config.blocked_external_ids = set()  # the fix
    code, out, err = cli(
        stack, capsys, "rejects", "replay", "--since", since, "--reason", "BLACKLISTED_EXTERNAL_USER_ID",
        "--ingest-key", INGEST_KEY,
    )  # fmt: skip
    assert code == 0, out + err
    assert "2 accepted, 0 still refused" in out
    drained(stack)
    profile = stack.sandbox.profile("cli-blocked-1")
    assert profile is not None and profile["attributes"]["email"] == PERSONAL
    assert stack.sandbox.profile("cli-blocked-2") is not None


def test_replay_without_a_valid_key_is_one_line_and_exit_2(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.sandbox is not None
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stack.sandbox.config.blocked_external_ids = {"cli-blocked-3"}
    track(stack, {"attributes": [{"external_id": "cli-blocked-3", "first_name": "Three"}]})
    drained(stack)
    code, _, err = cli(stack, capsys, "rejects", "replay", "--since", since)
    assert code == 2 and "--ingest-key" in err and "Traceback" not in err
    code, _, err = cli(stack, capsys, "rejects", "replay", "--since", since, "--ingest-key", "wrong")
    assert code == 2 and "refused the ingest key" in err
    stack.sandbox.config.blocked_external_ids = set()


def test_unreachable_aws_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["exports", "list", "--local", "--aws-endpoint-url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "unreachable" in err


def test_dlq_redrive_moves_messages_back_and_they_are_delivered(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    from braze_forwarder.queue import build_messages, encode_object

    assert stack.sandbox is not None and stack.resources is not None
    sqs = stack.client("sqs")
    dlq_url = stack.resources.refs["EventsDLQ"]
    users = [f"cli-dlq-{number}" for number in range(23)]
    for user in users:  # one envelope per message, as the sender's failures leave them
        (body,) = build_messages(
            "track",
            [("attributes", 0, encode_object({"external_id": user, "first_name": "Redriven"}))],
            source="cli-test",
            correlation_id=None,
            max_message_bytes=262_144,
        )
        sqs.send_message(QueueUrl=dlq_url, MessageBody=body)

    code, out, err = cli(stack, capsys, "dlq", "redrive", "--queue", "events", "--wait")
    assert code == 0, out + err
    assert "moved 23 message(s)" in out
    assert "moved 23 / 23" in err
    # moto 5.2.5 has no message move tasks: the command moves by hand, 10 at a time, and says so.
    assert "does not implement SQS message move tasks" in out
    assert "moved 10 / 23" in err and "moved 20 / 23" in err
    drained(stack)
    attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
    for user in users:
        profile = stack.sandbox.profile(user)
        assert profile is not None and profile["attributes"]["first_name"] == "Redriven"

    code, out, _ = cli(stack, capsys, "dlq", "redrive")
    assert code == 0 and "empty" in out


def test_exports_list_and_status_after_an_export(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.sandbox is not None and stack.resources is not None
    code, out, _ = cli(stack, capsys, "exports", "list")
    assert code == 0 and out.strip() == "no export jobs"

    (schedule,) = [s for s in stack.schedules if s.function.logical_id == "ExportStarterFunction"]
    invocation = schedule.function.invoke(schedule.event())
    assert invocation.error is None, invocation.error
    assert stack.sandbox.wait_for_exports(30)
    drained(stack)
    deadline = time.monotonic() + 20
    while True:
        code, out, _ = cli(stack, capsys, "exports", "list")
        if " complete " in out or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["JOB", "STATUS"]
    job_id, status, _, files, users = lines[1].split()
    assert status == "complete", out
    assert files == "1/1"

    code, out, _ = cli(stack, capsys, "exports", "status", job_id)
    assert code == 0
    assert f"job:          {job_id}" in out and "status:       complete" in out
    assert "file 0: copied" in out
    manifest = json.loads(out[out.index("{") :])
    assert manifest["job_id"] == job_id and manifest["status"] == "complete"
    assert manifest["users"] == int(users) and manifest["files_copied"] == 1

    code, _, err = cli(stack, capsys, "exports", "status", "no-such-job")
    assert code == 2 and "no export job no-such-job" in err


def test_no_such_stack_is_one_line_and_exit_2(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(["rejects", "list", "--stack", "no-such-stack", "--aws-endpoint-url", stack.aws_url])
    err = capsys.readouterr().err
    assert code == 2 and err == "braze-forwarder: error: no stack named no-such-stack in this account and region\n"


def test_no_target_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "redrive"]) == 2
    assert "--stack NAME" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [[], ["rejects"], ["rejects", "list"], ["rejects", "replay"], ["dlq", "redrive"], ["exports", "status"]]
)
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "usage: braze-forwarder" in capsys.readouterr().out


def test_python_dash_m_cli_runs_from_the_repo_root() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "cli", "--help"], cwd=root, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0 and "rejects" in done.stdout and "dlq" in done.stdout and "exports" in done.stdout


def _events_csv(path: Any, rows: int) -> tuple[set[str], set[int]]:
    """A CSV of `rows` events, one user each; every 500th has a bad time, row 777 an extra value."""
    good, bad = set(), set()
    lines = ["user,event,when,plan"]
    for row in range(1, rows + 1):
        user = f"cli-bf-{row}"
        if row == 777:
            lines.append(f"{user},cli_backfill,2026-01-01T00:00:00Z,gold,surplus")
            bad.add(row)
        elif row % 500 == 0:
            lines.append(f"{user},cli_backfill,not-a-time,gold")
            bad.add(row)
        else:
            lines.append(f"{user},cli_backfill,2026-01-01T00:00:00Z,gold")
            good.add(user)
    path.write_text("\n".join(lines) + "\n")
    return good, bad


def test_backfill_interrupted_and_resumed_delivers_every_good_row_once(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli import backfill

    assert stack.sandbox is not None
    data = tmp_path / "events.csv"
    state = tmp_path / "state.json"
    good, bad = _events_csv(data, 10_000)
    args = [
        "backfill", str(data), "--kind", "events", "--state", str(state), "--ingest-key", INGEST_KEY,
        "--map", "user=external_id", "--map", "event=name", "--map", "when=time", "--map", "plan=properties.plan",
    ]  # fmt: skip
    before = stack.sandbox.stats()["objects_per_call"].get("/users/track", {}).get("objects", 0)

    real_sender = backfill._api_sender
    calls = 0

    def interrupted_sender(target: Any, parsed: Any) -> Any:
        send = real_sender(target, parsed)

        def send_then_die(*arguments: Any) -> Any:
            nonlocal calls
            calls += 1
            answer = send(*arguments)
            if calls == 40:  # the API queued this chunk, the run dies before recording it
                raise KeyboardInterrupt
            return answer

        return send_then_die

    monkeypatch.setattr(backfill, "_api_sender", interrupted_sender)
    code, out, err = cli(stack, capsys, *args)
    assert code == 130, out + err
    saved = json.loads(state.read_text())
    assert 0 < saved["rows_done"] < 10_000 and not saved["finished"]
    monkeypatch.setattr(backfill, "_api_sender", real_sender)

    code, out, err = cli(stack, capsys, *args)
    assert f"resuming after row {saved['rows_done']} of 10000" in out
    assert code == 1, out + err  # finished, with rejected rows
    assert f"done: 10000 row(s), {len(good)} accepted, {len(bad)} rejected" in out
    assert "row 777: UNREADABLE_ROW: more values than the header has columns" in out
    assert "row 500: " in out
    assert "rows/s" in err and "ETA" in err
    assert json.loads(state.read_text())["finished"] is True

    drained(stack)
    after = stack.sandbox.stats()["objects_per_call"]["/users/track"]["objects"]
    assert after - before == len(good)  # the interrupted chunk was not queued twice
    for user in ("cli-bf-1", "cli-bf-2999", "cli-bf-10000" if "cli-bf-10000" in good else "cli-bf-9999"):
        profile = stack.sandbox.profile(user)
        assert profile is not None and profile["custom_events"]["cli_backfill"]["count"] == 1
    assert stack.sandbox.profile("cli-bf-500") is None

    code, out, _ = cli(stack, capsys, *args)  # a finished state: nothing is sent again
    assert "backfilled completely already" in out


def test_backfill_via_braze_sends_straight_to_braze(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stack.sandbox is not None
    data = tmp_path / "users.ndjson"
    lines = [json.dumps({"id": f"cli-direct-{n}", "first_name": "Direct"}) for n in range(120)]
    lines.insert(50, "{not json")
    data.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("BRAZE_API_KEY", stack.sandbox.config.api_key)
    capsys.readouterr()
    code = main(
        ["backfill", str(data), "--kind", "users", "--via", "braze", "--braze-endpoint", stack.braze_url,
         "--map", "id=external_id"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1, out
    assert "done: 121 row(s), 120 accepted, 1 rejected" in out and "row 51: UNREADABLE_ROW" in out
    assert (data.parent / "users.ndjson.backfill.json").exists()  # the default state file
    profile = stack.sandbox.profile("cli-direct-119")
    assert profile is not None and profile["attributes"]["first_name"] == "Direct"

    monkeypatch.delenv("BRAZE_API_KEY")
    data.with_name("users.ndjson.backfill.json").unlink()
    code = main(["backfill", str(data), "--kind", "users", "--via", "braze", "--braze-endpoint", stack.braze_url])
    assert code == 2 and "BRAZE_API_KEY" in capsys.readouterr().err

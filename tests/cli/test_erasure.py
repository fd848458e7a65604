"""Erasure of the forwarder's own copies: `users erase`, `rejects replay` and `rejects erase` against
tombstones, and `deletions list` (docs/personal-data.md), on the template's resources in moto."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from braze_forwarder import rejects
from braze_forwarder.delivery.attribute_state import DynamoAttributeStore, Written
from braze_forwarder.user_order import OrderRecord, OrderStore, user_digest
from cli.__main__ import parser
from cli.errors import CliError
from cli.target import Target
from local.resources import LocalStack

# Tombstones and rejected files are filed by day and hour: make test runs these on other days.
pytestmark = pytest.mark.clock

PERSONAL = "erased.person@example.com"
INGEST_KEY = "erasure-test-key"


@pytest.fixture
def target(aws_stack: LocalStack) -> Target:
    return Target(
        stack_name="erasure-test",
        api_url="",
        outputs={
            "RejectedObjectsBucketName": aws_stack.refs["RejectedObjectsBucket"],
            "UserOrderTableName": aws_stack.refs["UserOrderTable"],
            "AttributeStateTableName": aws_stack.refs["AttributeStateTable"],
        },
        region="us-east-1",
    )


def run(target: Target, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    args = parser().parse_args([*argv, "--stack", target.stack_name])
    code = args.handler(target, args)
    return code, capsys.readouterr().out


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ago(minutes: float) -> str:
    return iso(datetime.now(UTC) - timedelta(minutes=minutes))


def rejected(obj: dict[str, Any], accepted_at: str, array: str = "attributes") -> dict[str, Any]:
    """A line as the sender writes it (before envelopes carried accepted_at: received_at stands in)."""
    return {
        "rejected_at": ago(0),
        "reason": {"type": "BLACKLISTED_EXTERNAL_USER_ID", "message": "blocked"},
        "braze": {"status": 201, "message": "success", "error": None},
        "origin": {"source": "tests", "received_at": accepted_at, "kind": "track", "array": array, "index": 0},
        "object": obj,
    }


def lines_in(target: Target) -> dict[str, list[dict[str, Any]]]:
    s3, bucket = target.client("s3"), target.output("RejectedObjectsBucketName")
    found = {}
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        found[item["Key"]] = [json.loads(line) for line in body.splitlines()]
    return found


def versions_of(target: Target, key: str) -> int:
    listed = target.client("s3").list_object_versions(Bucket=target.output("RejectedObjectsBucketName"), Prefix=key)
    return len(listed.get("Versions", [])) + len(listed.get("DeleteMarkers", []))


def keep(target: Target, records: list[dict[str, Any]]) -> str:
    key = rejects.keep(target.output("RejectedObjectsBucketName"), "rejected/", records)
    assert key is not None
    return key


def tombstone(target: Target, external_id: str, accepted_at: str) -> OrderRecord:
    record = OrderRecord("delete", user_digest(("external_id", external_id)), accepted_at)
    OrderStore(target.output("UserOrderTableName")).put([record])
    return record


def test_users_erase_removes_the_users_state_and_lines_and_a_dry_run_removes_nothing(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    store = DynamoAttributeStore(target.output("AttributeStateTableName"), ttl_seconds=3600)
    gone, stays = user_digest(("external_id", "u-gone")), user_digest(("external_id", "u-stays"))
    for user in (gone, stays):
        store.write(user, {"plan": Written("d1", 1)})
    mixed = keep(
        target,
        [
            rejected({"external_id": "u-gone", "email": PERSONAL}, ago(5)),
            rejected({"external_id": "u-stays", "first_name": "Stays"}, ago(5)),
        ],
    )
    only_gone = keep(target, [rejected({"external_id": "u-gone", "name": "bought", "time": ago(6)}, ago(6), "events")])
    before = lines_in(target)

    code, out = run(target, capsys, "users", "erase", "--external-id", "u-gone", "--dry-run")
    assert code == 0
    assert "attribute state (AttributeStateTable): 1 item would be removed" in out
    assert "2 line(s) in 2 file(s) would be removed (1 file(s) rewritten, 1 deleted)" in out
    assert "Braze is not called" in out and "POST /users/delete" in out
    assert lines_in(target) == before and gone in store.read([gone])

    code, out = run(target, capsys, "users", "erase", "--external-id", "u-gone")
    assert code == 0
    assert "attribute state (AttributeStateTable): 1 item removed" in out
    assert "rejected objects (RejectedObjectsBucket): 2 line(s) in 2 file(s) removed" in out
    assert PERSONAL not in out  # nothing printed beyond the identifier typed
    assert set(store.read([gone, stays])) == {stays}
    after = lines_in(target)
    assert list(after) == [mixed]
    assert [line["object"]["external_id"] for line in after[mixed]] == ["u-stays"]
    # No previous version keeps the erased lines: the rewritten file has one version, the other none.
    assert versions_of(target, mixed) == 1 and versions_of(target, only_gone) == 0

    code, out = run(target, capsys, "users", "erase", "--external-id", "u-gone")
    assert "1 item" not in out and "0 line(s) in 0 file(s) removed" in out


def test_users_erase_by_email_finds_objects_that_carry_it_under_another_identifier(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    key = keep(
        target,
        [
            rejected({"external_id": "u-1", "email": PERSONAL}, ago(5)),
            rejected({"email": "someone.else@example.com", "first_name": "Else"}, ago(5)),
        ],
    )
    code, out = run(target, capsys, "users", "erase", "--email", PERSONAL)
    assert code == 0 and "1 line(s) in 1 file(s) removed (1 file(s) rewritten, 0 deleted)" in out
    assert [line["object"]["email"] for line in lines_in(target)[key]] == ["someone.else@example.com"]
    assert "deletes (UserOrderTable): none for this user" in out and "will be delivered" in out


def test_users_erase_takes_an_alias_as_name_and_label(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    alias = {"alias_name": "a:b@example.com", "alias_label": "email"}
    keep(target, [rejected({"user_alias": alias, "first_name": "Aliased"}, ago(5))])
    code, out = run(target, capsys, "users", "erase", "--user-alias", "a:b@example.com:email")
    assert code == 0 and "1 line(s) in 1 file(s) removed" in out
    assert lines_in(target) == {}
    with pytest.raises(CliError, match="NAME:LABEL"):
        run(target, capsys, "users", "erase", "--user-alias", "no-label")


class _RecordingApi(BaseHTTPRequestHandler):
    """The stack's ingest API as the replay sees it: it records each body and accepts every object."""

    bodies: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).bodies.append((self.path, json.loads(self.rfile.read(length))))
        answer = json.dumps({"message": "queued"}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api(target: Target) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    _RecordingApi.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    target.api_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield _RecordingApi.bodies
    finally:
        server.shutdown()
        server.server_close()


def test_replay_skips_objects_accepted_before_their_users_delete_and_sends_those_after(
    target: Target, api: list[tuple[str, dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    tombstone(target, "u-deleted", ago(30))
    keep(
        target,
        [
            rejected({"external_id": "u-deleted", "plan": "before"}, ago(60)),
            rejected({"external_id": "u-deleted", "plan": "after"}, ago(10)),  # the user came back
            rejected({"external_id": "u-other", "plan": "other"}, ago(60)),
        ],
    )
    code, out = run(target, capsys, "rejects", "replay", "--dry-run")
    assert code == 0 and "would send 2 object(s)" in out and "1 skipped: their user was deleted" in out
    assert api == []

    code, out = run(target, capsys, "rejects", "replay", "--ingest-key", INGEST_KEY)
    assert code == 0, out
    assert "not replayed (user deleted after it was accepted)" in out
    assert "replayed 2 object(s): 2 accepted" in out and "1 skipped" in out
    sent = [obj for path, body in api for obj in body.get("attributes", [])]
    assert [path for path, _ in api] == ["/users/track"]
    assert sorted(obj["plan"] for obj in sent) == ["after", "other"]


def test_rejects_erase_removes_only_what_was_accepted_before_a_delete(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    tombstone(target, "u-deleted", ago(30))
    key = keep(
        target,
        [
            rejected({"external_id": "u-deleted", "plan": "before"}, ago(60)),
            rejected({"external_id": "u-deleted", "plan": "after"}, ago(10)),
            rejected({"external_id": "u-other", "plan": "other"}, ago(60)),
        ],
    )
    code, out = run(target, capsys, "rejects", "erase", "--dry-run")
    assert code == 0 and "1 line(s) in 1 file(s) would be removed" in out
    assert len(lines_in(target)[key]) == 3

    code, out = run(target, capsys, "rejects", "erase")
    assert code == 0 and "1 deleted user(s); rejected objects: 1 line(s) in 1 file(s) removed" in out
    assert sorted(line["object"]["plan"] for line in lines_in(target)[key]) == ["after", "other"]


def test_rejects_erase_without_tombstones_changes_nothing(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    keep(target, [rejected({"external_id": "u-1", "plan": "x"}, ago(5))])
    before = lines_in(target)
    code, out = run(target, capsys, "rejects", "erase")
    assert code == 0 and "nothing to erase" in out and lines_in(target) == before


def test_deletions_list_shows_pending_and_delivered_tombstones(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    delivered = tombstone(target, "u-delivered", ago(90))
    pending = tombstone(target, "u-pending", ago(20))
    OrderStore(target.output("UserOrderTableName")).mark_delivered(delivered, ago(85))
    OrderStore(target.output("UserOrderTableName")).put(
        [OrderRecord("alias", user_digest(("external_id", "x")), ago(5))]
    )

    code, out = run(target, capsys, "deletions", "list")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3, out  # the alias is not a delete
    assert delivered.user in lines[0] and "delivered " in lines[0]
    assert pending.user in lines[1] and "pending" in lines[1]
    assert lines[2] == "2 tombstone(s): 1 delivered, 1 pending"
    assert "u-delivered" not in out and "u-pending" not in out  # digests only

    code, out = run(target, capsys, "deletions", "list", "--since", ago(40))
    assert out.splitlines()[-1] == "1 tombstone(s): 0 delivered, 1 pending"
    with pytest.raises(CliError, match="not an ISO-8601 time"):
        run(target, capsys, "deletions", "list", "--since", "yesterday")


@pytest.mark.parametrize("command", [["users", "erase"], ["deletions", "list"], ["rejects", "erase"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "usage: braze-forwarder" in out
    if command == ["users", "erase"]:
        assert "POST /users/delete" in out and "does NOT delete the user in Braze" in out


def test_a_stack_without_the_order_table_erases_and_replays_but_cannot_list_deletions(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    del target.outputs["UserOrderTableName"]  # deployed from a template before deletes existed
    keep(target, [rejected({"external_id": "u-old", "plan": "x"}, ago(5))])
    code, out = run(target, capsys, "users", "erase", "--external-id", "u-old")
    assert code == 0 and "1 line(s) in 1 file(s) removed" in out
    with pytest.raises(CliError, match="no output UserOrderTableName"):
        run(target, capsys, "deletions", "list")


# ---------------------------------------------------------------------- RejectsEraserFunction, daily


def erase_on_schedule(
    monkeypatch: pytest.MonkeyPatch, aws_stack: LocalStack, seconds_left: float = 900.0
) -> dict[str, Any]:
    from functions.rejects_eraser import app
    from tests.conftest import LambdaContextStub, load_event, use_function_environment

    use_function_environment(monkeypatch, aws_stack, "RejectsEraserFunction")
    context = LambdaContextStub()
    monkeypatch.setattr(context, "get_remaining_time_in_millis", lambda: int(seconds_left * 1000))
    return app.lambda_handler(load_event("rejects_eraser.json"), context)


def test_the_daily_function_erases_what_was_accepted_before_a_delete_and_no_old_version_remains(
    target: Target, aws_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    deleted_at = ago(30)
    tombstone(target, "u-deleted", deleted_at)
    mixed = keep(
        target,
        [
            rejected({"external_id": "u-deleted", "email": PERSONAL, "plan": "before"}, ago(60)),
            rejected({"external_id": "u-deleted", "plan": "after"}, ago(10)),
            rejected({"external_id": "u-other", "plan": "other"}, ago(60)),
        ],
    )
    only_deleted = keep(target, [rejected({"external_id": "u-deleted", "plan": "tie"}, deleted_at)])
    untouched = keep(target, [rejected({"external_id": "u-other", "plan": "kept"}, ago(60))])

    summary = erase_on_schedule(monkeypatch, aws_stack)

    assert summary == {"deleted_users": 1, "files_read": 3, "files_rewritten": 2, "lines_erased": 2, "files_left": 0}
    store = lines_in(target)
    assert sorted(line["object"]["plan"] for line in store[mixed]) == ["after", "other"]
    assert only_deleted not in store  # its one line was a tie with the delete: the file is gone
    assert [line["object"]["plan"] for line in store[untouched]] == ["kept"]
    assert versions_of(target, mixed) == 1 and versions_of(target, only_deleted) == 0  # no copy lingers
    assert PERSONAL not in caplog.text and "u-deleted" not in caplog.text

    again = erase_on_schedule(monkeypatch, aws_stack)  # the next day: nothing left to erase
    assert again["lines_erased"] == 0 and again["files_read"] == 2


def test_the_daily_function_reads_nothing_without_tombstones_and_counts_what_time_left_unread(
    target: Target, aws_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep(target, [rejected({"external_id": "u-1", "plan": "x"}, ago(60))])
    keep(target, [rejected({"external_id": "u-2", "plan": "y"}, ago(60))])
    assert erase_on_schedule(monkeypatch, aws_stack)["files_read"] == 0

    tombstone(target, "u-1", ago(30))
    short = erase_on_schedule(monkeypatch, aws_stack, seconds_left=10.0)  # below the 30 s reserve
    assert short["files_read"] == 0 and short["files_left"] == 2 and short["lines_erased"] == 0
    assert erase_on_schedule(monkeypatch, aws_stack)["lines_erased"] == 1

"""`braze-forwarder import start | status | cancel` against the local stack: the file in moto's S3,
the starter through the local Invoke API, the workers and the sender off moto's queues, and the
profiles in the Braze sandbox."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from cli.__main__ import main
from local.stack import Stack, StackOptions

pytestmark = [pytest.mark.local]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    options = StackOptions(
        api_port=0,
        lambda_port=0,
        aws_port=0,
        sandbox_port=0,
        parameter_overrides={"SenderBatchingWindowSeconds": "1"},
    )
    with Stack(options) as running:
        yield running


def cli(stack: Stack, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    assert stack.lambda_api is not None
    capsys.readouterr()
    code = main([*args, "--local", "--aws-endpoint-url", stack.aws_url, "--lambda-url", stack.lambda_api.url])
    out, err = capsys.readouterr()
    return code, out, err


def bucket(stack: Stack) -> str:
    assert stack.resources is not None
    return stack.resources.refs["ImportBucket"]


def test_import_start_status_and_the_profiles_in_braze(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.sandbox is not None
    rows = [json.dumps({"external_id": f"imp-cli-{n}", "plan": "pro", "seats": n}) for n in range(1, 301)]
    rows.insert(10, '{"external_id": ')  # malformed: kept with its line
    body = ("\n".join(rows) + "\n").encode()
    # Outside users/, events/ and purchases/: nothing starts until the command does.
    stack.client("s3").put_object(Bucket=bucket(stack), Key="manual/people.ndjson", Body=body)

    start = [
        "import",
        "start",
        f"s3://{bucket(stack)}/manual/people.ndjson",
        "--kind",
        "users",
        "--map",
        "seats=custom_seats",
    ]
    code, out, err = cli(stack, capsys, *start)
    assert code == 0, err
    # The functions run in this process and log to its stdout too: the command's own line is found.
    found = re.search(r"^import (imp-[0-9a-f]{24}) started: 1 range\(s\)$", out, re.MULTILINE)
    assert found, out
    import_id = found.group(1)

    code, out, _ = cli(stack, capsys, "import", "status", import_id, "--watch")
    assert code == 1, out  # finished, with a rejected row
    assert f"import {import_id}: finished" in out
    assert "301 read, 300 queued, 1 rejected" in out
    assert "rows/s" in out

    code, out, _ = cli(stack, capsys, *start)
    assert code == 0 and "exists already (finished)" in out

    done, _ = stack.wait_until_drained(timeout=60)
    assert done
    deadline = time.monotonic() + 30
    while stack.sandbox.profile("imp-cli-300") is None and time.monotonic() < deadline:
        time.sleep(0.2)
    profile = stack.sandbox.profile("imp-cli-300")
    assert profile is not None and profile["attributes"]["custom_seats"] == 300

    code, out, _ = cli(stack, capsys, "import", "status")
    assert code == 0 and import_id in out and "finished" in out


def test_a_file_dropped_under_users_imports_itself(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.sandbox is not None
    body = b"external_id,plan\nimp-drop-1,gold\nimp-drop-2,silver\n"
    stack.client("s3").put_object(Bucket=bucket(stack), Key="users/dropped.csv", Body=body)
    deadline = time.monotonic() + 60
    while stack.sandbox.profile("imp-drop-2") is None and time.monotonic() < deadline:
        time.sleep(0.3)
    profile = stack.sandbox.profile("imp-drop-2")
    assert profile is not None and profile["attributes"]["plan"] == "silver"


def test_bad_requests_are_one_line_and_exit_2(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(stack, capsys, "import", "start", f"s3://{bucket(stack)}/manual/none.csv", "--kind", "users")
    assert code == 2 and "does not exist or cannot be read" in err
    code, _, err = cli(stack, capsys, "import", "start", "not-a-url")
    assert code == 2 and "expected s3://BUCKET/KEY" in err
    code, _, err = cli(stack, capsys, "import", "cancel", "imp-000000000000000000000000")
    assert code == 2 and "no import" in err
    code, _, err = cli(stack, capsys, "import", "status", "imp-000000000000000000000000")
    assert code == 2 and "no import" in err

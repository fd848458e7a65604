"""`python -m local` end to end: the stack as a user starts it, on free ports, as a subprocess.

A subprocess, not an in-process object: the stack sets the functions' environment process-wide and
moto's state is process-global, so each run gets a process of its own, as `make run` does. Every
wait is bounded.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from local.braze_sandbox import BrazeSandbox, SandboxConfig
from tests.conftest import load_event
from tests.webhook_signing import sign

pytestmark = pytest.mark.local

REPO_ROOT = Path(__file__).resolve().parents[2]
INGEST_KEY = "demo-ingest-key-change-me"  # events/ingest_track.json's, the stack's default
GIVEN_STRIPE_SECRET = "whsec_givenOnTheCommandLine000000000000"
FREE_PORTS = ["--api-port", "0", "--lambda-port", "0", "--aws-port", "0", "--sandbox-port", "0"]
# One second instead of five: a valid value of the template's own parameter, to keep the tests short.
FAST_BATCHES = ["--parameter-overrides", "SenderBatchingWindowSeconds=1"]
START_TIMEOUT = 45.0
DELETION_FENCE_SECONDS = 60.0  # ORDER_FENCE_SECONDS' default, and the held events' return


class LocalRun:
    """`python -m local ...` in a subprocess; its console read line by line on a thread."""

    def __init__(
        self, args: list[str], tmp_path: Path, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()
    ) -> None:
        environment = {name: value for name, value in os.environ.items() if name not in unset}
        self.log_path = tmp_path / f"functions-{uuid.uuid4().hex[:8]}.log"
        self.lines: list[str] = []
        self._stopped: int | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local", *args, "--function-logs", str(self.log_path)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**environment, **(env or {})},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Read the console until a line matches; fail with everything printed so far."""
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        for line in self.lines:
            if found := compiled.search(line):
                return found
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"the stack exited ({self.process.wait()}) before {pattern!r}:\n" + self.output)
            self.lines.append(line)
            if found := compiled.search(line):
                return found
        pytest.fail(f"no {pattern!r} within {timeout} s:\n" + self.output)

    def url(self, label: str) -> str:
        return self.wait_for(rf"^\s+{label}\s+(http://127\.0\.0\.1:\d+)", 1).group(1)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        if self._stopped is not None:
            return self._stopped
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=5)
        while (line := self._drain_one()) is not None:
            self.lines.append(line)
        self._stopped = code
        return code

    def _drain_one(self) -> str | None:
        try:
            return self._queue.get(timeout=2)
        except queue.Empty:
            return None


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., LocalRun]]:
    runs: list[LocalRun] = []

    def run(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> LocalRun:
        local_run = LocalRun(list(args), tmp_path, env)
        runs.append(local_run)
        if ready:
            local_run.wait_for(r"^Serving; Ctrl-C stops\.", START_TIMEOUT)
        return local_run

    yield run
    for local_run in runs:
        local_run.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """One stack for the tests that only read or add their own users."""
    run = LocalRun(["--no-demo", *FREE_PORTS, *FAST_BATCHES], tmp_path_factory.mktemp("stack"))
    try:
        run.wait_for(r"^Serving; Ctrl-C stops\.", START_TIMEOUT)
        yield run
    finally:
        code = run.stop()
        assert code == 0, run.output
        assert "Stopped" in run.output


def track_body() -> str:
    return load_event("ingest_track.json")["body"]


def post_track(api: str, body: str, key: str = INGEST_KEY, **headers: str) -> requests.Response:
    return requests.post(
        f"{api}/users/track",
        data=body.encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
        timeout=30,
    )


def wait_for_profile(sandbox: str, external_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(f"{sandbox}/sandbox/users/{external_id}", timeout=5)
        if response.status_code == 200:
            return response.json()
        time.sleep(0.2)
    pytest.fail(f"{external_id} did not reach the sandbox within {timeout} s")


def aws_client(service: str, aws: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=aws,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )


# --------------------------------------------------------------------------------------------------
# The pipeline: API → queue → sender → sandbox
# --------------------------------------------------------------------------------------------------


def test_the_sample_track_request_ends_as_a_profile_in_the_sandbox(stack: LocalRun) -> None:
    api, sandbox = stack.url("API \\(HTTP API\\)"), stack.url("Braze sandbox")

    response = post_track(api, track_body(), **{"Idempotency-Key": f"test-{uuid.uuid4()}"})

    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["attributes_queued"], answer["events_queued"], answer["purchases_queued"]) == (2, 1, 1)
    # The invalid object (an event name starting with $) comes back to the client and is not queued.
    [error] = answer["errors"]
    assert (error["input_array"], error["index"]) == ("events", 1)
    assert response.headers["apigw-requestid"]

    profile = wait_for_profile(sandbox, "user-1001")
    assert profile["attributes"]["first_name"] == "Ada"
    assert profile["attributes"]["email"] == "ada@example.com"
    assert profile["attributes"]["visits"] == 1
    assert profile["custom_events"]["played_track"]["count"] == 1
    assert profile["purchases"]["premium_monthly"]["count"] == 1
    assert requests.get(f"{sandbox}/sandbox/users/user-1002", timeout=5).status_code == 404  # the $-event's user
    stats = requests.get(f"{sandbox}/sandbox/stats", timeout=5).json()
    assert stats["statuses"]["/users/track"] == {"201": stats["calls"]["/users/track"]}


def test_many_users_in_many_requests_all_arrive_in_full_batches(stack: LocalRun) -> None:
    api, sandbox = stack.url("API \\(HTTP API\\)"), stack.url("Braze sandbox")
    run_id = uuid.uuid4().hex[:8]
    users = [f"bulk-{run_id}-{n}" for n in range(120)]
    for start in range(0, len(users), 40):
        body = {
            "events": [
                {"external_id": u, "name": "opened_app", "time": "2026-11-22T07:00:00Z"}
                for u in users[start : start + 40]
            ]
        }
        assert post_track(api, json.dumps(body)).status_code == 202

    for user in users:
        assert wait_for_profile(sandbox, user)["custom_events"]["opened_app"]["count"] == 1


def test_a_wrong_ingest_key_is_refused_and_queues_nothing(stack: LocalRun) -> None:
    response = post_track(stack.url("API \\(HTTP API\\)"), track_body(), key="not-the-key")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_unknown_route_gets_api_gateways_own_404(stack: LocalRun) -> None:
    response = requests.post(stack.url("API \\(HTTP API\\)") + "/users/alias/update", data=b"{}", timeout=10)

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_a_body_over_the_http_apis_10_mb_limit_is_refused_before_the_function(stack: LocalRun) -> None:
    host, port = stack.url("API \\(HTTP API\\)").removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /users/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10485761\r\n\r\n"
        )
        status_line = connection.makefile("rb").readline()

    assert status_line.split()[1] == b"413"


# --------------------------------------------------------------------------------------------------
# The Lambda Invoke API
# --------------------------------------------------------------------------------------------------


def test_the_invoke_api_runs_a_function_by_its_logical_id(stack: LocalRun) -> None:
    client = aws_client("lambda", stack.url("Lambda Invoke API"))
    event = load_event("ingest_identify.json")
    event["headers"]["idempotency-key"] = f"invoke-{uuid.uuid4()}"

    answer = client.invoke(FunctionName="IngestApiFunction", Payload=json.dumps(event).encode())

    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    response = json.loads(answer["Payload"].read())
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["aliases_queued"] == 1


def test_the_invoke_api_reports_a_handler_error_as_lambda_does(stack: LocalRun) -> None:
    client = aws_client("lambda", stack.url("Lambda Invoke API"))

    answer = client.invoke(FunctionName="BrazeSenderFunction", Payload=b"{}")  # no Records

    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "KeyError"
    assert error["stackTrace"]


def test_the_invoke_api_does_not_know_other_functions(stack: LocalRun) -> None:
    client = aws_client("lambda", stack.url("Lambda Invoke API"))

    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")


# --------------------------------------------------------------------------------------------------
# Failures: retries, then the dead-letter queue
# --------------------------------------------------------------------------------------------------


def test_a_message_the_sender_cannot_deliver_is_retried_then_lands_in_the_dlq(start: Callable[..., LocalRun]) -> None:
    run = start("--no-demo", *FREE_PORTS, *FAST_BATCHES)
    api, aws, sandbox = run.url("API \\(HTTP API\\)"), run.url("local AWS \\(moto\\)"), run.url("Braze sandbox")
    sqs, secrets = aws_client("sqs", aws), aws_client("secretsmanager", aws)
    [queue_url] = sqs.list_queues(QueueNamePrefix="braze-forwarder-EventsQueue")["QueueUrls"]
    [dlq_url] = sqs.list_queues(QueueNamePrefix="braze-forwarder-EventsDLQ")["QueueUrls"]
    max_receive_count = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    )["maxReceiveCount"]
    # A key Braze refuses (401 even after the sender re-reads it), and a visibility timeout of one
    # second instead of twenty minutes, so the retries happen within the test.
    [key_secret] = [s["ARN"] for s in secrets.list_secrets()["SecretList"] if "BrazeApiKeySecret" in s["Name"]]
    secrets.put_secret_value(SecretId=key_secret, SecretString="a-key-braze-does-not-know")
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})
    # A receive already long-polling (up to 1 s) took the queue's visibility when it started.
    time.sleep(1.5)
    user = f"dlq-{uuid.uuid4().hex[:8]}"

    body = {"events": [{"external_id": user, "name": "opened_app", "time": "2026-11-22T07:00:00Z"}]}
    assert post_track(api, json.dumps(body)).status_code == 202

    deadline = time.monotonic() + 60
    dead: list[dict[str, Any]] = []
    while not dead and time.monotonic() < deadline:
        dead = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
    assert dead, "the message did not reach the dead-letter queue within 60 s:\n" + run.output
    [message] = dead
    assert user in message["Body"]
    # Received maxReceiveCount times from the queue (+ this receive from the DLQ), then moved by the
    # queue's RedrivePolicy — moto's SQS applies it on receive, as SQS does.
    assert int(message["Attributes"]["ApproximateReceiveCount"]) == max_receive_count + 1
    depth = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert depth["ApproximateNumberOfMessages"] == depth["ApproximateNumberOfMessagesNotVisible"] == "0"
    stats = requests.get(f"{sandbox}/sandbox/stats", timeout=5).json()
    assert stats["statuses"]["/users/track"].get("401", 0) >= max_receive_count  # one call per attempt at least
    assert stats["profiles"] == 0


# --------------------------------------------------------------------------------------------------
# Another Braze
# --------------------------------------------------------------------------------------------------


def test_braze_endpoint_sends_to_that_braze_with_the_key_from_the_environment(
    start: Callable[..., LocalRun],
) -> None:
    with BrazeSandbox(SandboxConfig(api_key="key-of-the-other-braze")) as other:
        run = start("--no-demo", *FREE_PORTS, *FAST_BATCHES, "--braze-endpoint", other.url,
                    env={"BRAZE_API_KEY": "key-of-the-other-braze"})  # fmt: skip
        assert "Braze sandbox" not in run.output  # none of its own

        assert post_track(run.url("API \\(HTTP API\\)"), track_body()).status_code == 202

        deadline = time.monotonic() + 30
        while other.profile("user-1001") is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert other.profile("user-1001") is not None, run.output
        calls = [r for r in other.requests if r.path == "/users/track"]
        assert calls and all(r.headers["authorization"] == "Bearer key-of-the-other-braze" for r in calls)
        assert {r.status for r in calls} == {201}


def test_braze_endpoint_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    args = ["--no-demo", *FREE_PORTS, "--braze-endpoint", "https://rest.fra-01.braze.eu"]
    run = LocalRun(args, tmp_path, unset=("BRAZE_API_KEY",))
    code = run.process.wait(timeout=60)
    run.stop()

    assert code == 2
    assert "BRAZE_API_KEY" in run.output


def test_a_port_in_use_is_named_with_its_flag(start: Callable[..., LocalRun]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = start("--no-demo", *FREE_PORTS, "--api-port", str(port), ready=False)
        code = run.process.wait(timeout=60)
        run.stop()

    assert code == 2
    assert f"port {port}" in run.output and "--api-port" in run.output


# --------------------------------------------------------------------------------------------------
# The command line and the demo
# --------------------------------------------------------------------------------------------------


def test_help_lists_the_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0
    for flag in (
        "--api-port", "--lambda-port", "--aws-port", "--sandbox-port", "--braze-endpoint", "--ingest-key",
        "--no-demo", "--sandbox-error-rate", "--sandbox-rate-limited-rate", "--sandbox-latency",
        "--sandbox-drop-rate", "--sandbox-timeout-rate", "--webhook-secret",
    ):  # fmt: skip
        assert flag in result.stdout


def test_the_demo_replays_the_events_and_prints_its_report(start: Callable[..., LocalRun]) -> None:
    # A given secret, as `stripe listen` prints it, replaces the one the stack would make.
    run = start(*FREE_PORTS, *FAST_BATCHES, "--webhook-secret", f"stripe={GIVEN_STRIPE_SECRET}", ready=False)
    # The demo's deletion waits behind the ordering fence (ORDER_FENCE_SECONDS, 56 s by default).
    run.wait_for(r"^Serving; Ctrl-C stops\.", START_TIMEOUT + DELETION_FENCE_SECONDS)
    api = run.url("API \\(HTTP API\\)")
    output = run.output

    assert re.search(r"^Ready in \d+\.\d s", output, re.MULTILINE)
    assert re.search(r"Demo: replaying \d+ requests from events/", output)
    assert re.search(
        r"POST /users/track\s+ingest_track\.json\s+202\s+queued: 2 attributes, 1 events, 1 purchases", output
    )
    assert re.search(r"rejected events\[1\]: BAD_EVENT_NAME", output)
    assert re.search(r"POST /users/identify\s+ingest_identify\.json\s+202", output)
    # Pub/Sub's push: a token from the stack's Google stand-in, the purchase looked up in its Play API.
    assert re.search(
        r"POST /webhooks/google_play\s+google_play_subscription_purchased\.json\s+200\s+queued: 1 attributes, "
        r"1 events, 1 purchases",
        output,
    )
    assert re.search(r"drained in \d+\.\d s", output)
    assert re.search(r"^Braze \(sandbox\): \d+ calls?", output, re.MULTILINE)
    assert re.search(r"/users/track\s+\d+ call\(s\), \d+ object\(s\)", output)
    assert re.search(r"^Profiles in the sandbox: \d+", output, re.MULTILINE)
    assert re.search(r"played_track ×1", output)
    assert "0 failed" in output and "EventsDLQ: 0 message(s)" in output
    # A user deleted between queued events: none of the earlier ones reached Braze after the delete.
    assert re.search(
        r"→ order kept: 0 of the 3 pre-delete events arrived after the delete, 2 of 2 post-delete events did "
        r"\(sandbox since_deletion",
        output,
    ), output
    assert "note: ORDER_HOLD_DELAY_SECONDS=2" in output
    assert f"curl -s {api}/users/track -H 'Authorization: Bearer {INGEST_KEY}'" in output
    for line in output.splitlines():
        if line.startswith("  POST /webhooks/"):
            assert re.search(r"\s200\s", line), line  # signed again with this run's secret, accepted
    # The App Store sample, signed again by this run's test CA, which only the local stack trusts.
    assert re.search(r"POST /webhooks/app_store\s+app_store_did_renew\.json\s+200\s+queued", output), output
    body = (REPO_ROOT / "events" / "webhook_stripe_payment_intent_succeeded.json").read_text()
    sample = json.loads(body)["body"]
    answer = requests.post(
        f"{api}/webhooks/stripe",
        data=sample.encode(),
        headers={"Stripe-Signature": sign("stripe", sample, GIVEN_STRIPE_SECRET), "Content-Type": "application/json"},
        timeout=10,
    )
    assert (answer.status_code, answer.json()["message"]) in {(200, "queued"), (200, "duplicate")}
    assert run.stop() == 0
    assert "Stopped" in run.output

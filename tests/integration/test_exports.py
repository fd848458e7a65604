"""Global control group exports end to end in-process: the starter against the Braze sandbox over
real HTTP, Braze's callback through a loopback stand-in for API Gateway into the callback handler,
the copy tasks through moto's SQS into the copier, and the lake, the job table and the export
bucket in moto. Export files are built from BRAZE_API.md §7's per-user object."""

from __future__ import annotations

import copy
import gzip
import io
import json
import logging
import os
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braze_forwarder.config import GCG_EXPORT_FIELDS
from braze_forwarder.exports import jobs, lake
from local.braze_sandbox import DEFAULT_GCG_SEGMENT_ID, BrazeSandbox, SandboxConfig, ScriptedResponse
from tests.conftest import LambdaContextStub, load_event, metric_values, use_function_environment

BRAZE_KEY = "braze-rest-key-0123456789"
EXPORT_BUCKET = "braze-exports"
RUN = "2026-11-22T06:00:00Z"
JOB_ID = "gcg-20261122T060000Z"
DAY = "2026-11-22"  # the run's export date (the lake partition): the scheduled time's day, whatever today is
PREFIX = "d9696570-4a5b-4c1e-8f3d-2b9e1c0a7f11-1795327200"  # §7: <uuid>-<unix time>
# Export files live in date folders and jobs record when they were asked for: run again on other days.
pytestmark = pytest.mark.clock

NOT_FOUND = {"message": "Not Found", "type": "not_found", "reason": "no export job with this id and token"}


# ---------------------------------------------------------------------------- §7 export files


def braze_folder_day(days_after_today: int = 0) -> str:
    """The UTC day `days_after_today` from now, by the clock the code under test reads."""
    return (datetime.now(UTC).date() + timedelta(days=days_after_today)).isoformat()


def export_user(n: int) -> dict[str, Any]:
    """BRAZE_API.md §7's per-user object with every field, its documented quirks included."""
    return {
        "created_at": "2020-07-10 15:00:00.000 UTC",
        "external_id": f"user-{n}",
        "user_aliases": [{"alias_name": f"device-{n}", "alias_label": "device_id"}],
        "braze_id": f"5f0a1c2b3d4e{n:012d}",
        "random_bucket": n % 10_000,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"user{n}@example.com",
        "dob": "1980-12-21",
        "home_city": "Zürich",
        "country": "CH",
        "phone": "+41446681800",
        "language": "de",
        "time_zone": "Europe/Zurich",
        "last_coordinates": [41.84, -87.83],  # §7: specified [lon, lat], sampled as [lat, lon]
        "gender": "F",
        "total_revenue": 65.0,
        "attributed_campaign": "spring",
        "attributed_source": "search",
        "attributed_adgroup": "group-1",
        "attributed_ad": "ad-7",
        "custom_attributes": {"plan": "pro", "visits": n, "genres": ["jazz", "soul"]},
        "custom_events": [{"name": "played", "first": "2020-07-10", "last": "2020-08-01", "count": 3}],
        "purchases": [{"name": "premium", "first": "2020-07-11", "last": "2020-08-11", "count": 10}],
        "devices": [
            {
                "model": "Pixel 8",
                "os": "Android 14",
                "carrier": None,
                "idfv": None,
                "idfa": None,
                "device_id": f"dev-{n}",
                "google_ad_id": f"gaid-{n}",
                "roku_ad_id": None,
                "ad_tracking_enabled": True,
            }
        ],
        # §7: sessions is typed string in the spec and sampled as an integer; both appear.
        "apps": [
            {
                "name": "Player",
                "platform": "Android",
                "version": "3.29.0",
                "sessions": 1129 if n % 2 else "1129",
                "first_used": "2020-07-10",
                "last_used": "2020-08-01",
            }
        ],
    }


def ndjson(users: list[dict[str, Any]]) -> bytes:
    # As Braze (and the sandbox) write it: one object per line, UTF-8, not ASCII-escaped.
    return "".join(json.dumps(user, ensure_ascii=False) + "\n" for user in users).encode("utf-8")


def gzip_file(users: list[dict[str, Any]]) -> bytes:
    return gzip.compress(ndjson(users), mtime=0)


def zip_of(member: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, data)
    return buffer.getvalue()


def zip_file(users: list[dict[str, Any]], member: str = "users.json") -> bytes:
    return zip_of(member, ndjson(users))


def lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]


# ---------------------------------------------------------------------------- API Gateway stand-in


def callback_event(path_and_query: str, body: str | None) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event for POST <path>?<query>, shaped like events/export_callback.json."""
    parts = urlsplit(path_and_query)
    event = copy.deepcopy(load_event("export_callback.json"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = parts.path
    event["rawQueryString"] = parts.query
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if query:
        event["queryStringParameters"] = query
    else:
        event.pop("queryStringParameters", None)
    segments = parts.path.split("/")
    event["pathParameters"] = {"job_id": segments[2]} if len(segments) > 2 else {}
    event["body"] = body
    return event


@dataclass
class Reply:
    status: int
    body: dict[str, Any]


def invoke_callback(path_and_query: str, body: str | None = '{"success": true}') -> Reply:
    from functions.export_callback import app

    result = app.lambda_handler(callback_event(path_and_query, body), LambdaContextStub())
    return Reply(result["statusCode"], json.loads(result["body"]))


class _ApiGateway(BaseHTTPRequestHandler):
    """Turns Braze's callback POST into the event API Gateway would hand the function."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else None
        reply = invoke_callback(self.path, body)
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries the callback token: a secret, never printed


@pytest.fixture
def api_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiGateway)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------- the stack


@pytest.fixture
def braze() -> Iterator[BrazeSandbox]:
    config = SandboxConfig(api_key=BRAZE_KEY, seed=3, export_bucket=EXPORT_BUCKET, export_delay_seconds=0.0)
    with BrazeSandbox(config) as sandbox:
        yield sandbox


@dataclass
class Exports:
    stack: Any
    braze: BrazeSandbox
    monkeypatch: pytest.MonkeyPatch

    @property
    def table(self) -> str:
        return self.stack.refs["ExportJobsTable"]

    @property
    def lake(self) -> str:
        return self.stack.refs["LakeBucket"]

    @property
    def queue_url(self) -> str:
        return self.stack.refs["CopyTasksQueue"]

    def start(self, scheduled_time: str | None = RUN) -> dict[str, Any]:
        from functions.export_starter import app

        event = load_event("export_starter.json")
        if scheduled_time is None:
            event.pop("scheduled_time")
        else:
            event["scheduled_time"] = scheduled_time
        return app.lambda_handler(event, LambdaContextStub(remaining_millis=30_000))

    def job(self, job_id: str = JOB_ID) -> jobs.Job:
        found = jobs.get(self.table, job_id)
        assert found is not None
        return found

    def started_job(self, *, url: str | None = None, object_prefix: str = PREFIX, job_id: str = JOB_ID) -> str:
        """A job as the starter leaves it after Braze accepted; returns its callback token."""
        token, token_hash = jobs.new_token()
        assert jobs.create(
            self.table, job_id, token_hash, fields=("external_id",), output_format="gzip", export_date=DAY,
            ttl_seconds=3600,
        )  # fmt: skip
        assert jobs.mark_started(self.table, job_id, token_hash, object_prefix, url)
        return token

    def put_export_file(self, name: str, data: bytes, *, object_prefix: str, days_after_today: int = 0) -> str:
        """An export file where Braze writes it: under the date folder of the day Braze received the
        export's callback in its own clock (§7), here today by the clock the code reads, moved by
        `days_after_today`."""
        day = braze_folder_day(days_after_today)
        key = f"segment-export/{DEFAULT_GCG_SEGMENT_ID}/{day}/{object_prefix}/{name}"
        boto3.client("s3").put_object(Bucket=EXPORT_BUCKET, Key=key, Body=data)
        return key

    def callback(self, token: str | None, job_id: str = JOB_ID, body: str | None = '{"success": true}') -> Reply:
        query = "" if token is None else f"?token={token}"
        return invoke_callback(f"/exports/{job_id}/callback{query}", body)

    def queued(self) -> int:
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def run_copier(self, rounds: int = 10) -> list[str]:
        """Drain CopyTasksQueue as Lambda's event source would (batch size 1, failures come back);
        returns each invocation's outcome: "ok" or "failed"."""
        from functions.export_copier import app

        sqs = boto3.client("sqs")
        template = load_event("export_copier_sqs.json")["Records"][0]
        outcomes = []
        for _ in range(rounds):
            messages = sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                record = {**template, "messageId": message["MessageId"], "body": message["Body"],
                          "receiptHandle": message["ReceiptHandle"]}  # fmt: skip
                response = app.lambda_handler({"Records": [record]}, LambdaContextStub(remaining_millis=300_000))
                if response["batchItemFailures"]:
                    outcomes.append("failed")
                    sqs.change_message_visibility(
                        QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                else:
                    outcomes.append("ok")
                    sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return outcomes

    def dead_letters(self) -> list[str]:
        url = self.stack.refs["CopyTasksDLQ"]
        messages = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [m["Body"] for m in messages]

    def lake_keys(self) -> list[str]:
        listing = boto3.client("s3").list_objects_v2(Bucket=self.lake)
        return sorted(entry["Key"] for entry in listing.get("Contents", []))

    def lake_object(self, key: str) -> bytes:
        return boto3.client("s3").get_object(Bucket=self.lake, Key=key)["Body"].read()

    def manifest(self, job_id: str = JOB_ID, day: str = DAY) -> dict[str, Any]:
        return json.loads(self.lake_object(lake.manifest_key(day, job_id)))


@pytest.fixture
def exports(aws_stack, monkeypatch, braze, api_url) -> Iterator[Exports]:
    use_function_environment(
        monkeypatch,
        aws_stack,
        "ExportStarterFunction",
        BRAZE_REST_ENDPOINT=braze.url,
        EXPORT_CALLBACK_BASE_URL=api_url,
        BRAZE_CONNECT_TIMEOUT_SECONDS="0.5",
        BRAZE_READ_TIMEOUT_SECONDS="1",
        BRAZE_MAX_ATTEMPTS="3",
        TIME_RESERVE_SECONDS="0.5",
    )
    use_function_environment(monkeypatch, aws_stack, "ExportCallbackFunction", BRAZE_EXPORT_BUCKET=EXPORT_BUCKET)
    use_function_environment(monkeypatch, aws_stack, "ExportCopierFunction", BRAZE_EXPORT_BUCKET=EXPORT_BUCKET)
    boto3.client("s3").create_bucket(Bucket=EXPORT_BUCKET)
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws_stack.refs["BrazeApiKeySecret"], SecretString=BRAZE_KEY
    )
    yield Exports(aws_stack, braze, monkeypatch)
    braze.wait_for_exports(5)


def run_scheduled_export(exports: Exports) -> dict[str, Any]:
    answer = exports.start()
    assert answer["started"] is True, answer
    assert exports.braze.wait_for_exports(10)
    [callback] = exports.braze.callbacks
    assert callback.status == 200, callback
    return answer


def lake_parts(exports: Exports) -> list[str]:
    return [key for key in exports.lake_keys() if key.startswith(lake.TABLE_PREFIX) and key.endswith(".json.gz")]


def exported_lines(exports: Exports) -> dict[str, list[bytes]]:
    """Every user line Braze wrote, by export file name (the sandbox's files in the export bucket)."""
    s3 = boto3.client("s3")
    found: dict[str, list[bytes]] = {}
    for key in exports.braze.exports[0].files:
        data = s3.get_object(Bucket=EXPORT_BUCKET, Key=key)["Body"].read()
        if key.endswith(".gz"):
            found[key] = lines(gzip.decompress(data))
        else:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                found[key] = [line for name in archive.namelist() for line in lines(archive.read(name))]
    return found


# ---------------------------------------------------------------------------- the whole way


@pytest.mark.parametrize(
    ("output_format", "users_per_file"), [("gzip", 4), ("zip", 50)], ids=["gzip-many-files", "zip-one-file"]
)
def test_a_scheduled_export_lands_in_the_lake_line_by_line(exports, monkeypatch, output_format, users_per_file):
    # Given ten control-group users in Braze, and the deployment's format
    monkeypatch.setenv("EXPORT_OUTPUT_FORMAT", output_format)
    exports.braze.config.control_group_users = [export_user(n) for n in range(10)]
    exports.braze.config.export_users_per_file = users_per_file

    # When the schedule fires, Braze calls back, and the copier drains its queue
    answer = run_scheduled_export(exports)
    expected_files = -(-10 // users_per_file)
    assert exports.queued() == expected_files
    assert exports.run_copier() == ["ok"] * expected_files

    # Then Braze was asked for the configured export, with a callback to this job
    [request] = [r for r in exports.braze.requests if r.path == "/users/export/global_control_group"]
    assert request.json["fields_to_export"] == list(exports.job().fields)
    assert request.json["output_format"] == output_format
    callback = urlsplit(request.json["callback_endpoint"])
    assert callback.path == f"/exports/{JOB_ID}/callback" and callback.query.startswith("token=")
    # and each export file became one part, holding the same lines in the same order
    source = exported_lines(exports)
    parts = lake_parts(exports)
    folder = f"braze/global_control_group/export_date={DAY}/job_id={JOB_ID}/"
    assert parts == [f"{folder}part-{n:05d}.json.gz" for n in range(expected_files)]
    for part, key in zip(parts, sorted(source), strict=True):
        assert lines(gzip.decompress(exports.lake_object(part))) == source[key]
    every_line = [json.loads(line) for part in parts for line in lines(gzip.decompress(exports.lake_object(part)))]
    assert sorted(user["external_id"] for user in every_line) == sorted(f"user-{n}" for n in range(10))
    # the raw files are kept as Braze wrote them
    for key in source:
        name = key.rsplit("/", 1)[1]
        raw = exports.lake_object(f"raw/{folder}{name}")
        assert raw == boto3.client("s3").get_object(Bucket=EXPORT_BUCKET, Key=key)["Body"].read()
    # and the job and its manifest agree
    job = exports.job()
    assert (job.status, job.mode, job.files_total, job.files_copied, job.files_failed, job.users) == (
        jobs.COMPLETE, "bucket", expected_files, expected_files, 0, 10
    )  # fmt: skip
    assert job.object_prefix == answer["object_prefix"] == exports.braze.exports[0].object_prefix
    manifest = exports.manifest()
    assert manifest["status"] == "complete" and manifest["users"] == 10
    assert manifest["files_total"] == manifest["files_copied"] == expected_files
    assert manifest["bytes"] == sum(len(exports.lake_object(p)) for p in parts)
    assert [entry["part"] for entry in manifest["files"]] == parts
    assert sum(entry["users"] for entry in manifest["files"]) == 10
    assert manifest["completed_at"] == job.completed_at and manifest["requested_at"] == job.requested_at
    assert exports.lake_keys()[-1] == f"raw/{folder}{sorted(source)[-1].rsplit('/', 1)[1]}"


def test_an_empty_export_completes_with_a_manifest_and_no_parts(exports):
    exports.braze.config.control_group_users = []

    run_scheduled_export(exports)
    assert exports.run_copier() == ["ok"]  # the one finalize task

    job = exports.job()
    assert (job.status, job.files_total, job.users) == (jobs.COMPLETE, 0, 0)
    assert exports.lake_keys() == [lake.manifest_key(DAY, JOB_ID)]
    manifest = exports.manifest()
    assert (manifest["files_total"], manifest["users"], manifest["files"]) == (0, 0, [])


def test_a_job_requested_a_second_before_new_year_finds_the_files_braze_wrote_after_midnight(exports):
    # Given a job requested a second before a UTC midnight that ends a month and a year
    with time_machine.travel(datetime(2031, 12, 31, 23, 59, 59, tzinfo=UTC), tick=True):
        token = exports.started_job()
    prefix = exports.job().object_prefix
    # When Braze, its clock a little ahead or behind, writes the files under the new year's day,
    # the request's own day or the day before, and an older folder of the same prefix lingers
    with time_machine.travel(datetime(2032, 1, 1, 0, 0, 30, tzinfo=UTC), tick=True):
        for name, days in (("a.json.gz", 0), ("b.json.gz", -1), ("c.json.gz", -2), ("old.json.gz", -3)):
            exports.put_export_file(name, gzip_file([export_user(days)]), object_prefix=prefix, days_after_today=days)
        reply = exports.callback(token)

        # Then the three folders from the day before the request on are copied, the older one is not
        # (copied in the new year too: a queue's messages expire, whichever way the clock is moved)
        assert reply == Reply(200, {"message": "success", "job_id": JOB_ID, "files": 3})
        assert exports.run_copier() == ["ok"] * 3
    days = [entry["source"].split("/")[-3] for entry in exports.manifest()["files"]]
    assert days == ["2031-12-30", "2031-12-31", "2032-01-01"]


def test_the_export_bucket_is_listed_for_the_date_folder_and_keys_are_decoded_once(exports):
    # Given files under a date folder Braze chose (the day after the run) with keys that need
    # URL-encoding in a listing: spaces, "+", a literal "%2B", non-ASCII and a tab
    token = exports.started_job()
    prefix = exports.job().object_prefix
    first = exports.put_export_file("a file+name %2B ü\t.json.gz", gzip_file([export_user(1)]), object_prefix=prefix,
                                    days_after_today=1)  # fmt: skip
    second = exports.put_export_file("b.zip", zip_file([export_user(2), export_user(3)]), object_prefix=prefix,
                                     days_after_today=1)  # fmt: skip
    exports.put_export_file("other.json.gz", gzip_file([export_user(9)]), object_prefix="another-export-1795327000")
    # and a leftover of the same prefix three weeks old, which is not looked into
    exports.put_export_file("old.json.gz", gzip_file([export_user(8)]), object_prefix=prefix, days_after_today=-21)

    reply = exports.callback(token)
    assert reply == Reply(200, {"message": "success", "job_id": JOB_ID, "files": 2})
    assert exports.run_copier() == ["ok", "ok"]

    manifest = exports.manifest()
    assert [entry["source"] for entry in manifest["files"]] == [
        f"s3://{EXPORT_BUCKET}/{first}",
        f"s3://{EXPORT_BUCKET}/{second}",
    ]
    folder = lake.job_folder(DAY, JOB_ID)
    assert exports.lake_object(f"raw/{folder}a file+name %2B ü\t.json.gz") == gzip_file([export_user(1)])
    assert lines(gzip.decompress(exports.lake_object(lake.part_key(DAY, JOB_ID, 1)))) == lines(
        ndjson([export_user(2), export_user(3)])
    )
    assert exports.job().users == 3


# ---------------------------------------------------------------------------- callbacks


def test_a_repeated_callback_is_a_no_op_and_nothing_is_counted_twice(exports):
    exports.braze.config.control_group_users = [export_user(n) for n in range(6)]
    exports.braze.config.export_users_per_file = 2
    run_scheduled_export(exports)
    token = urlsplit(exports.braze.exports[0].callback_endpoint).query.removeprefix("token=")

    again = exports.callback(token)
    assert again == Reply(200, {"message": "already received", "job_id": JOB_ID, "status": jobs.COPYING})
    assert exports.queued() == 3  # no second set of tasks

    assert exports.run_copier() == ["ok"] * 3
    assert exports.callback(token).body["status"] == jobs.COMPLETE
    job = exports.job()
    assert (job.callbacks, job.files_copied, job.users) == (3, 3, 6)
    assert exports.manifest()["users"] == 6


def test_a_wrong_or_missing_token_gets_the_same_404_as_an_unknown_job(exports, logs):
    token = exports.started_job()
    wrong = [
        invoke_callback(f"/exports/{JOB_ID}/callback{query}")
        for query in ("?token=wrong-token", "", "?token=", "?other=1", f"?token={token[:-1]}")
    ]
    unknown = invoke_callback(f"/exports/gcg-20991231T000000Z/callback?token={token}")
    malformed = invoke_callback(f"/exports/..%2F..%2Fetc/callback?token={token}")
    no_route = invoke_callback("/exports/callback")

    assert [*wrong, unknown, malformed, no_route] == [Reply(404, NOT_FOUND)] * 8
    assert exports.job().status == jobs.STARTED and exports.job().callbacks == 0
    assert exports.queued() == 0
    assert metric_values(logs(), "ExportCallbacksRefused") == [1.0] * 7


def test_a_bad_body_is_a_400_but_only_after_the_token_is_checked(exports):
    token = exports.started_job()

    assert exports.callback("wrong", body="{not json").status == 404
    reply = exports.callback(token, body="{not json")
    assert reply.status == 400 and reply.body["type"] == "malformed_json"
    assert exports.callback(token, body="[1, 2]").body["type"] == "invalid_body"
    assert exports.callback(token, body='{"success": "yes"}').body["type"] == "invalid_body"
    assert exports.job().status == jobs.STARTED


def test_a_callback_reporting_failure_fails_the_job_visibly(exports, logs):
    token = exports.started_job()

    reply = exports.callback(token, body='{"success": false}')

    assert reply.status == 200 and reply.body["status"] == jobs.EXPORT_FAILED
    job = exports.job()
    assert job.status == jobs.EXPORT_FAILED and "success: false" in (job.error or "")
    assert metric_values(logs(), "ExportsFailed") == [1.0]
    assert exports.queued() == 0


def test_a_callback_before_the_start_was_recorded_is_a_409(exports):
    token, token_hash = jobs.new_token()
    jobs.create(exports.table, JOB_ID, token_hash, fields=("external_id",), output_format="gzip", export_date=DAY,
                ttl_seconds=3600)  # fmt: skip

    reply = exports.callback(token)

    assert reply.status == 409 and reply.body["type"] == "export_not_started"
    assert exports.job().status == jobs.REQUESTED


def test_a_callback_that_could_not_queue_its_tasks_is_a_503_and_the_next_one_finishes_the_job(exports, monkeypatch):
    from braze_forwarder import queue

    token = exports.started_job()
    exports.put_export_file("a.json.gz", gzip_file([export_user(0)]), object_prefix=PREFIX)
    exports.put_export_file("b.json.gz", gzip_file([export_user(1)]), object_prefix=PREFIX)
    real_send = queue.send_messages

    def sqs_down(queue_url: str, bodies: list[str]) -> None:
        raise queue.QueueUnavailable("SQS did not accept 2 of 2 messages", queued=0, total=2)

    monkeypatch.setattr(queue, "send_messages", sqs_down)
    assert exports.callback(token).status == 503  # Braze may call again; nothing is lost
    assert exports.job().status == jobs.ENQUEUING

    monkeypatch.setattr(queue, "send_messages", real_send)
    assert exports.callback(token) == Reply(200, {"message": "success", "job_id": JOB_ID, "files": 2})
    assert exports.run_copier() == ["ok", "ok"]
    assert (exports.job().status, exports.job().users) == (jobs.COMPLETE, 2)


def test_a_listed_file_that_disappears_is_recorded_as_failed_not_retried(exports):
    token = exports.started_job()
    key = exports.put_export_file("a.json.gz", gzip_file([export_user(0)]), object_prefix=PREFIX)
    assert exports.callback(token).status == 200
    boto3.client("s3").delete_object(Bucket=EXPORT_BUCKET, Key=key)

    assert exports.run_copier() == ["ok"]
    [entry] = exports.manifest()["files"]
    assert entry["status"] == "failed" and entry["reason"] == "the export file is no longer there"


# ---------------------------------------------------------------------------- download urls


REFUSED_URLS = {
    "other-host": "https://attacker.example.com/export.zip",
    "metadata-ip": "https://169.254.169.254/latest/meta-data/",
    "plain-http": "http://bucket.s3.amazonaws.com/export.zip",
    "credentials": "https://user:pass@bucket.s3.amazonaws.com/export.zip",
    "odd-port": "https://bucket.s3.amazonaws.com:8443/export.zip",
    "suffix-trick": "https://bucket.s3.amazonaws.com.attacker.example/export.zip",
    "two-labels-for-one-star": "https://a.b.s3.amazonaws.com/export.zip",
    "loopback-not-opted-in": "LOOPBACK",
}


def test_a_download_url_outside_the_allow_list_is_refused_and_never_fetched(exports, logs):
    # Given exports delivered as a url (no own bucket) pointing where they must not
    for n, (name, url) in enumerate(REFUSED_URLS.items()):
        url = exports.braze.url + "/sandbox/exports/x/x.zip" if url == "LOOPBACK" else url
        job_id = f"gcg-20261122T06000{n}Z"
        token = exports.started_job(job_id=job_id)

        reply = exports.callback(token, job_id=job_id, body=json.dumps({"success": True, "url": url}))

        assert reply.status == 400 and reply.body["type"] == "url_not_allowed", name
        assert "pass" not in reply.body["reason"] and "meta-data" not in reply.body["reason"], name
        job = exports.job(job_id)
        assert job.status == jobs.EXPORT_FAILED and "download url refused" in (job.error or ""), name
    assert exports.queued() == 0 and exports.lake_keys() == []
    assert not [r for r in exports.braze.requests if r.path.startswith("/sandbox")]
    assert metric_values(logs(), "ExportsFailed") == [1.0] * len(REFUSED_URLS)


def test_a_download_url_on_an_allowed_host_is_checked_again_by_the_copier(exports, monkeypatch):
    # The copier does not trust the callback's check: with a narrower list it refuses the url,
    # records the file as failed, and finishes the job without fetching anything.
    token = exports.started_job(url="https://bucket.s3.amazonaws.com/export.zip")
    assert exports.callback(token).status == 200
    monkeypatch.setenv("EXPORT_URL_ALLOWED_HOSTS", "exports.example.com")
    from braze_forwarder.config import settings

    settings.cache_clear()

    assert exports.run_copier() == ["ok"]
    job = exports.job()
    assert (job.status, job.files_failed) == (jobs.COMPLETE_WITH_FAILURES, 1)
    [entry] = exports.manifest()["files"]
    assert entry["status"] == "failed" and "not in the allow-list" in entry["reason"]
    assert entry["source"] == "url:bucket.s3.amazonaws.com"


def test_an_export_without_own_storage_is_downloaded_once_the_loopback_opt_in_is_set(exports, monkeypatch):
    # Given a Braze workspace without own storage (the sandbox then serves one zip at a url)
    exports.braze.config.export_bucket = None
    exports.braze.config.control_group_users = [export_user(n) for n in range(7)]
    exports.braze.config.export_users_per_file = 3  # three members in the one zip
    monkeypatch.setenv("EXPORT_URL_ALLOW_LOOPBACK", "true")

    run_scheduled_export(exports)
    assert exports.braze.callbacks[0].body["url"].startswith(exports.braze.url)
    assert exports.queued() == 1
    assert exports.run_copier() == ["ok"]

    job = exports.job()
    assert (job.status, job.mode, job.files_total, job.users) == (jobs.COMPLETE, "url", 1, 7)
    [part] = lake_parts(exports)
    users = [json.loads(line) for line in lines(gzip.decompress(exports.lake_object(part)))]
    assert sorted(u["external_id"] for u in users) == sorted(f"user-{n}" for n in range(7))
    [entry] = exports.manifest()["files"]
    assert entry["source"] == "url:127.0.0.1" and entry["raw"].endswith(".zip")
    assert "token" not in json.dumps(exports.manifest())


def test_a_download_over_the_size_cap_is_recorded_as_failed(exports, monkeypatch):
    exports.braze.config.export_bucket = None
    # about 2 MiB zipped (random hex does not compress below half), in a field exported by default
    noise = [{**export_user(n), "external_id": f"user-{n}-{os.urandom(700).hex()}"} for n in range(3000)]
    exports.braze.config.control_group_users = noise
    monkeypatch.setenv("EXPORT_URL_ALLOW_LOOPBACK", "true")
    monkeypatch.setenv("EXPORT_URL_MAX_BYTES", str(1024 * 1024))

    run_scheduled_export(exports)
    assert exports.run_copier() == ["ok"]

    job = exports.job()
    assert (job.status, job.files_failed) == (jobs.COMPLETE_WITH_FAILURES, 1)
    assert "over the cap of 1048576" in exports.manifest()["files"][0]["reason"]


# ---------------------------------------------------------------------------- damaged files, crashes


DAMAGED_FILES = {
    "bad.zip": (b"PK\x03\x04" + b"\x00" * 64, "the archive is damaged"),
    "truncated.json.gz": (gzip_file([export_user(1)])[:-12], "the archive is damaged"),
    "bad-line.json.gz": (
        gzip.compress(ndjson([export_user(2)]) + b"not json\n", mtime=0),
        "line 2 of the gzip stream is not JSON",
    ),
    "array-line.zip": (
        zip_of("users.json", b'{"external_id": "x"}\n[1, 2]\n'),
        "line 2 of zip member 'users.json' is not a JSON object",
    ),
    "random.bin": (bytes(range(256)) * 4, "neither zip nor gzip"),
}


def test_damaged_files_are_recorded_as_failed_with_their_reason_and_not_retried(exports, logs):
    # Given one export holding a good file, an empty one, and one damaged file of each kind
    token = exports.started_job()
    prefix = exports.job().object_prefix
    damaged = DAMAGED_FILES
    exports.put_export_file("0-good.json.gz", gzip_file([export_user(0)]), object_prefix=prefix)
    exports.put_export_file("1-empty.json", b"", object_prefix=prefix)  # empty is not damaged: zero users
    for name, (data, _) in damaged.items():
        exports.put_export_file(name, data, object_prefix=prefix)

    assert exports.callback(token).body["files"] == 2 + len(damaged)
    outcomes = exports.run_copier()

    assert outcomes == ["ok"] * (2 + len(damaged))  # no task comes back to the queue
    assert exports.dead_letters() == []
    job = exports.job()
    assert (job.status, job.files_copied, job.files_failed, job.users) == (
        jobs.COMPLETE_WITH_FAILURES, 2, len(damaged), 1
    )  # fmt: skip
    failed = {
        entry["source"].rsplit("/", 1)[1]: entry for entry in exports.manifest()["files"] if entry["status"] == "failed"
    }
    assert set(failed) == set(damaged)
    for name, (data, reason) in damaged.items():
        assert reason in failed[name]["reason"], name
        assert exports.lake_object(failed[name]["raw"]) == data  # kept as Braze wrote it
        assert lake.part_key(DAY, JOB_ID, failed[name]["index"]) not in exports.lake_keys()  # no part for it
    printed = logs()
    assert sum(metric_values(printed, "ExportFilesFailed")) == len(damaged)
    assert "export file cannot be copied" in printed


def test_a_copier_crash_after_writing_the_part_is_retried_without_counting_twice(exports, monkeypatch):
    exports.braze.config.control_group_users = [export_user(n) for n in range(9)]
    exports.braze.config.export_users_per_file = 3
    run_scheduled_export(exports)

    # Given the first attempt at each task dies after its part is in the lake, before it is recorded
    real_record = jobs.record_file
    crashed: list[int] = []

    def crash_once(table, job_id, record, expires_at):
        if record.index not in crashed:
            crashed.append(record.index)
            assert record.part_key in exports.lake_keys()  # the part is written...
            raise ConnectionError("the function died here")  # ...and the counter is not
        return real_record(table, job_id, record, expires_at)

    monkeypatch.setattr(jobs, "record_file", crash_once)

    # When the queue redelivers them
    outcomes = exports.run_copier()

    # Then every file was copied twice but counted once
    assert outcomes.count("failed") == 3 and outcomes.count("ok") == 3
    job = exports.job()
    assert (job.status, job.files_copied, job.users) == (jobs.COMPLETE, 3, 9)
    manifest = exports.manifest()
    assert manifest["users"] == 9 and len(manifest["files"]) == 3
    parts = lake_parts(exports)
    assert sum(len(lines(gzip.decompress(exports.lake_object(p)))) for p in parts) == 9


def test_a_task_that_runs_again_after_the_job_finished_changes_nothing(exports):
    exports.braze.config.control_group_users = [export_user(n) for n in range(4)]
    exports.braze.config.export_users_per_file = 2
    run_scheduled_export(exports)
    bodies = [m["Body"] for m in boto3.client("sqs").receive_message(
        QueueUrl=exports.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])]  # fmt: skip
    assert exports.run_copier() == ["ok", "ok"]
    manifest_before = exports.manifest()

    # a duplicate delivery of both tasks (SQS is at-least-once)
    for body in bodies:
        boto3.client("sqs").send_message(QueueUrl=exports.queue_url, MessageBody=body)
    assert exports.run_copier() == ["ok", "ok"]

    job = exports.job()
    assert (job.status, job.files_copied, job.users) == (jobs.COMPLETE, 2, 4)
    assert exports.manifest() == manifest_before


def test_a_transient_failure_goes_back_to_the_queue_and_to_the_dlq_after_five_tries(exports, monkeypatch):
    token = exports.started_job()
    exports.put_export_file("a.json.gz", gzip_file([export_user(0)]), object_prefix=exports.job().object_prefix)
    assert exports.callback(token).status == 200

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("S3 is unreachable")

    monkeypatch.setattr("braze_forwarder.exports.copier.S3ObjectReader", unavailable)

    outcomes = exports.run_copier(rounds=8)

    assert outcomes == ["failed"] * 5
    [dead] = exports.dead_letters()
    assert json.loads(dead)["kind"] == "file"
    assert exports.job().status == jobs.COPYING  # not finished, and not pretending to be


# ---------------------------------------------------------------------------- the starter


def test_the_same_scheduled_run_starts_one_export_however_often_it_arrives(exports):
    first = exports.start()
    second = exports.start()

    assert first["started"] is True and second == {"job_id": JOB_ID, "status": jobs.STARTED, "started": False}
    assert len([r for r in exports.braze.requests if r.path == "/users/export/global_control_group"]) == 1
    manual = exports.start(scheduled_time=None)
    assert manual["started"] is True and manual["job_id"].startswith("gcg-") and manual["job_id"] != JOB_ID


def test_braze_429_and_5xx_are_waited_out_as_the_sender_does(exports):
    exports.braze.script(
        ScriptedResponse(status=429, body={"message": "Rate limit exceeded"}, headers={"X-Ratelimit-Retry-After": "1"}),
        ScriptedResponse(status=503, body={"message": "busy"}),
    )

    answer = exports.start()

    assert answer["started"] is True
    calls = [r for r in exports.braze.requests if r.path == "/users/export/global_control_group"]
    assert [c.status for c in calls] == [429, 503, 201]
    assert calls[1].time - calls[0].time >= 0.9  # the wait Braze asked for
    assert exports.job().status == jobs.STARTED


def test_a_start_braze_keeps_refusing_is_recorded_raised_and_retried_by_the_next_delivery(exports, logs):
    from braze_forwarder.exports.start import ExportStartError

    exports.braze.script(*[ScriptedResponse(status=500, body={"message": "oops"}) for _ in range(3)])

    with pytest.raises(ExportStartError):
        exports.start()

    job = exports.job()
    assert job.status == jobs.START_FAILED and "oops" in (job.start_error or "")
    printed = logs()
    assert metric_values(printed, "ExportStartFailed") == [1.0]
    assert "could not be started" in printed
    # Lambda's asynchronous retry delivers the same run again: the job is re-armed, with a new token
    answer = exports.start()
    assert answer["started"] is True
    again = exports.job()
    assert (again.status, again.attempts) == (jobs.STARTED, 2) and again.token_hash != job.token_hash


def test_an_unexpected_error_while_starting_is_recorded_too(exports, monkeypatch, logs):
    from braze_forwarder.exports import start

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(start, "request_export", broken)
    with pytest.raises(KeyError):
        exports.start()

    job = exports.job()
    assert job.status == jobs.START_FAILED and job.start_error == "unexpected error: KeyError"
    assert metric_values(logs(), "ExportStartFailed") == [1.0]


def test_a_start_braze_refuses_for_good_is_recorded_and_not_raised(exports, logs):
    exports.braze.script(ScriptedResponse(status=403, body={"message": "Access Denied"}))

    answer = exports.start()

    assert answer["status"] == jobs.START_FAILED and "users.export.global_control_group" in answer["reason"]
    assert exports.job().status == jobs.START_FAILED
    assert metric_values(logs(), "ExportStartFailed") == [1.0]


def test_the_callback_token_is_stored_only_as_a_hash_and_never_logged(exports, logs, caplog):
    # moto's HTTP mock ("responses") logs every non-AWS request it lets through — here the sandbox's
    # own callback POST, i.e. Braze's side. It is test machinery, absent in Lambda; everything else
    # (the functions' Powertools logs, botocore, urllib3, the metrics) stays captured at DEBUG.
    caplog.set_level(logging.WARNING, logger="responses")
    exports.braze.config.control_group_users = [export_user(n) for n in range(3)]
    run_scheduled_export(exports)
    exports.run_copier()
    token = urlsplit(exports.braze.exports[0].callback_endpoint).query.removeprefix("token=")
    exports.callback(token)
    exports.callback(token + "x")

    assert len(token) >= 40
    item = boto3.client("dynamodb").get_item(
        TableName=exports.table, Key={"job_id": {"S": JOB_ID}, "item_id": {"S": "job"}}
    )["Item"]
    assert token not in json.dumps(item) and item["token_hash"]["S"] == jobs.hash_token(token)
    printed = logs()
    assert JOB_ID in printed  # the logs are there, and they are about this job
    assert token not in printed


# ---------------------------------------------------------------------------- the Glue table


def test_the_glue_table_reads_the_folders_the_copier_writes():
    from sam_template import load_template

    table = load_template()["Resources"]["GlobalControlGroupTable"]["Properties"]["TableInput"]
    parameters = table["Parameters"]
    template = parameters["storage.location.template"]["Fn::Sub"].replace("${LakeBucket}", "lake").replace("${!", "${")
    located = template.replace("${export_date}", DAY).replace("${job_id}", JOB_ID)
    assert located + "/" == "s3://lake/" + lake.job_folder(DAY, JOB_ID)
    location = table["StorageDescriptor"]["Location"]["Fn::Sub"].replace("${LakeBucket}", "lake")
    assert location == "s3://lake/" + lake.TABLE_PREFIX
    assert [key["Name"] for key in table["PartitionKeys"]] == ["export_date", "job_id"]
    assert parameters["projection.export_date.type"] == "date"
    assert parameters["projection.export_date.format"] == "yyyy-MM-dd"
    assert parameters["projection.job_id.type"] == "injected"
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert {column["Name"] for column in table["StorageDescriptor"]["Columns"]} == set(GCG_EXPORT_FIELDS)
    assert set(export_user(0)) == set(GCG_EXPORT_FIELDS) - {"uninstalled_at"}


def test_starter_copier_and_callback_settings_come_from_the_template(exports):
    # The events/ samples name this job; the functions' environments resolve from the template.
    assert load_event("export_callback.json")["pathParameters"]["job_id"] == JOB_ID
    from braze_forwarder.config import ExportCallbackSettings, ExportCopierSettings, ExportStarterSettings

    for cls in (ExportStarterSettings, ExportCallbackSettings, ExportCopierSettings):
        assert cls.from_environ() is not None
    env = exports.stack.function_environment("ExportStarterFunction")
    assert env["EXPORT_CALLBACK_BASE_URL"].endswith(".amazonaws.com")


_CALLBACK_BODIES = st.one_of(
    st.none(),
    st.binary(max_size=600).map(lambda data: data.decode("latin-1")),
    st.text(max_size=600),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=20,
    ).map(json.dumps),
    st.sampled_from(['{"success": true}', '{"success": false}', '{"success": "yes"}', "[", '{"a":1,"a":2}']),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    token=st.sampled_from(["valid", "wrong", "", None]),
    job_id=st.sampled_from([JOB_ID, "gcg-20991231T000000Z", "..", "%00", "x" * 300]),
    body=_CALLBACK_BODIES,
)
def test_callback_fuzz_never_answers_5xx_and_a_refused_callback_queues_nothing(exports, token, job_id, body):
    if not hasattr(exports, "fuzz_token"):
        exports.fuzz_token = exports.started_job()  # one started job for every example
    before = exports.queued()
    reply = exports.callback(exports.fuzz_token if token == "valid" else token, job_id=job_id, body=body)
    assert reply.status < 500, reply
    if reply.status >= 400:
        assert reply.body.get("type") and reply.body.get("reason"), reply
        assert exports.queued() == before, "a refused callback queued copy tasks"

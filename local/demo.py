"""The demo `make run` plays once: replay events/ through the API, let the queue drain, run the
scheduled functions, and print what happened. Meanwhile a deletion plays out beside it (issue #17):
a user's events are queued, the user is deleted, more events are queued, and the report proves from
the sandbox's record that none of the first arrived after the delete and all of the others did.

Which event files are replayed, and how, is a small registry (`REPLAYS`): a file-name pattern and
a function that makes the recorded API Gateway event sendable again — the ingest samples get the
local ingest key; signed webhooks would be signed again with the local signing secret, as their
signatures cover a timestamp that has long expired, and App Store notifications with the local test
CA. Every file is sent over HTTP to the local API, exactly as a client would send it.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from local.stack import EVENTS_DIR, Stack

DRAIN_TIMEOUT_SECONDS = 60.0
# The deletion: the delete waits behind the ordering fence (ORDER_FENCE_SECONDS, about a minute with
# the sender's default Braze timeouts), then held events follow it.
DELETION_USER = "demo-deleted-user"
BEFORE_DELETE, AFTER_DELETE = "demo_queued_before_delete", "demo_queued_after_delete"
EVENTS_BEFORE_DELETE, EVENTS_AFTER_DELETE = 3, 2
DELETION_TIMEOUT_SECONDS = 180.0
EXPORT_TIMEOUT_SECONDS = 30.0
LAKE_BUCKET_VARIABLE = "LAKE_BUCKET"
REJECTED_BUCKET_VARIABLE = "REJECTED_BUCKET"


@dataclass
class Request:
    """One HTTP request rebuilt from a recorded API Gateway (payload 2.0) event."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Replay:
    pattern: str  # file name pattern in events/
    prepare: Callable[[Request, Stack], Request]


def _with_local_ingest_key(request: Request, stack: Stack) -> Request:
    scheme, _, _key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        request.headers["authorization"] = f"Bearer {stack.options.ingest_key}"
    return request


def _stripe_signature(secret: str, timestamp: int, body: bytes) -> str:
    # Stripe: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` (stripe.com/docs/webhooks).
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _paddle_signature(secret: str, timestamp: int, body: bytes) -> str:
    # Paddle Billing: `ts=<unix time>;h1=<hex HMAC-SHA256 of "<ts>:<raw body>">` (developer.paddle.com).
    digest = hmac.new(secret.encode(), f"{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return f"ts={timestamp};h1={digest}"


# provider (the {provider} of /webhooks/{provider}) → (signature header, signer)
WEBHOOK_SIGNERS: dict[str, tuple[str, Callable[[str, int, bytes], str]]] = {
    "stripe": ("stripe-signature", _stripe_signature),
    "paddle": ("paddle-signature", _paddle_signature),
}


def _signed_again(request: Request, stack: Stack) -> Request:
    """The recorded signature covers a timestamp long past: sign the same bytes now, with this run's
    secret (which the local stack put in the webhook-secrets secret)."""
    provider = request.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    signer = WEBHOOK_SIGNERS.get(provider)
    secret = stack.webhook_secrets.get(provider)
    if signer is None or secret is None:
        return request  # sent as recorded; the report shows what the API answered
    header, sign = signer
    request.headers = {name: value for name, value in request.headers.items() if name.lower() != header}
    request.headers[header] = sign(secret, int(time.time()), request.body)
    return request


def _google_push_token(request: Request, stack: Stack) -> Request:
    """Pub/Sub's token in the recording expired long ago: the stack's Google stand-in signs a new one,
    as Pub/Sub would for the push subscription's service account."""
    if stack.google is not None:
        request.headers = {name: value for name, value in request.headers.items() if name.lower() != "authorization"}
        request.headers["authorization"] = f"Bearer {stack.google.push_token()}"
    return request


def _signed_by_the_local_test_ca(request: Request, stack: Stack) -> Request:
    """An App Store notification carries its own certificate chain: sign the recorded notification again
    with this run's test CA (which the local stack trusts), dated now."""
    if stack.app_store_chain is None:
        return request  # sent as recorded; the report shows what the API answered
    from local.app_store_ca import resigned_body

    request.body = resigned_body(request.body, stack.app_store_chain).encode("utf-8")
    return request


REPLAYS: list[Replay] = [
    Replay("ingest_*.json", _with_local_ingest_key),
    Replay("webhook_*.json", _signed_again),
    Replay("google_play_*.json", _google_push_token),
    Replay("app_store_*.json", _signed_by_the_local_test_ca),
]


@dataclass
class Sent:
    file: str
    request: Request
    status: int | None
    answer: Any
    error: str | None = None


@dataclass
class DemoResult:
    sent: list[Sent] = field(default_factory=list)
    drained: bool = True
    drain_seconds: float = 0.0
    awaiting_retry: int = 0
    scheduled: list[tuple[str, int | None, Any]] = field(default_factory=list)
    deletion: Deletion | None = None
    lines: list[str] = field(default_factory=list)


@dataclass
class Deletion:
    """A user deleted with events queued on both sides of the delete, as the sandbox recorded it."""

    user: str = DELETION_USER
    statuses: list[int | None] = field(default_factory=list)  # the API's answers, in order
    problem: str | None = None
    seconds: float = 0.0
    delete_reached_braze: bool = False
    before_in_braze_before: int = 0  # pre-delete events the deleted profile had
    before_in_braze_after: int = 0  # must be 0
    after_in_braze_after: int = 0  # must be EVENTS_AFTER_DELETE


def run_demo(stack: Stack, say: Callable[[str], None] = print) -> DemoResult:
    result = DemoResult()
    deletion = Deletion()
    deleting = None
    if stack.sandbox is not None:  # a real workspace is not the demo's to delete users from
        deleting = threading.Thread(target=_play_deletion, args=(stack, deletion), name="demo-deletion", daemon=True)
        deleting.start()
    files = replayable_files(stack)
    say(f"Demo: replaying {len(files)} request{'s' if len(files) != 1 else ''} from events/ through the API")
    for path, replay in files:
        result.sent.append(_send(stack, path, replay))
    if deleting is not None:  # its delete waits in the queue behind the fence: the drain would wait for it
        deleting.join(DELETION_TIMEOUT_SECONDS + 30)
        result.deletion = deletion
    started = time.monotonic()
    result.drained, result.awaiting_retry = stack.wait_until_drained(DRAIN_TIMEOUT_SECONDS)
    result.drain_seconds = time.monotonic() - started
    for schedule in stack.schedules:
        result.scheduled.append(_invoke(stack, schedule.function.logical_id, schedule.event()))
    if result.scheduled and stack.sandbox is not None:
        stack.sandbox.wait_for_exports(EXPORT_TIMEOUT_SECONDS)
        drained, awaiting = stack.wait_until_drained(DRAIN_TIMEOUT_SECONDS)
        result.drained = result.drained and drained
        result.awaiting_retry = awaiting
    result.lines = report(stack, result)
    for line in result.lines:
        say(line)
    return result


def replayable_files(stack: Stack) -> list[tuple[Path, Replay]]:
    """The event files to replay, in the order of their routes in the template."""
    order = {route.key: position for position, route in enumerate(stack.routes)}
    found = []
    for path in sorted(EVENTS_DIR.glob("*.json")):
        replay = next((r for r in REPLAYS if fnmatch.fnmatch(path.name, r.pattern)), None)
        if replay is None:
            continue
        event = json.loads(path.read_text())
        if event.get("version") != "2.0" or "rawPath" not in event:
            continue  # not an HTTP API event
        found.append((order.get(event.get("routeKey", ""), len(order)), path.name, path, replay))
    return [(path, replay) for _, _, path, replay in sorted(found)]


def _send(stack: Stack, path: Path, replay: Replay) -> Sent:
    assert stack.api is not None
    event = json.loads(path.read_text())
    raw_body = event.get("body") or ""
    body = base64.b64decode(raw_body) if event.get("isBase64Encoded") else raw_body.encode("utf-8")
    headers = {
        name: value
        for name, value in (event.get("headers") or {}).items()
        # Framing and routing headers belong to this request, not to the recorded one.
        if name.lower() not in ("host", "content-length", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto")
    }
    if event.get("cookies"):
        headers["cookie"] = "; ".join(event["cookies"])
    query = event.get("rawQueryString") or ""
    request = Request(
        method=event.get("requestContext", {}).get("http", {}).get("method", "POST"),
        path=event["rawPath"] + (f"?{query}" if query else ""),
        headers=headers,
        body=body,
    )
    request = replay.prepare(request, stack)
    try:
        response = requests.request(
            request.method, stack.api.url + request.path, headers=request.headers, data=request.body, timeout=35
        )
    except requests.RequestException as exc:
        return Sent(path.name, request, None, None, f"{type(exc).__name__}: {exc}")
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    return Sent(path.name, request, response.status_code, answer)


def _play_deletion(stack: Stack, deletion: Deletion) -> None:
    """The user exists in Braze (an event delivered first); then events, the delete and more events
    go through the API back to back; wait until Braze has the delete and the later events."""
    assert stack.api is not None and stack.sandbox is not None
    sandbox = stack.sandbox
    started = time.monotonic()
    deadline = started + DELETION_TIMEOUT_SECONDS
    headers = {"Authorization": f"Bearer {stack.options.ingest_key}"}

    def post(path: str, body: Any) -> bool:
        assert stack.api is not None
        try:
            status: int | None = requests.post(stack.api.url + path, json=body, headers=headers, timeout=35).status_code
        except requests.RequestException:
            status = None
        deletion.statuses.append(status)
        return status == 202

    def events(name: str, count: int) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {"events": [{"external_id": deletion.user, "name": name, "time": now} for _ in range(count)]}

    def wait(done: Callable[[], bool]) -> bool:
        while not done():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return True

    if not post("/users/track", events("demo_signed_up", 1)) or not wait(lambda: bool(sandbox.history(deletion.user))):
        deletion.problem = "the user's first event did not reach Braze"
        return
    queued = (
        post("/users/track", events(BEFORE_DELETE, EVENTS_BEFORE_DELETE))
        and post("/users/delete", {"external_ids": [deletion.user]})
        and post("/users/track", events(AFTER_DELETE, EVENTS_AFTER_DELETE))
    )
    if not queued:
        deletion.problem = f"the API did not accept every request: {deletion.statuses}"
        return

    def named(entries: list[dict[str, Any]] | None, name: str) -> int:
        return sum(entry.get("op") == "event" and entry.get("name") == name for entry in entries or [])

    def settled() -> bool:
        deleted = [d for d in sandbox.deletions if d.get("identifier") == deletion.user]
        deletion.delete_reached_braze = bool(deleted)
        if deleted:
            deletion.before_in_braze_before = named(deleted[-1].get("history"), BEFORE_DELETE)
        since = sandbox.since_deletion(deletion.user)
        deletion.before_in_braze_after = named(since, BEFORE_DELETE)
        deletion.after_in_braze_after = named(since, AFTER_DELETE)
        return deletion.after_in_braze_after >= EVENTS_AFTER_DELETE

    if not wait(settled):
        deletion.problem = f"not settled within {DELETION_TIMEOUT_SECONDS:.0f} s"
    deletion.seconds = time.monotonic() - started


def _invoke(stack: Stack, logical_id: str, event: Any) -> tuple[str, int | None, Any]:
    """Run a function through the Invoke API, as `aws lambda invoke` would."""
    assert stack.lambda_api is not None
    url = f"{stack.lambda_api.url}/2015-03-31/functions/{logical_id}/invocations"
    try:
        response = requests.post(url, data=json.dumps(event), timeout=900)
    except requests.RequestException as exc:
        return logical_id, None, f"{type(exc).__name__}: {exc}"
    answer = response.json() if response.content else None
    if response.headers.get("X-Amz-Function-Error"):
        return logical_id, None, answer
    return logical_id, response.status_code, answer


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def report(stack: Stack, result: DemoResult) -> list[str]:
    lines: list[str] = []
    lines += _requests_section(result)
    lines += _queue_section(stack, result)
    lines += _braze_section(stack)
    lines += _rejected_section(stack)
    lines += _profiles_section(stack)
    lines += _exports_section(stack, result)
    lines += _deletion_section(result.deletion)
    return lines


def _deletion_section(deletion: Deletion | None) -> list[str]:
    if deletion is None:
        return []
    lines = [
        "",
        f"Deletion: {deletion.user}: {EVENTS_BEFORE_DELETE} events queued, POST /users/delete, "
        f"{EVENTS_AFTER_DELETE} events queued (back to back; answers {deletion.statuses})",
    ]
    if deletion.problem:
        return [*lines, f"  NOT SHOWN: {deletion.problem}"]
    dropped = EVENTS_BEFORE_DELETE - deletion.before_in_braze_before - deletion.before_in_braze_after
    lines.append(
        f"  the delete reached Braze after the fence; before it Braze had {deletion.before_in_braze_before} of the "
        f"{EVENTS_BEFORE_DELETE} earlier events, the sender dropped {dropped} (DROPPED_AFTER_DELETE, above)"
    )
    kept = deletion.before_in_braze_after == 0 and deletion.after_in_braze_after == EVENTS_AFTER_DELETE
    lines.append(
        f"  → order {'kept' if kept else 'BROKEN'}: {deletion.before_in_braze_after} of the {EVENTS_BEFORE_DELETE} "
        f"pre-delete events arrived after the delete, {deletion.after_in_braze_after} of {EVENTS_AFTER_DELETE} "
        f"post-delete events did (sandbox since_deletion; {deletion.seconds:.1f} s)"
    )
    return lines


def _requests_section(result: DemoResult) -> list[str]:
    lines = []
    accepted = queued = refused = 0
    routes = [f"{sent.request.method} {sent.request.path.split('?', 1)[0]}" for sent in result.sent]
    route_width = max(map(len, routes), default=0)
    file_width = max((len(sent.file) for sent in result.sent), default=0)
    for route, sent in zip(routes, result.sent, strict=True):
        route = f"{route:<{route_width}}  {sent.file:<{file_width}}"
        if sent.status is None:
            lines.append(f"  {route}  no answer: {sent.error}")
            continue
        answer = sent.answer if isinstance(sent.answer, dict) else {}
        counts = {name[: -len("_queued")]: n for name, n in answer.items() if name.endswith("_queued") and n}
        errors = answer.get("errors") or []
        accepted += 200 <= sent.status < 300
        queued += sum(counts.values())
        refused += len(errors)
        summary = ", ".join(f"{n} {name}" for name, n in counts.items()) or answer.get("message", "")
        lines.append(f"  {route}  {sent.status}  queued: {summary or 'nothing'}")
        for error in errors:
            where = f"{error.get('input_array', '?')}[{error.get('index', '?')}]"
            lines.append(f"      rejected {where}: {error.get('type')}: {error.get('reason')}")
    lines.append(
        f"  → {len(result.sent)} requests, {accepted} accepted, {queued} objects queued, "
        f"{refused} rejected by the API (answered to the client, not queued)"
    )
    return lines


def _queue_section(stack: Stack, result: DemoResult) -> list[str]:
    lines = ["", "Queue"]
    state = f"drained in {result.drain_seconds:.1f} s" if result.drained else "NOT drained (timed out)"
    if result.awaiting_retry:
        state += f"; {result.awaiting_retry} message(s) failed and wait for their retry"
    lines.append(f"  {state}")
    for source in stack.sqs_sources:
        stats = source.stats
        lines.append(
            f"  {source.queue_name} → {source.function.logical_id}: {stats.batches} invocation(s), "
            f"{stats.records} message(s), {stats.deleted} done, {stats.failed} failed"
        )
    depths = stack.queue_depths()
    for logical_id, depth in depths.items():
        if not any(source.queue_name.endswith(logical_id) for source in stack.sqs_sources):  # dead-letter queues
            lines.append(f"  {logical_id}: {depth.get('ApproximateNumberOfMessages', 0)} message(s)")
    return lines


def _braze_section(stack: Stack) -> list[str]:
    if stack.sandbox is None:
        return ["", f"Braze: {stack.braze_url} (a real endpoint; look at the workspace)"]
    stats = stack.sandbox.stats()
    calls = sum(stats["calls"].values())
    lines = ["", f"Braze (sandbox): {calls} call{'s' if calls != 1 else ''}"]
    for path, summary in stats["objects_per_call"].items():
        statuses = ", ".join(f"{status}×{n}" for status, n in stats["statuses"].get(path, {}).items())
        lines.append(
            f"  {path:<36} {summary['calls']} call(s), {summary['objects']} object(s), "
            f"{summary['mean']:g} per call (max {summary['max']})  status {statuses}"
        )
    if stats["rate_limited"] or stats["faults_injected"]:
        lines.append(f"  rate limited: {stats['rate_limited']}, faults injected: {stats['faults_injected']}")
    return lines


def _rejected_section(stack: Stack) -> list[str]:
    bucket = stack.environment.get(REJECTED_BUCKET_VARIABLE)
    if not bucket:
        return []
    s3 = stack.client("s3")
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode("utf-8")
            records += [json.loads(line) for line in body.splitlines() if line.strip()]
    lines = ["", f"Rejected by Braze or the sender (s3://{bucket}): {len(records) or 'none'}"]
    reasons = Counter(
        f"{(r.get('reason') or {}).get('type')}: {(r.get('reason') or {}).get('message')}" for r in records
    )
    lines += [f"  {count}× {reason}" for reason, count in reasons.most_common()]
    return lines


def _profiles_section(stack: Stack) -> list[str]:
    if stack.sandbox is None:
        return []
    profiles = stack.sandbox.profiles()
    lines = ["", f"Profiles in the sandbox: {len(profiles)}"]
    for key, profile in profiles.items():
        lines.append(f"  {key}")
        attributes = {name: value for name, value in profile.get("attributes", {}).items()}
        if attributes:
            lines.append("      attributes: " + ", ".join(f"{k}={_short(v)}" for k, v in attributes.items()))
        aliases = profile.get("user_aliases") or []
        if aliases:
            lines.append("      aliases: " + ", ".join(f"{a['alias_name']} ({a['alias_label']})" for a in aliases))
        events = profile.get("custom_events") or {}
        if events:
            lines.append("      events: " + ", ".join(f"{name} ×{tally['count']}" for name, tally in events.items()))
        purchases = profile.get("purchases") or {}
        if purchases:
            lines.append(
                "      purchases: "
                + ", ".join(f"{name} ×{tally['count']}" for name, tally in purchases.items())
                + f" (revenue {profile.get('total_revenue', 0):g})"
            )
    return lines


def _exports_section(stack: Stack, result: DemoResult) -> list[str]:
    lines = [""]
    if not result.scheduled:
        lines.append("Scheduled functions: none in template.yaml")
    for logical_id, status, answer in result.scheduled:
        outcome = "failed" if status is None else "ran"
        lines.append(f"Scheduled function {logical_id} (run once through the Invoke API): {outcome}: {_short(answer)}")
    if stack.sandbox is not None:
        for export in stack.sandbox.exports:
            lines.append(
                f"  Braze export {export.object_prefix}: {export.status}, {export.users} user(s), "
                f"{len(export.files)} file(s)"
            )
    bucket = stack.environment.get(LAKE_BUCKET_VARIABLE)
    if bucket:
        s3 = stack.client("s3")
        keys = [
            (item["Key"], item["Size"])
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])
        ]
        lines.append(f"Lake (s3://{bucket}): {len(keys) or 'no'} file(s)")
        lines += [f"  {key}  {size} bytes" for key, size in keys]
    return lines


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def next_steps(stack: Stack) -> list[str]:
    """The commands a user would try next, with the real ports and key."""
    assert stack.api is not None and stack.lambda_api is not None
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {"external_id": "user-1001", "name": "played_track", "time": now, "properties": {"track_id": "t-7"}}
    body = json.dumps({"events": [event]}, separators=(",", ":"))
    lines = [
        "Try next:",
        f"  curl -s {stack.api.url}/users/track -H 'Authorization: Bearer {stack.options.ingest_key}' "
        f"-H 'Content-Type: application/json' -d '{body}'",
    ]
    if stack.sandbox is not None:
        lines.append(f"  curl -s {stack.braze_url}/sandbox/users/user-1001")
    # A scheduled function takes any event (as its schedule would send); others need their own.
    scheduled = [schedule.function.logical_id for schedule in stack.schedules]
    if scheduled:
        lines.append(
            f"  aws lambda invoke --endpoint-url {stack.lambda_api.url} --no-sign-request --region us-east-1 "
            f"--function-name {scheduled[0]} out.json"
        )
    return lines

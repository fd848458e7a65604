"""`backfill FILE`: a CSV or NDJSON file of users, events or purchases, sent into Braze.

Rows become Braze objects (columns named as Braze's fields, or renamed with --map column=field;
`--map column=` drops a column; a field may be nested, properties.plan). They go through the
stack's API (`--via api`, the default: validated, queued and delivered like any client's) or
straight to Braze (`--via braze`, with the project's Braze client and retry rule), 75 objects a
request, up to 4 requests at once: each user's rows go to one request of a window of 4 (routed by
the user's identifier), and the next window starts once the whole window is acknowledged, so a
user's rows arrive in file order. Each request carries an Idempotency-Key derived from the file,
the window and its place in it, so a resumed run never queues a request twice (Braze itself takes
no such key: with --via braze, the requests in flight when a run dies are sent again on resume).
The state file records the last acknowledged row: run the same command again to continue where it
stopped. For large files, `braze-forwarder import` has the stack do it (docs/imports.md).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from braze_forwarder import rows as row_mapping
from braze_forwarder.user_order import identities, user_digest
from cli import deletions
from cli.errors import CliError
from cli.rejects import INGEST_KEY_VARIABLE
from cli.target import Target

CHUNK = 75  # objects a request: Braze's /users/track limit
IN_FLIGHT = 4  # requests at once; one user's rows are never in two of them
_IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email", "phone")
ARRAYS = row_mapping.ARRAYS
BRAZE_KEY_VARIABLE = "BRAZE_API_KEY"
_ATTEMPTS = 6
_LISTED_REJECTIONS = 20


@dataclass
class State:
    path: Path
    fingerprint: str
    rows_done: int = 0
    accepted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    # When the first run began: every row of the file counts as accepted then, so a user deleted
    # after it is not re-created by a later window or a resumed run (docs/ordering.md).
    started_at: str = ""
    skipped_deleted: int = 0

    def save(self) -> None:
        data = {
            "fingerprint": self.fingerprint,
            "rows_done": self.rows_done,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "finished": self.finished,
            "started_at": self.started_at,
            "skipped_deleted": self.skipped_deleted,
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(temporary, self.path)  # atomic: an interruption leaves the old state or the new one


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backfill",
        parents=parents,
        help="send a CSV or NDJSON file of users, events or purchases into Braze, resumably",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", type=Path)
    parser.add_argument("--kind", choices=sorted(ARRAYS), required=True, help="what each row is")
    parser.add_argument("--format", choices=["csv", "ndjson"], help="default: from the file's extension")
    parser.add_argument(
        "--map", metavar="COLUMN=FIELD", action="append", default=[], help="rename a column (repeatable)"
    )
    parser.add_argument("--via", choices=["api", "braze"], default="api", help="the stack's API (default) or Braze")
    parser.add_argument("--state", metavar="FILE", type=Path, help="progress file (default: FILE.backfill.json)")
    parser.add_argument(
        "--ingest-key", metavar="KEY", help=f"--via api: the client key (default: ${INGEST_KEY_VARIABLE})"
    )
    parser.add_argument("--braze-endpoint", metavar="URL", help="--via braze: the REST endpoint (https://rest.…)")
    parser.set_defaults(handler=backfill_command, needs_target=lambda args: args.via == "api")


def parse_map(pairs: list[str]) -> dict[str, str]:
    try:
        mapping = row_mapping.parse_map(pairs)
        row_mapping.check_mapping(mapping)
    except row_mapping.MappingError as exc:
        raise CliError(f"--map {exc}") from None
    return mapping


def rows(path: Path, file_format: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(row number from 1, the row's values or None, why it could not be read)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        if file_format == "csv":
            for number, row in enumerate(csv.DictReader(handle), 1):
                if None in row:
                    yield number, None, "more values than the header has columns"
                    continue
                yield number, {name: value for name, value in row.items() if value not in ("", None)}, None
            return
        number = 0
        for line in handle:
            if not line.strip():
                continue
            number += 1
            try:
                value = json.loads(line)
            except ValueError:
                yield number, None, "not a JSON line"
                continue
            if isinstance(value, dict):
                yield number, value, None
            else:
                yield number, None, "not a JSON object"


def to_object(row: dict[str, Any], mapping: dict[str, str], from_csv: bool) -> dict[str, Any]:
    try:
        return row_mapping.to_object(row, mapping, from_csv)
    except row_mapping.MappingError as exc:
        raise CliError(f"--map: {exc}") from None


def fingerprint(path: Path, kind: str, mapping: dict[str, str]) -> str:
    digest = hashlib.sha256(f"{kind}\n{json.dumps(mapping, sort_keys=True)}\n".encode())
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def backfill_command(target: Target | None, args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    file_format = args.format or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
    mapping = parse_map(args.map)
    state = _load_state(
        args.state or path.with_name(path.name + ".backfill.json"), fingerprint(path, args.kind, mapping)
    )
    if state.finished:
        print(f"{path} was backfilled completely already (state {state.path}); delete the state file to send it again")
        return _summary(state)
    send = _api_sender(target, args) if args.via == "api" else _braze_sender(args)
    if not state.started_at:
        state.started_at = _utc_now_iso()
        state.save()  # before anything is sent: a run interrupted in its first window resumes from this time
    deleted = _DeletedUsers(target, state.started_at)
    array = ARRAYS[args.kind]
    total = sum(1 for _ in rows(path, file_format))
    progress = _Progress(total, state.rows_done)
    if state.rows_done:
        print(f"resuming after row {state.rows_done} of {total} (state {state.path})")
    # A window holds up to IN_FLIGHT requests, sent at once; each user's rows go to one request of
    # the window (routed by the user), so no user is in two concurrent requests, and the next window
    # starts when the whole window is acknowledged: a user's rows reach the API in file order.
    window: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in range(IN_FLIGHT)]
    unreadable: list[dict[str, Any]] = []  # recorded with the window they precede, so a resume adds them once
    last_row = state.rows_done
    with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="backfill") as pool:
        for number, row, problem in rows(path, file_format):
            if number <= state.rows_done:
                continue
            last_row = number
            if row is None:
                unreadable.append({"row": number, "type": "UNREADABLE_ROW", "reason": problem})
                continue
            obj = to_object(row, mapping, file_format == "csv")
            request = window[_route(obj)]
            request.append((number, obj))
            if len(request) == CHUNK:
                _deliver(pool, send, array, _without(window, deleted, state), unreadable, last_row, state)
                progress.show(state.rows_done)
                window, unreadable = [[] for _ in range(IN_FLIGHT)], []
        if any(window) or last_row > state.rows_done:
            _deliver(pool, send, array, _without(window, deleted, state), unreadable, last_row, state)
    state.finished = True
    state.save()
    progress.show(state.rows_done, final=True)
    return _summary(state)


class _DeletedUsers:
    """The users deleted through the stack's API since the backfill began (its UserOrderTable's
    tombstones), read again before every window: their rows are not sent, wherever they stand in the
    file and however often the run is resumed. Without a stack to ask (`--via braze` without its
    outputs, or a stack older than the table) nothing is known and nothing is skipped."""

    def __init__(self, target: Target | None, since: str) -> None:
        self.target, self.since = target, since
        self.found: dict[str, list[Any]] = {}

    def refresh(self) -> None:
        if self.target is not None:
            self.found = deletions.tombstones(self.target, self.since)

    def __contains__(self, obj: dict[str, Any]) -> bool:
        if not self.found:
            return False
        users = [user_digest(user) for user in identities("track", "attributes", obj)]
        return deletions.deleted_after(users, self.since, self.found) is not None


def _without(
    window: list[list[tuple[int, dict[str, Any]]]], deleted: _DeletedUsers, state: State
) -> list[list[tuple[int, dict[str, Any]]]]:
    """The window without the rows of users deleted since the backfill began (counted, never sent)."""
    deleted.refresh()
    kept = [[(number, obj) for number, obj in request if obj not in deleted] for request in window]
    state.skipped_deleted += sum(len(request) for request in window) - sum(len(request) for request in kept)
    return kept


def _utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"


def _route(obj: dict[str, Any]) -> int:
    """The request of a window a user's objects go to: the same for every object of one user."""
    identity = next((obj[name] for name in _IDENTIFIERS if obj.get(name) not in (None, "")), None)
    text = json.dumps(identity, sort_keys=True, default=str)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % IN_FLIGHT


def _deliver(
    pool: ThreadPoolExecutor,
    send: Any,
    array: str,
    window: list[list[tuple[int, dict[str, Any]]]],
    unreadable: list[dict[str, Any]],
    last_row: int,
    state: State,
) -> None:
    """Send one window's requests at once; record their rejected rows and acknowledge every row up to last_row.

    Each request's Idempotency-Key names the window and its place in it, so a window sent again after
    an interruption replays the requests the API took and queues only the others."""
    state.rejected.extend(unreadable)
    requests_ = [request for request in window if request]
    first = min((request[0][0] for request in requests_), default=last_row)
    futures = [
        pool.submit(send, array, [obj for _, obj in request], _idempotency_key(state, first, last_row, place))
        for place, request in enumerate(window)
        if request
    ]
    wait(futures)
    for future in futures:
        future.result()  # the first failure (or interruption) stops the run; the window is sent again on resume
    for request, future in zip(requests_, futures, strict=True):
        errors = future.result()
        for index, error_type, reason in errors:
            if 0 <= index < len(request):
                state.rejected.append({"row": request[index][0], "type": error_type, "reason": reason})
        state.accepted += len(request) - len({index for index, _, _ in errors if 0 <= index < len(request)})
    state.rejected.sort(key=lambda entry: entry["row"])
    state.rows_done = last_row
    state.save()


def _idempotency_key(state: State, first_row: int, last_row: int, place: int) -> str:
    # The window's bounds and place name the request; the skipped count too, so a window sent again
    # with fewer rows (a user deleted in between) is a new request rather than a mismatched replay.
    name = f"{state.fingerprint}:{first_row}:{last_row}:{place}:{state.skipped_deleted}"
    return "backfill-" + hashlib.sha256(name.encode()).hexdigest()[:40]


def _api_sender(target: Target | None, args: argparse.Namespace) -> Any:
    assert target is not None
    key = args.ingest_key or os.environ.get(INGEST_KEY_VARIABLE)
    if not key:
        raise CliError(f"--via api needs the API client key: --ingest-key KEY or {INGEST_KEY_VARIABLE}=KEY")
    if not target.api_url:
        raise CliError("the stack's API URL is unknown: give --api-url URL")
    local = threading.local()  # a Session each sending thread: requests does not promise a shared one is safe
    url = f"{target.api_url}/users/track"

    def send(array: str, objects: list[dict[str, Any]], idempotency_key: str) -> list[tuple[int, str, str]]:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
        for attempt in range(_ATTEMPTS):
            try:
                if not hasattr(local, "session"):
                    local.session = requests.Session()
                response = local.session.post(url, json={array: objects}, headers=headers, timeout=30)
            except requests.RequestException as exc:
                problem = f"the API is unreachable ({type(exc).__name__})"
            else:
                if response.status_code in (401, 403):
                    raise CliError(f"the API refused the ingest key ({response.status_code}): check --ingest-key")
                if response.status_code < 300 or response.status_code == 400:
                    body = _json(response)
                    errors = body.get("errors") or []
                    if response.status_code == 400 and not errors:
                        raise CliError(f"the API refused a request: {body.get('type')}: {body.get('reason')}")
                    return [
                        (int(e.get("index", -1)), str(e.get("type")), str(e.get("reason") or ""))
                        for e in errors
                        if e.get("input_array") == array
                    ]
                if response.status_code not in (408, 409, 429) and response.status_code < 500:
                    raise CliError(f"the API answered {response.status_code}: {response.text[:200]}")
                problem = f"the API answered {response.status_code}"
            time.sleep(min(20.0, 0.5 * 2**attempt))
        raise CliError(f"{problem}, {_ATTEMPTS} attempts; run the same command again to resume")

    return send


def _braze_sender(args: argparse.Namespace) -> Any:
    from braze_forwarder.braze.client import BrazeClient, Verdict, retry_delay_seconds
    from braze_forwarder.braze.endpoints import check_rest_endpoint

    api_key = os.environ.get(BRAZE_KEY_VARIABLE)
    if not args.braze_endpoint or not api_key:
        raise CliError(f"--via braze needs --braze-endpoint URL and the REST API key in {BRAZE_KEY_VARIABLE}")
    if not args.braze_endpoint.startswith("http://127.0.0.1:"):  # the local sandbox
        try:
            check_rest_endpoint(args.braze_endpoint)
        except ValueError as exc:
            raise CliError(f"--braze-endpoint {args.braze_endpoint}: {exc}") from None
    client = BrazeClient(args.braze_endpoint, pool_size=IN_FLIGHT, connect_timeout_seconds=5, read_timeout_seconds=30)

    def send(array: str, objects: list[dict[str, Any]], idempotency_key: str) -> list[tuple[int, str, str]]:
        for attempt in range(_ATTEMPTS):
            response = client.post("/users/track", {array: objects}, api_key)
            verdict = response.verdict
            if verdict is Verdict.SUCCESS:
                return [
                    (int(e.get("index", -1)), str(e.get("type")), str(e.get("reason") or e.get("type")))
                    for e in response.errors()
                    if e.get("input_array") in (None, array)
                ]
            if verdict in (Verdict.UNAUTHORIZED, Verdict.MISCONFIGURED, Verdict.SPLIT):
                raise CliError(f"Braze refused the request ({response.status}): {response.message}")
            time.sleep(retry_delay_seconds(response, attempt))
        raise CliError(f"Braze did not accept a request after {_ATTEMPTS} attempts; run again to resume")

    return send


def _load_state(path: Path, file_fingerprint: str) -> State:
    if not path.exists():
        return State(path, file_fingerprint)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"state file {path} is unreadable ({exc}); delete it to start over") from None
    if data.get("fingerprint") != file_fingerprint:
        raise CliError(f"state file {path} belongs to another file, kind or --map; give another --state or delete it")
    return State(
        path,
        file_fingerprint,
        rows_done=int(data.get("rows_done", 0)),
        accepted=int(data.get("accepted", 0)),
        rejected=list(data.get("rejected", [])),
        finished=bool(data.get("finished")),
        started_at=str(data.get("started_at") or ""),
        skipped_deleted=int(data.get("skipped_deleted", 0)),
    )


def _summary(state: State) -> int:
    print(f"done: {state.rows_done} row(s), {state.accepted} accepted, {len(state.rejected)} rejected")
    if state.skipped_deleted:
        print(f"  {state.skipped_deleted} row(s) not sent: their user was deleted after the backfill began")
    counts: dict[str, int] = {}
    for entry in state.rejected:
        counts[entry["type"]] = counts.get(entry["type"], 0) + 1
    for reason, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"  {reason}: {count}")
    for entry in state.rejected[:_LISTED_REJECTIONS]:
        print(f"  row {entry['row']}: {entry['type']}: {entry['reason']}")
    if len(state.rejected) > _LISTED_REJECTIONS:
        print(f"  … {len(state.rejected) - _LISTED_REJECTIONS} more in {state.path}")
    return 0 if not state.rejected else 1


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class _Progress:
    """One line on stderr: rows, rate, ETA; redrawn in place on a terminal, once a second otherwise."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.start_done = total, done
        self.started = self.shown = time.monotonic()
        self.tty = sys.stderr.isatty()

    def show(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.shown < (0.2 if self.tty else 1.0):
            return
        self.shown = now
        rate = (done - self.start_done) / max(now - self.started, 1e-6)
        remaining = (self.total - done) / rate if rate > 0 else 0
        percent = 100 * done // max(self.total, 1)
        line = f"backfill: {done}/{self.total} rows ({percent}%), {rate:,.0f} rows/s, ETA {remaining:,.0f} s"
        end = "\n" if final or not self.tty else ""
        print(("\r" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)

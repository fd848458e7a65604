"""`rejects list | replay | erase`: the rejected objects the stack kept, sending them again after a
fix, and erasing the deleted users' objects from them.

The store (layers/shared/braze_forwarder/rejects.py) holds JSON lines under
rejected/YYYY/MM/DD/HH/<time>-<id>.jsonl (webhooks under rejected/webhooks/...). Each line has
rejected_at, reason {type, message}, origin (where it came from) and object (None when there is
no single Braze object to send again: an unreadable envelope, errors Braze tied to no object).

A replay never sends an object whose user was deleted (POST /users/delete) after the object was
accepted: the API would accept it anew and re-create the user. `erase` takes such objects out of
the store for good (docs/personal-data.md).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests

from cli import deletions
from cli.errors import CliError
from cli.target import Target

if TYPE_CHECKING:
    from braze_forwarder.rejects import Rewrite

PREFIX = "rejected/"
REPLAY_CHUNK = 75  # objects per API request: Braze's /users/track limit, which the API keeps
INGEST_KEY_VARIABLE = "BRAZE_FORWARDER_INGEST_KEY"
TRACK_ARRAYS = ("attributes", "events", "purchases")  # as braze_forwarder.braze.validation
IDENTIFY_ARRAYS = ("aliases_to_identify", "emails_to_identify", "phone_numbers_to_identify")


@dataclass(frozen=True)
class Rejected:
    key: str
    line: int
    record: dict[str, Any]

    @property
    def rejected_at(self) -> str:
        return str(self.record.get("rejected_at") or "")

    @property
    def reason_type(self) -> str:
        return str((self.record.get("reason") or {}).get("type") or "?")

    @property
    def reason_message(self) -> str:
        return str((self.record.get("reason") or {}).get("message") or "")

    @property
    def accepted_at(self) -> str:
        from braze_forwarder.rejects import accepted_at

        return accepted_at(self.record)

    @property
    def users(self) -> frozenset[str]:
        """The digests of the users the record names (every identifier its object holds)."""
        from braze_forwarder.rejects import named_users

        return named_users(self.record)

    @property
    def origin(self) -> dict[str, Any]:
        origin = self.record.get("origin")
        return origin if isinstance(origin, dict) else {}

    @property
    def source(self) -> str:
        origin = self.origin
        return str(origin.get("source") or (f"webhook:{origin['provider']}" if origin.get("provider") else "?"))

    @property
    def array(self) -> str | None:
        array = self.origin.get("array")
        return array if isinstance(array, str) else None

    @property
    def kind(self) -> str | None:
        """The API route that takes the object again: track or identify (from the array if not recorded)."""
        kind = self.origin.get("kind")
        if kind in ("track", "identify"):
            return str(kind)
        if self.array in TRACK_ARRAYS:
            return "track"
        if self.array in IDENTIFY_ARRAYS:
            return "identify"
        return None

    def not_replayable(self) -> str | None:
        """Why this record cannot be sent again (None: it can)."""
        if not isinstance(self.record.get("object"), dict):
            if self.reason_type == "INVALID_ENVELOPE":
                return "no object: the queued message itself was unreadable (see raw_message in the store)"
            if self.reason_type == "UNMAPPED_BRAZE_ERROR":
                return "no object: Braze named no object of the call; its objects were delivered or kept one by one"
            return "no object was kept"
        if self.kind is None or self.array is None:
            return "the record names no array (track or identify) to send the object in"
        return None


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rejects", help="list, replay or erase the rejected objects the stack kept", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="rejects_command", metavar="{list,replay,erase}", required=True)
    filters = argparse.ArgumentParser(add_help=False)
    group = filters.add_argument_group("filters")
    group.add_argument(
        "--since",
        metavar="ISO",
        help="only records rejected at or after this time, UTC unless it names its zone (2026-05-01T12:00Z)",
    )
    group.add_argument("--reason", metavar="TYPE", action="append", help="only this reason type (repeatable)")
    group.add_argument("--source", metavar="NAME", help="only objects from this API client (or webhook:<provider>)")
    listing = commands.add_parser(
        "list",
        parents=[*parents, filters],
        help="one line per rejected record: time, reason, origin",
        description="One line per record: time, reason type, origin (source kind/array[index]) and the reason. "
        "The objects (personal data) are printed only with --show-objects.",
    )
    listing.add_argument("--show-objects", action="store_true", help="also print each object (personal data!)")
    listing.set_defaults(handler=list_command)
    replay = commands.add_parser(
        "replay",
        parents=[*parents, filters],
        help="send the kept objects again through the stack's ingest API",
        description=f"Send the kept objects again through the stack's API (POST /users/track or /users/identify, "
        f"{REPLAY_CHUNK} objects a request), with the client key from --ingest-key or {INGEST_KEY_VARIABLE}. "
        "Objects whose user was deleted (POST /users/delete) after they were accepted are skipped, never sent.",
    )
    replay.add_argument("--ingest-key", metavar="KEY", help=f"the API client key (default: ${INGEST_KEY_VARIABLE})")
    replay.add_argument("--dry-run", action="store_true", help="show what would be sent, send nothing")
    replay.set_defaults(handler=replay_command)
    erase = commands.add_parser(
        "erase",
        parents=parents,
        help="remove from the store the objects of users deleted after the objects were accepted",
        description="Rewrite the files that hold objects of users deleted (POST /users/delete, see `deletions list`) "
        "after the objects were accepted: the other lines are written back, a file left empty is deleted, and the "
        "previous version of each file is deleted for good. Run it daily; it reads the whole store (rejects are "
        "rare). Needs s3:GetObject, PutObject, DeleteObject and DeleteObjectVersion on the bucket.",
    )
    erase.add_argument("--dry-run", action="store_true", help="count what would be removed, change nothing")
    erase.set_defaults(handler=erase_command)


def parse_since(value: str | None) -> str | None:
    """The --since time as the store writes it (ISO-8601 UTC, comparable as text)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since {value}: not an ISO-8601 time (e.g. 2026-05-01T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def read(target: Target, since: str | None = None) -> Iterator[Rejected]:
    """Every record in the store (oldest object first), skipping hours before `since`."""
    s3 = target.client("s3")
    bucket = target.output("RejectedObjectsBucketName")
    keys = _keys(s3, bucket, since)
    for key in sorted(keys, key=_key_time):
        if since and _key_hour(key) and _key_hour(key) < since[:13].replace("-", "/").replace("T", "/"):
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
        for number, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = {"reason": {"type": "UNREADABLE_RECORD", "message": "not JSON"}, "object": None}
            yield Rejected(key, number, record if isinstance(record, dict) else {})


def _keys(s3: Any, bucket: str, since: str | None) -> list[str]:
    """The record files, listed from `since`'s hour on."""
    from braze_forwarder.rejects import files

    return files(s3, bucket, since[:13].replace("-", "/").replace("T", "/") if since else "")


def _key_hour(key: str) -> str:
    """rejected/[webhooks/]YYYY/MM/DD/HH/... → YYYY/MM/DD/HH ('' if the key has another shape)."""
    parts = key[len(PREFIX) :].split("/")
    if parts and parts[0] == "webhooks":
        parts = parts[1:]
    return "/".join(parts[:4]) if len(parts) >= 5 else ""


def _key_time(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def selected(target: Target, args: argparse.Namespace) -> list[Rejected]:
    since = parse_since(args.since)
    reasons = {reason.upper() for reason in args.reason or []}
    chosen = []
    for rejected in read(target, since):
        if since and rejected.rejected_at[:19] < since:
            continue
        if reasons and rejected.reason_type.upper() not in reasons:
            continue
        if args.source and rejected.source != args.source:
            continue
        chosen.append(rejected)
    return chosen


def describe(rejected: Rejected) -> str:
    origin = rejected.origin
    where = rejected.array or "-"
    if origin.get("index") is not None:
        where += f"[{origin['index']}]"
    return (
        f"{rejected.rejected_at or '?':<27} {rejected.reason_type:<32} "
        f"{rejected.source} {rejected.kind or '-'}/{where}  {rejected.reason_message}"
    )


def list_command(target: Target, args: argparse.Namespace) -> int:
    records = selected(target, args)
    for rejected in records:
        print(describe(rejected))
        if args.show_objects and rejected.record.get("object") is not None:
            print("    " + json.dumps(rejected.record["object"], ensure_ascii=False, separators=(",", ":")))
    counts: dict[str, int] = {}
    for rejected in records:
        counts[rejected.reason_type] = counts.get(rejected.reason_type, 0) + 1
    summary = ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))
    print(f"{len(records)} rejected record(s)" + (f": {summary}" if summary else ""))
    return 0


def replay_command(target: Target, args: argparse.Namespace) -> int:
    records = selected(target, args)
    sendable: dict[str, list[Rejected]] = {"track": [], "identify": []}
    skipped = 0
    for rejected in records:
        why = rejected.not_replayable()
        if why:
            skipped += 1
            print(f"not replayed: {describe(rejected)}\n    {why}")
            continue
        sendable[rejected.kind or ""].append(rejected)
    erased = _skip_deleted_users(target, sendable)
    total = sum(len(group) for group in sendable.values())
    skipped_deleted = f", {erased} skipped: their user was deleted after they were accepted" if erased else ""
    if args.dry_run:
        for kind, group in sendable.items():
            if group:
                requests_needed = -(-len(group) // REPLAY_CHUNK)
                print(f"would send {len(group)} object(s) to POST /users/{kind} in {requests_needed} request(s)")
        print(f"dry run: {total} object(s) would be replayed, {skipped} cannot be{skipped_deleted}")
        return 0
    if total == 0:
        print(f"nothing to replay ({skipped} record(s) cannot be replayed{skipped_deleted})")
        return 0
    key = args.ingest_key or os.environ.get(INGEST_KEY_VARIABLE)
    if not key:
        raise CliError(f"replay needs the API client key: --ingest-key KEY or {INGEST_KEY_VARIABLE}=KEY")
    if not target.api_url:
        raise CliError("the stack's API URL is unknown: give --api-url URL")
    accepted = refused = 0
    for kind, group in sendable.items():
        for start in range(0, len(group), REPLAY_CHUNK):
            chunk = group[start : start + REPLAY_CHUNK]
            ok, not_ok = _send(target.api_url, key, kind, chunk)
            accepted += ok
            refused += not_ok
    print(
        f"replayed {total} object(s): {accepted} accepted, {refused} still refused; {skipped} not replayable"
        + skipped_deleted
    )
    return 0 if refused == 0 else 1


def _send(api_url: str, key: str, kind: str, chunk: list[Rejected]) -> tuple[int, int]:
    """One request; print the API's answer; return (accepted, refused)."""
    body: dict[str, list[Any]] = {}
    positions: list[tuple[str, int, Rejected]] = []
    for rejected in chunk:
        array = rejected.array or ""
        body.setdefault(array, []).append(rejected.record["object"])
        positions.append((array, len(body[array]) - 1, rejected))
    url = f"{api_url}/users/{kind}"
    try:
        response = requests.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    except requests.RequestException as exc:
        raise CliError(f"the API at {api_url} is unreachable: {type(exc).__name__}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {"message": response.text[:200]}
    if response.status_code in (401, 403):
        raise CliError(f"the API refused the ingest key ({response.status_code}): check --ingest-key")
    errors = answer.get("errors") or [] if isinstance(answer, dict) else []
    by_position = {(e.get("input_array"), e.get("index")): e for e in errors if isinstance(e, dict)}
    if response.status_code >= 300 and not errors:
        print(f"POST /users/{kind}: {response.status_code} {answer.get('message', '')}: {len(chunk)} object(s) refused")
        return 0, len(chunk)
    refused = 0
    for array, index, rejected in positions:
        error = by_position.get((array, index))
        if error:
            refused += 1
            print(f"  still refused: {describe(rejected)}\n    now: {error.get('type')}: {error.get('reason')}")
    print(f"POST /users/{kind}: {response.status_code}: {len(chunk) - refused} accepted, {refused} refused")
    return len(chunk) - refused, refused


def _skip_deleted_users(target: Target, sendable: dict[str, list[Rejected]]) -> int:
    """Take out of `sendable` every object whose user has a tombstone accepted at or after the
    object (the API would accept it anew, after the delete, and re-create the user); return how many."""
    candidates = [rejected for group in sendable.values() for rejected in group]
    if not candidates:
        return 0
    found = deletions.tombstones(target, min(rejected.accepted_at for rejected in candidates))
    skipped = 0
    for kind, group in sendable.items():
        kept = []
        for rejected in group:
            if found and deletions.deleted_after(rejected.users, rejected.accepted_at, found):
                skipped += 1
                print(f"not replayed (user deleted after it was accepted): {describe(rejected)}")
            else:
                kept.append(rejected)
        sendable[kind] = kept
    return skipped


def erase_from_store(target: Target, erase: Callable[[Mapping[str, Any]], bool], *, dry_run: bool) -> list[Rewrite]:
    """Take the lines `erase` chooses out of every file of the store; the files that held any."""
    from braze_forwarder.rejects import erase_lines, files

    s3 = target.client("s3")
    bucket = target.output("RejectedObjectsBucketName")
    touched = []
    for key in files(s3, bucket):
        rewrite = erase_lines(s3, bucket, key, erase, dry_run=dry_run)
        if rewrite.removed:
            touched.append(rewrite)
    return touched


def summary(rewrites: list[Rewrite], *, dry_run: bool) -> str:
    """'3 line(s) in 2 file(s) removed (1 file(s) rewritten, 1 deleted)', or what a dry run would do."""
    lines = sum(rewrite.removed for rewrite in rewrites)
    deleted = sum(1 for rewrite in rewrites if rewrite.deleted)
    verb = "would be removed" if dry_run else "removed"
    return (
        f"{lines} line(s) in {len(rewrites)} file(s) {verb} "
        f"({len(rewrites) - deleted} file(s) rewritten, {deleted} deleted)"
    )


def erase_command(target: Target, args: argparse.Namespace) -> int:
    """What RejectsEraserFunction does daily (braze_forwarder/erasure.py), now and with a report."""
    from braze_forwarder.erasure import erase_deleted_users

    if not target.outputs.get(deletions.ORDER_TABLE_OUTPUT):  # a stack from before deletes: none to apply
        print("no tombstone in the UserOrderTable: nothing to erase")
        return 0
    report = erase_deleted_users(
        target.client("s3"),
        target.output("RejectedObjectsBucketName"),
        deletions.order_store(target),
        dry_run=args.dry_run,
    )
    if not report.tombstones:
        print("no tombstone in the UserOrderTable: nothing to erase")
        return 0
    for rewrite in report.rewrites:
        print(f"{rewrite.key}: {rewrite.removed} of {rewrite.lines} line(s)")
    print(f"{report.tombstones} deleted user(s); rejected objects: " + summary(report.rewrites, dry_run=args.dry_run))
    return 0

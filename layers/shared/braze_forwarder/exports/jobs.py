"""Export jobs in EXPORT_JOBS_TABLE: one item per job, one per export file once that file is done.

    job_id = <id>, item_id = "job"          the job (status, token hash, counters)
    job_id = <id>, item_id = "file#00003"   export file 3: copied (users, bytes, keys) or failed (reason)

Every change is a conditional write, so the races the design allows cannot corrupt a job:

- two deliveries of the same callback: only one moves the job from `started` on;
- a copy task that runs twice (crash after its part was written, SQS redelivery): the file record
  and the job's counters are written in one transaction that requires the file record to be new,
  so the second run adds nothing;
- two tasks finishing together: only one moves the job to `finalizing`, and the manifest it writes
  is derived from the stored records alone, so whoever writes it writes the same bytes.

Status: requested → started → enqueuing → copying → finalizing → complete | complete_with_failures,
or requested → start_failed (the starter may re-arm it), or started → export_failed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from braze_forwarder import aws

REQUESTED = "requested"
STARTED = "started"
START_FAILED = "start_failed"
ENQUEUING = "enqueuing"
COPYING = "copying"
FINALIZING = "finalizing"
COMPLETE = "complete"
COMPLETE_WITH_FAILURES = "complete_with_failures"
EXPORT_FAILED = "export_failed"
FINISHED = frozenset({COMPLETE, COMPLETE_WITH_FAILURES})
# A callback has been handled once the job is in one of these: a repeated one changes nothing.
CALLBACK_HANDLED = frozenset({COPYING, FINALIZING, COMPLETE, COMPLETE_WITH_FAILURES, EXPORT_FAILED})

JOB_ITEM = "job"
COPIED = "copied"
FAILED = "failed"
_MAX_REASON_CHARS = 500
# Compared against when the job does not exist, so an unknown job costs the same hashing and
# comparison as a wrong token (the two get the same answer, too).
_ABSENT_HASH = hashlib.sha256(b"no such job").hexdigest()


@dataclass(frozen=True)
class Job:
    job_id: str
    status: str
    token_hash: str
    requested_at: str
    export_date: str
    fields: tuple[str, ...]
    output_format: str
    expires_at: int
    attempted_at: str = ""
    attempts: int = 0
    object_prefix: str | None = None
    url: str | None = None
    started_at: str | None = None
    start_error: str | None = None
    mode: str | None = None  # "bucket" | "url"
    callback_at: str | None = None
    callbacks: int = 0
    files_total: int | None = None
    files_copied: int = 0
    files_failed: int = 0
    users: int = 0
    bytes: int = 0
    source_bytes: int = 0
    completed_at: str | None = None
    error: str | None = None

    @property
    def files_done(self) -> int:
        return self.files_copied + self.files_failed

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Job:
        value = _plain(item)
        return cls(
            job_id=value["job_id"],
            status=value["status"],
            token_hash=value.get("token_hash", ""),
            requested_at=value.get("requested_at", ""),
            export_date=value.get("export_date", ""),
            fields=tuple(value.get("fields", ())),
            output_format=value.get("output_format", ""),
            expires_at=int(value.get("expires_at", 0)),
            attempted_at=value.get("attempted_at", ""),
            attempts=int(value.get("attempts", 0)),
            object_prefix=value.get("object_prefix"),
            url=value.get("url"),
            started_at=value.get("started_at"),
            start_error=value.get("start_error"),
            mode=value.get("mode"),
            callback_at=value.get("callback_at"),
            callbacks=int(value.get("callbacks", 0)),
            files_total=int(value["files_total"]) if "files_total" in value else None,
            files_copied=int(value.get("files_copied", 0)),
            files_failed=int(value.get("files_failed", 0)),
            users=int(value.get("users", 0)),
            bytes=int(value.get("bytes", 0)),
            source_bytes=int(value.get("source_bytes", 0)),
            completed_at=value.get("completed_at"),
            error=value.get("error"),
        )


@dataclass(frozen=True)
class FileRecord:
    """One export file's outcome. `source` names the file without secrets (a key, or the url's host)."""

    index: int
    status: str  # COPIED | FAILED
    source: str
    source_bytes: int = 0
    users: int = 0
    bytes: int = 0
    part_key: str | None = None
    raw_key: str | None = None
    reason: str | None = None
    finished_at: str = ""

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> FileRecord:
        value = _plain(item)
        return cls(
            index=int(value["index"]),
            status=value["status"],
            source=value.get("source", ""),
            source_bytes=int(value.get("source_bytes", 0)),
            users=int(value.get("users", 0)),
            bytes=int(value.get("bytes", 0)),
            part_key=value.get("part_key"),
            raw_key=value.get("raw_key"),
            reason=value.get("reason"),
            finished_at=value.get("finished_at", ""),
        )

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": self.index, "status": self.status, "source": self.source}
        if self.status == COPIED:
            entry.update(
                part=self.part_key, raw=self.raw_key, users=self.users, bytes=self.bytes, source_bytes=self.source_bytes
            )
        else:
            entry.update(reason=self.reason, raw=self.raw_key, source_bytes=self.source_bytes)
        entry["finished_at"] = self.finished_at
        return entry


# ---------------------------------------------------------------------------- tokens


def new_token() -> tuple[str, str]:
    """A one-time callback token and the only thing stored of it, its SHA-256."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(job: Job | None, token: str | None) -> bool:
    """Constant-time comparison of the presented token's hash with the job's (False for no job)."""
    presented = hash_token(token or "").encode("ascii")
    expected = (job.token_hash if job is not None and job.token_hash else _ABSENT_HASH).encode("ascii")
    return hmac.compare_digest(presented, expected) and job is not None and bool(token)


# ---------------------------------------------------------------------------- the job


def get(table: str, job_id: str) -> Job | None:
    item = _client().get_item(TableName=table, Key=_key(job_id, JOB_ITEM), ConsistentRead=True).get("Item")
    return Job.from_item(item) if item else None


def create(
    table: str,
    job_id: str,
    token_hash: str,
    *,
    fields: tuple[str, ...],
    output_format: str,
    export_date: str,
    ttl_seconds: int,
) -> bool:
    """Create the job in `requested`; False when a job with this id exists (this run already started)."""
    now = utc_now()
    item = {
        **_key(job_id, JOB_ITEM),
        "status": {"S": REQUESTED},
        "token_hash": {"S": token_hash},
        "requested_at": {"S": now},
        "attempted_at": {"S": now},
        "attempts": {"N": "1"},
        "export_date": {"S": export_date},
        "fields": {"L": [{"S": name} for name in fields]},
        "output_format": {"S": output_format},
        "expires_at": {"N": str(int(time.time()) + ttl_seconds)},
    }
    return _conditional("put_item", TableName=table, Item=item, ConditionExpression="attribute_not_exists(job_id)")


def rearm(table: str, job_id: str, token_hash: str, *, stale_before: str) -> bool:
    """Give a failed start (or one stuck in `requested` since before `stale_before`) a new attempt."""
    return _update(
        table,
        job_id,
        "SET #status = :requested, token_hash = :hash, attempted_at = :now REMOVE start_error ADD attempts :one",
        "#status = :start_failed OR (#status = :requested AND attempted_at < :stale)",
        {":requested": REQUESTED, ":start_failed": START_FAILED, ":hash": token_hash, ":now": utc_now(),
         ":stale": stale_before, ":one": 1},
    )  # fmt: skip


def mark_started(table: str, job_id: str, token_hash: str, object_prefix: str, url: str | None) -> bool:
    values: dict[str, Any] = {":started": STARTED, ":requested": REQUESTED, ":hash": token_hash,
                              ":prefix": object_prefix, ":now": utc_now()}  # fmt: skip
    expression = "SET #status = :started, object_prefix = :prefix, started_at = :now"
    if url is not None:
        expression += ", #url = :url"
        values[":url"] = url
    # Only this attempt's own arming (its token) may be moved on: a later re-arm has another token.
    return _update(table, job_id, expression, "#status = :requested AND token_hash = :hash", values)


def mark_start_failed(table: str, job_id: str, token_hash: str, reason: str) -> bool:
    return _update(
        table,
        job_id,
        "SET #status = :failed, start_error = :reason",
        "#status = :requested AND token_hash = :hash",
        {":failed": START_FAILED, ":requested": REQUESTED, ":hash": token_hash, ":reason": _reason(reason)},
    )


def count_callback(table: str, job_id: str) -> None:
    """Every authenticated callback is counted, repeats included, so they show on the job."""
    _client().update_item(
        TableName=table,
        Key=_key(job_id, JOB_ITEM),
        UpdateExpression="ADD callbacks :one",
        ConditionExpression="attribute_exists(job_id)",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )


def begin_copying(table: str, job_id: str, *, mode: str, files_total: int, url: str | None = None) -> bool:
    """The first callback: `started` → `enqueuing`, with the number of files found (and the
    download url, when only the callback carried one)."""
    expression = "SET #status = :enqueuing, #mode = :mode, files_total = :total, callback_at = :now"
    values: dict[str, Any] = {":enqueuing": ENQUEUING, ":started": STARTED, ":mode": mode, ":total": files_total,
                              ":now": utc_now()}  # fmt: skip
    if url is not None:
        expression += ", #url = :url"
        values[":url"] = url
    return _update(table, job_id, expression, "#status = :started", values)


def mark_enqueued(table: str, job_id: str) -> bool:
    """Every copy task is on the queue (False when the copier already finished the job: fine)."""
    return _update(table, job_id, "SET #status = :copying", "#status = :enqueuing", {":copying": COPYING,
                   ":enqueuing": ENQUEUING})  # fmt: skip


def fail_export(table: str, job_id: str, reason: str) -> bool:
    """The export cannot be copied at all (Braze reported failure, the url is not allowed, ...)."""
    return _update(
        table,
        job_id,
        "SET #status = :failed, #error = :reason, callback_at = :now",
        "#status = :started",
        {":failed": EXPORT_FAILED, ":started": STARTED, ":reason": _reason(reason), ":now": utc_now()},
    )


def claim_finalizing(table: str, job_id: str) -> bool:
    """Only one task moves a fully copied job to `finalizing`; completed_at is fixed here, once."""
    return _update(
        table,
        job_id,
        "SET #status = :finalizing, completed_at = :now",
        "#status IN (:enqueuing, :copying)",
        {":finalizing": FINALIZING, ":enqueuing": ENQUEUING, ":copying": COPYING, ":now": utc_now()},
    )


def mark_finished(table: str, job_id: str, status: str) -> bool:
    return _update(table, job_id, "SET #status = :final", "#status = :finalizing", {":final": status,
                   ":finalizing": FINALIZING})  # fmt: skip


# ---------------------------------------------------------------------------- files


def get_file(table: str, job_id: str, index: int) -> FileRecord | None:
    item = _client().get_item(TableName=table, Key=_key(job_id, file_item(index)), ConsistentRead=True).get("Item")
    return FileRecord.from_item(item) if item else None


def record_file(table: str, job_id: str, record: FileRecord, expires_at: int) -> bool:
    """Store a file's outcome and add it to the job's counters, atomically and only once.

    False when the file was recorded before (a retried task): nothing is added a second time.
    """
    item: dict[str, Any] = {
        **_key(job_id, file_item(record.index)),
        "index": {"N": str(record.index)},
        "status": {"S": record.status},
        "source": {"S": record.source},
        "source_bytes": {"N": str(record.source_bytes)},
        "users": {"N": str(record.users)},
        "bytes": {"N": str(record.bytes)},
        "finished_at": {"S": record.finished_at or utc_now()},
        "expires_at": {"N": str(expires_at)},
    }
    for name in ("part_key", "raw_key"):
        if getattr(record, name):
            item[name] = {"S": getattr(record, name)}
    if record.reason:
        item["reason"] = {"S": _reason(record.reason)}
    counter = "files_copied" if record.status == COPIED else "files_failed"
    try:
        _client().transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": item,
                        "ConditionExpression": "attribute_not_exists(job_id)",
                    }
                },
                {
                    "Update": {
                        "TableName": table,
                        "Key": _key(job_id, JOB_ITEM),
                        "UpdateExpression": f"ADD {counter} :one, #users :users, #bytes :bytes, source_bytes :source",
                        "ConditionExpression": "attribute_exists(job_id)",
                        "ExpressionAttributeNames": {"#users": "users", "#bytes": "bytes"},
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"},
                            ":users": {"N": str(record.users)},
                            ":bytes": {"N": str(record.bytes)},
                            ":source": {"N": str(record.source_bytes)},
                        },
                    }
                },
            ]
        )
    except ClientError as exc:
        reasons = exc.response.get("CancellationReasons") or []
        if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
            return False
        raise
    return True


def files(table: str, job_id: str) -> list[FileRecord]:
    """Every recorded file of a job, in index order."""
    return sorted((FileRecord.from_item(item) for item in _query_files(table, job_id)), key=lambda r: r.index)


def file_item(index: int) -> str:
    return f"file#{index:05d}"


# ---------------------------------------------------------------------------- plumbing


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _query_files(table: str, job_id: str) -> Iterator[dict[str, Any]]:
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "job_id = :job AND begins_with(item_id, :file)",
        "ExpressionAttributeValues": {":job": {"S": job_id}, ":file": {"S": "file#"}},
        "ConsistentRead": True,
    }
    while True:
        page = _client().query(**request)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _update(table: str, job_id: str, expression: str, condition: str, values: dict[str, Any]) -> bool:
    names = {name: name[1:] for name in ("#status", "#url", "#mode", "#error") if name in expression + condition}
    request: dict[str, Any] = {
        "TableName": table,
        "Key": _key(job_id, JOB_ITEM),
        "UpdateExpression": expression,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": {name: _attribute(value) for name, value in values.items()},
    }
    if names:
        request["ExpressionAttributeNames"] = names
    return _conditional("update_item", **request)


def _conditional(operation: str, **request: Any) -> bool:
    try:
        getattr(_client(), operation)(**request)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _attribute(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"S": str(value)}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for name, value in item.items():
        ((kind, inner),) = value.items()
        if kind == "L":
            plain[name] = [entry.get("S") for entry in inner]
        elif kind == "N":
            plain[name] = int(inner)
        else:
            plain[name] = inner
    return plain


def _key(job_id: str, item_id: str) -> dict[str, Any]:
    return {"job_id": {"S": job_id}, "item_id": {"S": item_id}}


def _reason(reason: str) -> str:
    return reason[:_MAX_REASON_CHARS] or "unknown"


def _client() -> Any:
    return aws.client("dynamodb")

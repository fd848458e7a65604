"""The ImportsTable: one item per import (its file, settings and running totals) and one per byte range.

    import_id "imp-…", item_id "import"      status, bucket, object_key, object_size, etag, format, kind,
                                             mapping, header, chunk_rows, ranges_total, ranges_done, rows_read,
                                             rows_queued, rows_rejected, bytes_read, started_at_ms, finished_at_ms
    import_id "imp-…", item_id "range#00003" range_start, range_end, next_byte, lines_read, chunks_done,
                                             range_done, sent_envelopes, lease_owner, lease_until_ms,
                                             sending_chunk, sending_envelopes, sending_at_ms

A range's progress moves only with a conditional write that names the number of chunks it has
acknowledged (`chunks_done = :k`) and the worker holding its lease, in one transaction with the import's
totals: a stale or duplicate worker cannot move it, and the totals move exactly as the ranges do.
Before a chunk's envelopes go to SQS the range notes it (`sending_*`, same conditions); the
acknowledgement removes the note, so a note left on the range's current chunk means that chunk may
be on the queue (imports/worker.py reads it on resume).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from braze_forwarder import aws

IMPORT_ITEM = "import"
ENQUEUING, RUNNING, CANCELLED, FINISHED = "enqueuing", "running", "cancelled", "finished"
ACTIVE = (ENQUEUING, RUNNING)


def range_item(index: int) -> str:
    return f"range#{index:05d}"


@dataclass(frozen=True)
class Import:
    import_id: str
    status: str
    bucket: str
    key: str
    size: int
    etag: str
    format: str
    kind: str
    mapping: dict[str, str]
    header: list[str]
    chunk_rows: int
    max_message_bytes: int
    ranges_total: int
    ranges_done: int = 0
    rows_read: int = 0
    rows_queued: int = 0
    rows_rejected: int = 0
    bytes_read: int = 0
    data_start: int = 0
    started_at_ms: int = 0
    finished_at_ms: int | None = None
    expires_at: int = 0


@dataclass(frozen=True)
class Range:
    index: int
    start: int
    end: int
    next_byte: int
    lines: int = 0  # lines read so far (blank ones included), so a resumed range numbers its lines on
    chunks: int = 0  # chunks acknowledged
    done: bool = False
    sent: frozenset[int] = field(default_factory=frozenset)  # envelopes of chunk `chunks` already queued
    lease_owner: str | None = None
    lease_until_ms: int = 0
    # The chunk whose envelopes a worker began to send and did not acknowledge (None: no such chunk),
    # how many envelopes it has, and when the send began (epoch ms).
    sending_chunk: int | None = None
    sending_envelopes: int = 0
    sending_at_ms: int = 0

    @property
    def interrupted(self) -> bool:
        """A worker began sending the range's current chunk and never acknowledged it."""
        return self.sending_chunk is not None and self.sending_chunk == self.chunks


@dataclass(frozen=True)
class Progress:
    """What one chunk moved: the range's new position and the counts to add to the import's totals."""

    next_byte: int
    lines: int
    rows_read: int
    rows_queued: int
    rows_rejected: int
    bytes_read: int
    done: bool


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _applied(write: Callable[..., Any], **request: Any) -> bool:
    """Make a conditional DynamoDB write; False when its condition did not hold (another writer got there)."""
    try:
        write(**request)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


class ImportsTable:
    """The imports and their ranges in one DynamoDB table (the stack's ImportsTable)."""

    def __init__(self, table: str, ttl_days: int = 30, dynamodb: Any = None) -> None:
        self.table = table
        self.ttl_days = ttl_days
        self._dynamodb = dynamodb  # None: the function's own client (the CLI hands in its target's)

    @property
    def db(self) -> Any:
        return self._dynamodb if self._dynamodb is not None else aws.client("dynamodb")

    def _key(self, import_id: str, item_id: str) -> dict[str, Any]:
        return {"import_id": _s(import_id), "item_id": _s(item_id)}

    def create(self, record: Import, ranges: list[Range]) -> bool:
        """Write the import (status `enqueuing`) and its ranges; False if the import exists already."""
        db = self.db
        item = {
            **self._key(record.import_id, IMPORT_ITEM),
            "status": _s(ENQUEUING),
            "bucket": _s(record.bucket),
            "object_key": _s(record.key),
            "object_size": _n(record.size),
            "etag": _s(record.etag),
            "format": _s(record.format),
            "kind": _s(record.kind),
            "mapping": _s(json.dumps(record.mapping, sort_keys=True)),
            "header": _s(json.dumps(record.header)),
            "chunk_rows": _n(record.chunk_rows),
            "max_message_bytes": _n(record.max_message_bytes),
            "ranges_total": _n(len(ranges)),
            "ranges_done": _n(0),
            "rows_read": _n(0),
            "rows_queued": _n(0),
            "rows_rejected": _n(0),
            "bytes_read": _n(0),
            "data_start": _n(record.data_start),
            "started_at_ms": _n(record.started_at_ms),
            "expires_at": _n(record.expires_at),
        }
        if not _applied(
            db.put_item, TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(import_id)"
        ):
            return False
        # Ranges after the import: a crash in between leaves an `enqueuing` import that start repairs.
        self.put_ranges(record.import_id, ranges, record.expires_at)
        return True

    def put_ranges(self, import_id: str, ranges: list[Range], expires_at: int) -> None:
        items = [
            {
                **self._key(import_id, range_item(r.index)),
                "range_start": _n(r.start),
                "range_end": _n(r.end),
                "next_byte": _n(r.start),
                "lines_read": _n(0),
                "chunks_done": _n(0),
                "range_done": {"BOOL": False},
                "expires_at": _n(expires_at),
            }
            for r in ranges
        ]
        aws.batch_put(self.db, self.table, items, attempts=8)

    def missing_ranges(self, import_id: str, ranges: list[Range], expires_at: int) -> None:
        """Write the ranges a crashed start did not (a range that exists keeps its progress)."""
        known = {r.index for r in self.ranges(import_id)}
        self.put_ranges(import_id, [r for r in ranges if r.index not in known], expires_at)

    def set_status(self, import_id: str, status: str, only_from: Iterable[str]) -> bool:
        """Move the import to `status` if it is in one of `only_from`; False if it was not."""
        allowed = list(only_from)
        names = {f":from{i}": _s(value) for i, value in enumerate(allowed)}
        return _applied(
            self.db.update_item,
            TableName=self.table,
            Key=self._key(import_id, IMPORT_ITEM),
            UpdateExpression="SET #status = :status, finished_at_ms = :now",
            ConditionExpression=f"#status IN ({', '.join(names)})",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":status": _s(status), ":now": _n(int(time.time() * 1000)), **names},
        )

    def get(self, import_id: str) -> Import | None:
        answer = self.db.get_item(TableName=self.table, Key=self._key(import_id, IMPORT_ITEM), ConsistentRead=True)
        item = answer.get("Item")
        return _import(item) if item else None

    def status(self, import_id: str) -> str | None:
        answer = self.db.get_item(
            TableName=self.table,
            Key=self._key(import_id, IMPORT_ITEM),
            ConsistentRead=True,
            ProjectionExpression="#status",
            ExpressionAttributeNames={"#status": "status"},
        )
        item = answer.get("Item")
        return item["status"]["S"] if item else None

    def recent(self, limit: int = 20) -> list[Import]:
        """The imports, newest first (a scan: an operator's listing of a small table, not a hot path)."""
        found: list[Import] = []
        request: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "item_id = :import",
            "ExpressionAttributeValues": {":import": _s(IMPORT_ITEM)},
        }
        while True:
            answer = self.db.scan(**request)
            found.extend(_import(item) for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return sorted(found, key=lambda record: -record.started_at_ms)[:limit]

    def ranges(self, import_id: str) -> list[Range]:
        found: list[Range] = []
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "import_id = :id AND begins_with(item_id, :range)",
            "ExpressionAttributeValues": {":id": _s(import_id), ":range": _s("range#")},
            "ConsistentRead": True,
        }
        while True:
            answer = self.db.query(**request)
            found.extend(_range(item) for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return found
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def get_range(self, import_id: str, index: int) -> Range | None:
        answer = self.db.get_item(
            TableName=self.table, Key=self._key(import_id, range_item(index)), ConsistentRead=True
        )
        item = answer.get("Item")
        return _range(item) if item else None

    def claim(self, import_id: str, index: int, owner: str, lease_ms: int) -> bool:
        """Take the range's lease (free, expired, or already ours); False if another worker holds it."""
        now = int(time.time() * 1000)
        return _applied(
            self.db.update_item,
            TableName=self.table,
            Key=self._key(import_id, range_item(index)),
            UpdateExpression="SET lease_owner = :owner, lease_until_ms = :until",
            ConditionExpression=(
                "attribute_exists(item_id) AND (attribute_not_exists(lease_owner) OR lease_owner = :owner"
                " OR lease_until_ms < :now)"
            ),
            ExpressionAttributeValues={":owner": _s(owner), ":until": _n(now + lease_ms), ":now": _n(now)},
        )

    def release(self, import_id: str, index: int, owner: str) -> None:
        _applied(  # False: the lease is not ours any more, nothing to release
            self.db.update_item,
            TableName=self.table,
            Key=self._key(import_id, range_item(index)),
            UpdateExpression="REMOVE lease_owner, lease_until_ms",
            ConditionExpression="lease_owner = :owner",
            ExpressionAttributeValues={":owner": _s(owner)},
        )

    def note_sending(self, import_id: str, index: int, owner: str, chunk: int, envelopes: int, now_ms: int) -> bool:
        """Note that chunk `chunk`'s `envelopes` envelopes are about to go to SQS; False if the range
        moved or another worker holds its lease (nothing may be sent then)."""
        return _applied(
            self.db.update_item,
            TableName=self.table,
            Key=self._key(import_id, range_item(index)),
            UpdateExpression="SET sending_chunk = :chunk, sending_envelopes = :envelopes, sending_at_ms = :now",
            ConditionExpression="chunks_done = :chunk AND lease_owner = :owner",
            ExpressionAttributeValues={
                ":chunk": _n(chunk),
                ":envelopes": _n(envelopes),
                ":now": _n(now_ms),
                ":owner": _s(owner),
            },
        )

    def remember_sent(self, import_id: str, index: int, owner: str, chunk: int, positions: Iterable[int]) -> bool:
        """Record which envelopes of chunk `chunk` SQS accepted when it refused others: the retry skips them."""
        numbers = sorted(set(positions))
        if not numbers:
            return True
        return _applied(
            self.db.update_item,
            TableName=self.table,
            Key=self._key(import_id, range_item(index)),
            UpdateExpression="ADD sent_envelopes :sent",
            ConditionExpression="chunks_done = :chunk AND lease_owner = :owner",
            ExpressionAttributeValues={
                ":sent": {"NS": [str(n) for n in numbers]},
                ":chunk": _n(chunk),
                ":owner": _s(owner),
            },
        )

    def advance(self, import_id: str, index: int, owner: str, chunk: int, progress: Progress, lease_ms: int) -> bool:
        """Acknowledge chunk `chunk` of the range and add its counts to the import, in one transaction.

        False when the range is no longer at that chunk or another worker holds its lease: nothing moved.
        """
        now = int(time.time() * 1000)
        range_update = {
            "TableName": self.table,
            "Key": self._key(import_id, range_item(index)),
            "UpdateExpression": (
                "SET next_byte = :next, lines_read = :lines, chunks_done = :after, range_done = :done,"
                " lease_until_ms = :until REMOVE sent_envelopes, sending_chunk, sending_envelopes, sending_at_ms"
            ),
            "ConditionExpression": "chunks_done = :chunk AND lease_owner = :owner",
            "ExpressionAttributeValues": {
                ":next": _n(progress.next_byte),
                ":lines": _n(progress.lines),
                ":after": _n(chunk + 1),
                ":done": {"BOOL": progress.done},
                ":until": _n(now + lease_ms),
                ":chunk": _n(chunk),
                ":owner": _s(owner),
            },
        }
        totals = {
            "TableName": self.table,
            "Key": self._key(import_id, IMPORT_ITEM),
            "UpdateExpression": (
                "ADD rows_read :read, rows_queued :queued, rows_rejected :rejected, bytes_read :bytes,"
                " ranges_done :done"
            ),
            "ExpressionAttributeValues": {
                ":read": _n(progress.rows_read),
                ":queued": _n(progress.rows_queued),
                ":rejected": _n(progress.rows_rejected),
                ":bytes": _n(progress.bytes_read),
                ":done": _n(1 if progress.done else 0),
            },
        }
        try:
            self.db.transact_write_items(TransactItems=[{"Update": range_update}, {"Update": totals}])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return False
            raise
        return True


def _import(item: dict[str, Any]) -> Import:
    def number(name: str, default: int = 0) -> int:
        return int(item[name]["N"]) if name in item else default

    return Import(
        import_id=item["import_id"]["S"],
        status=item["status"]["S"],
        bucket=item["bucket"]["S"],
        key=item["object_key"]["S"],
        size=number("object_size"),
        etag=item["etag"]["S"],
        format=item["format"]["S"],
        kind=item["kind"]["S"],
        mapping=json.loads(item["mapping"]["S"]),
        header=json.loads(item["header"]["S"]),
        chunk_rows=number("chunk_rows"),
        max_message_bytes=number("max_message_bytes"),
        ranges_total=number("ranges_total"),
        ranges_done=number("ranges_done"),
        rows_read=number("rows_read"),
        rows_queued=number("rows_queued"),
        rows_rejected=number("rows_rejected"),
        bytes_read=number("bytes_read"),
        data_start=number("data_start"),
        started_at_ms=number("started_at_ms"),
        finished_at_ms=number("finished_at_ms") if "finished_at_ms" in item else None,
        expires_at=number("expires_at"),
    )


def _range(item: dict[str, Any]) -> Range:
    return Range(
        index=int(item["item_id"]["S"].split("#", 1)[1]),
        start=int(item["range_start"]["N"]),
        end=int(item["range_end"]["N"]),
        next_byte=int(item["next_byte"]["N"]),
        lines=int(item["lines_read"]["N"]),
        chunks=int(item["chunks_done"]["N"]),
        done=bool(item.get("range_done", {}).get("BOOL")),
        sent=frozenset(int(n) for n in item.get("sent_envelopes", {}).get("NS", [])),
        lease_owner=item["lease_owner"]["S"] if "lease_owner" in item else None,
        lease_until_ms=int(item["lease_until_ms"]["N"]) if "lease_until_ms" in item else 0,
        sending_chunk=int(item["sending_chunk"]["N"]) if "sending_chunk" in item else None,
        sending_envelopes=int(item["sending_envelopes"]["N"]) if "sending_envelopes" in item else 0,
        sending_at_ms=int(item["sending_at_ms"]["N"]) if "sending_at_ms" in item else 0,
    )

"""Starting an import: a file dropped in the import bucket, or named by `braze-forwarder import start`.

The file is looked at (size, ETag, a CSV's header line), cut into byte ranges, recorded in the
ImportsTable and fanned out as one task a range on ImportTasksQueue. The import's id is derived
from the file's bucket, key and ETag and the kind, format and mapping, so S3's duplicate event
notifications, and a start repeated after a crash, find the import that exists instead of starting
a second one; a start that crashed before queueing its tasks is completed by the next one.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from braze_forwarder import aws, queue, rows
from braze_forwarder.config import ImportSettings
from braze_forwarder.imports import ranges, records, tasks
from braze_forwarder.observability import MetricUnit, logger, metrics
from braze_forwarder.s3_stream import S3ObjectReader, buffered

FORMATS = ("csv", "ndjson")
_EXTENSIONS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}


class ImportRefused(ValueError):
    """The request cannot start an import (unknown kind, a compressed file, a CSV without header, …)."""


@dataclass(frozen=True)
class Started:
    import_id: str
    created: bool  # False: the same file, kind and mapping were imported (or are importing) already
    ranges: int
    status: str


def import_id_for(bucket: str, key: str, etag: str, kind: str, file_format: str, mapping: dict[str, str]) -> str:
    text = json.dumps([bucket, key, etag, kind, file_format, mapping], sort_keys=True)
    return "imp-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def format_of(key: str, given: str | None) -> str:
    if given is not None:
        if given not in FORMATS:
            raise ImportRefused(f"format must be one of {', '.join(FORMATS)}")
        return given
    for extension, file_format in _EXTENSIONS.items():
        if key.lower().endswith(extension):
            return file_format
    raise ImportRefused("the key ends neither in .csv nor in .ndjson/.jsonl/.json: give the format")


def start_import(
    config: ImportSettings,
    table: records.ImportsTable,
    *,
    bucket: str,
    key: str,
    kind: str,
    mapping: dict[str, str] | None = None,
    file_format: str | None = None,
) -> Started:
    if kind not in rows.ARRAYS:
        raise ImportRefused(f"kind must be one of {', '.join(sorted(rows.ARRAYS))}")
    mapping = dict(mapping or {})
    try:
        rows.check_mapping(mapping)
    except rows.MappingError as exc:
        raise ImportRefused(f"map: {exc}") from None
    file_format = format_of(key, file_format)
    s3 = aws.client("s3")
    head = s3.head_object(Bucket=bucket, Key=key)
    size, etag = int(head["ContentLength"]), str(head["ETag"])
    if head.get("ContentEncoding") in ("gzip", "br", "deflate"):
        raise ImportRefused("the file is stored compressed; upload it uncompressed so it can be split by bytes")
    import_id = import_id_for(bucket, key, etag, kind, file_format, mapping)
    header, data_start = _header(s3, bucket, key, size, etag, file_format, config.import_max_line_bytes)
    planned = [
        records.Range(index, start, end, start)
        for index, (start, end) in enumerate(ranges.plan(data_start, size, config.import_range_bytes))
    ]
    if len(planned) > tasks.MAX_RANGES:
        raise ImportRefused(f"the file needs more than {tasks.MAX_RANGES} ranges: raise IMPORT_RANGE_BYTES")
    now_ms = int(time.time() * 1000)
    record = records.Import(
        import_id=import_id,
        status=records.ENQUEUING,
        bucket=bucket,
        key=key,
        size=size,
        etag=etag,
        format=file_format,
        kind=kind,
        mapping=mapping,
        header=header,
        chunk_rows=config.import_chunk_rows,
        max_message_bytes=config.max_message_bytes,
        ranges_total=len(planned),
        data_start=data_start,
        started_at_ms=now_ms,
        expires_at=now_ms // 1000 + config.import_ttl_days * 86400,
    )
    logger.append_keys(import_id=import_id)
    created = table.create(record, planned)
    if not created:
        existing = table.get(import_id)
        assert existing is not None
        if existing.status != records.ENQUEUING:
            logger.info("this file is imported already", extra={"status": existing.status})
            return Started(import_id, False, existing.ranges_total, existing.status)
        # A start that crashed between recording and queueing: finish it (tasks are idempotent).
        table.missing_ranges(import_id, planned, existing.expires_at)
    queue.send_messages(
        config.import_tasks_queue_url, [tasks.encode(tasks.RangeTask(import_id, r.index)) for r in planned]
    )
    table.set_status(import_id, records.RUNNING, only_from=[records.ENQUEUING])
    metrics.add_metric(name="ImportsStarted", unit=MetricUnit.Count, value=1)
    logger.info(
        "import started",
        extra={
            "bucket": bucket,
            "key": key,
            "bytes": size,
            "ranges": len(planned),
            "kind": kind,
            "format": file_format,
        },
    )
    return Started(import_id, created, len(planned), records.RUNNING)


def cancel_import(table: records.ImportsTable, import_id: str) -> bool:
    """Cancel a running import: its workers stop before their next chunk. False if it was not running."""
    return table.set_status(import_id, records.CANCELLED, only_from=records.ACTIVE)


def _header(
    s3: Any, bucket: str, key: str, size: int, etag: str, file_format: str, max_line_bytes: int
) -> tuple[list[str], int]:
    """A CSV's column names and where its data starts; ([], 0) for NDJSON. Refuses compressed files."""
    with buffered(S3ObjectReader(s3, bucket, key, size=size, etag=etag)) as stream:
        first = stream.readline(max_line_bytes + 1)
    if first[:2] == b"\x1f\x8b" or first[:4] == b"PK\x03\x04":
        raise ImportRefused("the file is gzip or zip; upload it uncompressed so it can be split by bytes")
    if file_format == "ndjson":
        return [], 0
    if not first.endswith(b"\n") and len(first) > max_line_bytes:
        raise ImportRefused(f"the CSV header is longer than {max_line_bytes} bytes")
    try:
        header = rows.csv_header(first.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ImportRefused("the CSV header is not UTF-8") from None
    except ValueError as exc:
        raise ImportRefused(str(exc)) from None
    return header, len(first)


def kind_of_key(key: str) -> str | None:
    """A dropped file's kind, from its first folder: users/, events/ or purchases/."""
    folder = key.split("/", 1)[0]
    return folder if folder in rows.ARRAYS and "/" in key else None


def start_from_s3_event(config: ImportSettings, table: records.ImportsTable, event: dict[str, Any]) -> list[str]:
    """Start an import for each object an S3 event notification reports; return what happened to each."""
    outcomes = []
    for record in event.get("Records", []):
        s3_part = record.get("s3", {})
        bucket = s3_part.get("bucket", {}).get("name", "")
        key = unquote_plus(s3_part.get("object", {}).get("key", ""))  # S3 events URL-encode keys
        kind = kind_of_key(key)
        if kind is None:
            metrics.add_metric(name="ImportFilesIgnored", unit=MetricUnit.Count, value=1)
            logger.error("a file outside users/, events/ and purchases/ was not imported", extra={"key": key})
            outcomes.append("ignored")
            continue
        try:
            started = start_import(config, table, bucket=bucket, key=key, kind=kind)
        except ImportRefused as exc:
            metrics.add_metric(name="ImportFilesIgnored", unit=MetricUnit.Count, value=1)
            logger.error("a dropped file cannot be imported", extra={"key": key, "reason": str(exc)})
            outcomes.append("refused")
            continue
        outcomes.append(started.import_id)
    return outcomes


def received_base_ms(record: records.Import) -> int:
    """The received_at of the file's first byte: every row's time is this plus its offset in KiB, so
    one user's rows are ordered by their place in the file (a whole file ends before the start)."""
    return record.started_at_ms - math.ceil(record.size / 1024)

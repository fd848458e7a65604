"""What ImportStarterFunction is asked: an S3 event notification, or a command from the CLI.

    {"Records": [{"eventSource": "aws:sqs", "body": "<S3 event>"}]}  files dropped in ImportBucket (S3 →
                                                                      ImportDropsQueue → the starter)
    {"Records": [{"eventSource": "aws:s3", "s3": {...}}, ...]}       an S3 event itself
    {"action": "start", "bucket": "...", "key": "...", "kind": "users", "map": {"col": "field"},
     "format": "csv"}                                                 `braze-forwarder import start`
    {"action": "cancel", "import_id": "imp-..."}                      `braze-forwarder import cancel`

A command is answered {"ok": true, ...} or {"ok": false, "error": "<what to fix>"}: a bad request is
an answer the CLI shows, never a function error.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from braze_forwarder.config import ImportSettings
from braze_forwarder.imports import records, tasks
from braze_forwarder.imports.start import ImportRefused, cancel_import, start_from_s3_event, start_import
from braze_forwarder.observability import logger


def handle(config: ImportSettings, event: dict[str, Any], table: records.ImportsTable | None = None) -> dict[str, Any]:
    table = table or records.ImportsTable(config.imports_table, config.import_ttl_days)
    if isinstance(event.get("Records"), list):
        started: list[str] = []
        for record in event["Records"]:
            if isinstance(record, dict) and record.get("eventSource") == "aws:sqs":
                # An error here raises: the drop goes back to its queue and, after five tries, to the DLQ.
                started += start_from_s3_event(config, table, _s3_event(record.get("body")))
            elif isinstance(record, dict):
                started += start_from_s3_event(config, table, {"Records": [record]})
        # An SQS event source with ReportBatchItemFailures reads this list: empty, every drop was handled.
        return {"ok": True, "started": started, "batchItemFailures": []}
    action = event.get("action")
    if action == "start":
        return _start(config, table, event)
    if action == "cancel":
        import_id = event.get("import_id")
        if not isinstance(import_id, str) or not tasks.IMPORT_ID.fullmatch(import_id):
            return {"ok": False, "error": "import_id is missing or malformed"}
        if table.get(import_id) is None:
            return {"ok": False, "error": f"no import {import_id}"}
        return {"ok": True, "import_id": import_id, "cancelled": cancel_import(table, import_id)}
    return {"ok": False, "error": "action must be start or cancel (or the event an S3 notification)"}


def _s3_event(body: Any) -> dict[str, Any]:
    """The S3 event an SQS message carries; S3's s3:TestEvent (sent when the notification is set) has
    no Records and starts nothing."""
    try:
        event = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        if not (isinstance(event, dict) and event.get("Event") == "s3:TestEvent"):
            logger.error("a message on the drops queue is not an S3 event; ignored")
        return {"Records": []}
    return event


def _start(config: ImportSettings, table: records.ImportsTable, event: dict[str, Any]) -> dict[str, Any]:
    bucket, key, kind = event.get("bucket"), event.get("key"), event.get("kind")
    mapping, file_format = event.get("map") or {}, event.get("format")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        return {"ok": False, "error": "bucket and key are required"}
    if config.import_bucket and bucket != config.import_bucket:
        return {"ok": False, "error": f"imports read only s3://{config.import_bucket}/: copy the file there first"}
    if not isinstance(kind, str):
        return {"ok": False, "error": "kind is required"}
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        return {"ok": False, "error": "map must be an object of column names to field names"}
    if file_format is not None and not isinstance(file_format, str):
        return {"ok": False, "error": "format must be csv or ndjson"}
    try:
        started = start_import(
            config, table, bucket=bucket, key=key, kind=kind, mapping=mapping, file_format=file_format
        )
    except ImportRefused as exc:
        return {"ok": False, "error": str(exc)}
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "403", "AccessDenied", "NoSuchBucket"):
            return {"ok": False, "error": f"s3://{bucket}/{key} does not exist or cannot be read ({code})"}
        raise
    return {
        "ok": True,
        "import_id": started.import_id,
        "created": started.created,
        "ranges": started.ranges,
        "status": started.status,
    }

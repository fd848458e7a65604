"""POST /users/export/global_control_group (§7): the request, the files (own bucket or a download url)
and the callback, written on a background thread per export.
"""

import copy
import gzip
import io
import json
import logging
import os
import threading
import time
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from local.braze_sandbox.answers import _Answer
from local.braze_sandbox.checks import _one_of
from local.braze_sandbox.config import SandboxConfig
from local.braze_sandbox.profiles import _ProfileStore
from local.braze_sandbox.rules import EXPORT_OUTPUT_FORMATS, GCG_EXPORT_FIELDS
from local.braze_sandbox.stats import _Stats

logger = logging.getLogger("braze_sandbox")


@dataclass
class CallbackRecord:
    """An export callback the sandbox sent (or tried to)."""

    url: str
    body: dict[str, Any]
    status: int | None  # None when the POST failed
    error: str | None
    time: float


@dataclass
class ExportRecord:
    """One global-control-group export the sandbox accepted."""

    object_prefix: str
    fields: list[str]
    output_format: str
    callback_endpoint: str | None
    url: str | None  # set when there is no export bucket
    bucket: str | None
    s3_endpoint_url: str | None
    users_per_file: int
    status: str = "pending"  # "pending" | "done" | "failed"
    files: list[str] = field(default_factory=list)  # S3 keys, or file names served by the sandbox
    users: int = 0
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


class _ExportRoute:
    """The export route, mixed into `BrazeSandbox` (core.py): it uses the sandbox's config, lock, store and records."""

    # BrazeSandbox's state that this mixin uses (core.py sets it).
    config: SandboxConfig
    url: str
    exports: list[ExportRecord]
    callbacks: list[CallbackRecord]
    _lock: threading.RLock
    _store: _ProfileStore
    _stats: _Stats
    _export_threads: list[threading.Thread]
    _export_files: dict[tuple[str, str], bytes]

    def _export_control_group(self, body: Any, excluded: frozenset[tuple[Any, Any]]) -> "_Answer":
        problem = _export_request_problem(body)
        if problem is not None:
            return _Answer(400, {"message": problem})
        config = self.config
        # §7: object_prefix = <random uuid>-<request time in Unix seconds>.
        object_prefix = f"{uuid.uuid4()}-{int(time.time())}"
        # §7: without own storage Braze answers with a download url; "gzip" only applies to a bucket.
        url = None if config.export_bucket else self._export_url(object_prefix)
        record = ExportRecord(
            object_prefix=object_prefix,
            fields=list(body["fields_to_export"]),
            output_format=(body.get("output_format") or "zip") if config.export_bucket else "zip",
            callback_endpoint=body.get("callback_endpoint"),
            url=url,
            bucket=config.export_bucket,
            s3_endpoint_url=config.s3_endpoint_url,
            users_per_file=config.export_users_per_file,
        )
        thread = threading.Thread(
            target=self._run_export, args=(record,), name=f"sandbox-export-{object_prefix[:8]}", daemon=True
        )
        with self._lock:
            self.exports.append(record)
            self._export_threads = [t for t in self._export_threads if t.is_alive()] + [thread]
        thread.start()
        answer = {"message": "success", "object_prefix": object_prefix}
        if url is not None:
            answer["url"] = url
        return _Answer(201, answer)  # [inf] Braze shows no status; its async user endpoints use 201

    def _export_url(self, object_prefix: str) -> str:
        # One download holding every file, as Braze's url is one link per export.
        return f"{self.url}/sandbox/exports/{object_prefix}/{object_prefix}.zip"

    def _run_export(self, record: ExportRecord) -> None:
        try:
            self._write_export(record)
            if record.status == "done" and record.callback_endpoint:
                self._send_callback(record)
        except Exception:  # a background thread must not die with a traceback
            logger.exception("sandbox: export %s failed", record.object_prefix)
        finally:
            record.finished.set()

    def _write_export(self, record: ExportRecord) -> None:
        if not self._pause(self.config.export_delay_seconds):
            record.status, record.error = "failed", "sandbox stopped"
            return
        try:
            users = self._control_group_users(record.fields)
            chunks = list(_chunks(users, record.users_per_file))
            if record.bucket:
                record.files = _upload_export(record, chunks, self.config)
            else:
                record.files = self._publish_export(record, chunks)
        except Exception as exc:  # e.g. the bucket does not exist: record it, keep serving
            logger.exception("sandbox: export %s failed", record.object_prefix)
            record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._stats.exports_failed += 1
            return  # [inf] Braze documents no failure callback (§7), so none is sent
        record.users, record.status = len(users), "done"
        with self._lock:
            self._stats.exports_done += 1

    def _control_group_users(self, fields: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            members = [p.export_object() for p in self._store.all() if p.in_control_group()]
            members.extend(copy.deepcopy(self.config.control_group_users))
        # §7: only the requested fields; a field the user lacks is left out (= null/empty).
        return [{name: user[name] for name in fields if name in user} for user in members]

    def _publish_export(self, record: ExportRecord, chunks: list[list[dict[str, Any]]]) -> list[str]:
        # §7 without own storage: one download (the url) — a zip of newline-delimited JSON files.
        members = [(f"{uuid.uuid4().hex}.json", _ndjson(chunk)) for chunk in chunks]
        file_name = self._export_url(record.object_prefix).rsplit("/", 1)[-1]
        with self._lock:
            self._export_files[(record.object_prefix, file_name)] = _zip(members)
        return [file_name]

    def _send_callback(self, record: ExportRecord) -> None:
        body: dict[str, Any] = {"success": True}  # §7: the documented callback body
        if record.url:
            body["url"] = record.url
        status, error = None, None
        try:
            response = requests.post(
                record.callback_endpoint or "", json=body, timeout=self.config.callback_timeout_seconds
            )
            status = response.status_code
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("sandbox: export callback to %s failed: %s", record.callback_endpoint, error)
        with self._lock:
            self.callbacks.append(
                CallbackRecord(
                    url=record.callback_endpoint or "",
                    body=body,
                    status=status,
                    error=error,
                    time=time.time(),
                )
            )


def _export_request_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Bad Request: the body must be a JSON object"
    fields = body.get("fields_to_export")
    if not isinstance(fields, list) or not fields:  # §7: required
        return "fields_to_export is required: a non-empty array of field names"
    unknown = [name for name in fields if not _one_of(name, GCG_EXPORT_FIELDS)]
    if unknown:
        return f"fields_to_export has unknown fields: {', '.join(map(str, unknown))}"
    if not _one_of(body.get("output_format", "zip"), EXPORT_OUTPUT_FORMATS):
        return "output_format must be zip or gzip"
    callback = body.get("callback_endpoint")
    if callback is not None and not _is_allowed_callback(callback):
        # The sandbox only calls back to loopback or https, never to arbitrary plain-http hosts.
        return "callback_endpoint must be an https URL or http://127.0.0.1 / http://localhost"
    return None


def _is_allowed_callback(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost"}


def _chunks(users: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    # [inf] An empty control group yields no files: Braze writes files per ~5,000 users (§7) and
    # documents nothing for zero. The callback is still sent, so consumers must handle zero files.
    for start in range(0, len(users), size):
        yield users[start : start + size]


def _ndjson(users: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(user, ensure_ascii=False) + "\n" for user in users).encode("utf-8")


def _zip(members: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, payload in members:
            archive.writestr(name, payload)
    return buffer.getvalue()


def _upload_export(record: ExportRecord, chunks: list[list[dict[str, Any]]], config: SandboxConfig) -> list[str]:
    import boto3  # lazily: the sandbox runs without boto3 when it serves exports itself

    region = config.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # A session per export: boto3's default session is not safe to share across threads.
    s3 = boto3.session.Session().client("s3", endpoint_url=record.s3_endpoint_url, region_name=region)
    # §7: <bucket>/segment-export/<SEGMENT_ID>/<YYYY-MM-dd>/<object_prefix>/<random>.zip|.json.gz
    folder = f"segment-export/{config.gcg_segment_id}/{datetime.now(UTC):%Y-%m-%d}/{record.object_prefix}"
    keys = []
    for chunk in chunks:
        file_name, payload, content_type = _export_file(uuid.uuid4().hex, chunk, record.output_format)
        s3.put_object(Bucket=record.bucket, Key=f"{folder}/{file_name}", Body=payload, ContentType=content_type)
        keys.append(f"{folder}/{file_name}")
    return keys


def _export_file(name: str, users: list[dict[str, Any]], output_format: str) -> tuple[str, bytes, str]:
    """One own-bucket export file (§7): a .zip holding one .json, or a .json.gz."""
    if output_format == "gzip":
        return f"{name}.json.gz", gzip.compress(_ndjson(users), mtime=0), "application/gzip"
    return f"{name}.zip", _zip([(f"{name}.json", _ndjson(users))]), "application/zip"

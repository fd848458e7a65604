"""ExportCopierFunction's logic: one copy task → one lake part and a raw copy; the last task
finishes the job with its manifest.

Failures fall in two kinds, decided here and nowhere else:

- the file itself is bad — a damaged archive, lines that are not JSON objects, a download the
  url policy refuses, a url that has expired or is over the size cap. Trying again gives the same
  answer, so the file is recorded as failed with the reason (on the job, in the manifest, in a
  metric and an error log), its raw copy is kept when there is one, and the task is done: it does
  not cycle through retries into the DLQ. The job ends `complete_with_failures`.
- anything else — S3 or DynamoDB errors, a broken transfer, a download that ran out of time —
  raises, the message goes back to the queue, and after five receives to CopyTasksDLQ.

A task that runs again (after a crash, or a redelivery) finds its file record and only checks
whether the job is finished; a task that crashed after writing its part but before recording it
rewrites the same part (same key, same bytes) and records it once.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from braze_forwarder import aws
from braze_forwarder.config import ExportCopierSettings, settings
from braze_forwarder.exports import jobs, lake, tasks, urls
from braze_forwarder.exports.streams import CorruptFile, GzipPartWriter, S3ObjectReader, buffered, export_lines
from braze_forwarder.observability import MetricUnit, logger, metrics

# Copies of raw files use two threads and 8 MiB chunks: enough for /tmp → S3, little memory.
_RAW_TRANSFER = TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=2)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class CopyTaskFailed(Exception):
    """The task did not finish; its message goes back to the queue (and to the DLQ after five tries)."""


def copy_task(body: str, remaining_seconds: Callable[[], float] | None = None) -> str:
    """Carry out one copy task; return what happened (for logs and tests)."""
    config = settings(ExportCopierSettings)
    try:
        task = tasks.decode(body)
    except tasks.TaskError as exc:
        # A message no version of this code can act on does not improve by waiting: drop it, loudly.
        logger.error("not a copy task; dropped", extra={"reason": str(exc)})
        metrics.add_metric(name="ExportCopyTasksInvalid", unit=MetricUnit.Count, value=1)
        return "invalid"
    logger.append_keys(job_id=task.job_id)
    job = jobs.get(config.export_jobs_table, task.job_id)
    if job is None:
        logger.error("copy task for an unknown (or expired) job; dropped", extra={"index": task.index})
        metrics.add_metric(name="ExportCopyTasksInvalid", unit=MetricUnit.Count, value=1)
        return "unknown_job"
    outcome = "checked"
    if task.kind != "finalize":
        outcome = _copy_once(config, job, task, remaining_seconds)
    finished = finish_if_done(config, task.job_id)
    return "finished" if finished and outcome != "skipped" else outcome


def _copy_once(
    config: ExportCopierSettings,
    job: jobs.Job,
    task: tasks.CopyTask,
    remaining_seconds: Callable[[], float] | None = None,
) -> str:
    if job.status not in (jobs.ENQUEUING, jobs.COPYING):
        logger.info("the job is no longer copying; nothing to do", extra={"status": job.status, "index": task.index})
        return "skipped"
    if jobs.get_file(config.export_jobs_table, job.job_id, task.index) is not None:
        logger.info("this file was copied by an earlier attempt", extra={"index": task.index})
        return "skipped"
    record = _copy(config, job, task, remaining_seconds)
    if not jobs.record_file(config.export_jobs_table, job.job_id, record, job.expires_at):
        logger.info("this file was recorded by a concurrent attempt", extra={"index": task.index})
        return "skipped"
    if record.status == jobs.COPIED:
        metrics.add_metric(name="ExportFilesCopied", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ExportUsersCopied", unit=MetricUnit.Count, value=record.users)
        metrics.add_metric(name="ExportBytesWritten", unit=MetricUnit.Bytes, value=record.bytes)
        logger.info("export file copied", extra={"index": task.index, "users": record.users, "bytes": record.bytes})
        return "copied"
    metrics.add_metric(name="ExportFilesFailed", unit=MetricUnit.Count, value=1)
    logger.error(
        "export file cannot be copied; recorded as failed, not retried",
        extra={"index": task.index, "source": record.source, "reason": record.reason, "raw_key": record.raw_key},
    )
    return "failed"


def _copy(
    config: ExportCopierSettings,
    job: jobs.Job,
    task: tasks.CopyTask,
    remaining_seconds: Callable[[], float] | None = None,
) -> jobs.FileRecord:
    s3 = aws.client("s3")
    part = lake.part_key(job.export_date, job.job_id, task.index)
    if task.kind == "file":
        if not config.braze_export_bucket:
            raise CopyTaskFailed("BRAZE_EXPORT_BUCKET is not set, but the task names a file in it")
        assert task.key is not None
        bucket, key = config.braze_export_bucket, task.key
        source = f"s3://{bucket}/{key}"
        raw = lake.raw_key(job.export_date, job.job_id, _relative_name(key, job.object_prefix))
        try:
            # The raw copy comes first and server-side: it is kept even when the file turns out damaged.
            s3.copy({"Bucket": bucket, "Key": key}, config.lake_bucket, raw)
            reader = S3ObjectReader(s3, bucket, key, size=task.size)
            with buffered(reader) as stream:
                return _convert(config, s3, stream, task.index, part, source=source, raw=raw, size=reader.size)
        except ClientError as exc:
            # A file that was listed and is gone now will not come back; anything else (access
            # denied, throttling) may be mended, so it is retried and ends in the DLQ for a redrive.
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return jobs.FileRecord(task.index, jobs.FAILED, source, reason="the export file is no longer there")
            raise
    # The download may take half of what is left of the invocation: the other half converts it.
    limit = config.export_url_timeout_seconds
    if remaining_seconds is not None:
        limit = max(1.0, min(limit, remaining_seconds() / 2))
    return _copy_download(config, s3, job, task.index, part, limit)


def _copy_download(
    config: ExportCopierSettings, s3: Any, job: jobs.Job, index: int, part: str, timeout_seconds: float
) -> jobs.FileRecord:
    source = f"url:{urls.host_of(job.url)}"
    if not job.url:
        return jobs.FileRecord(index, jobs.FAILED, source, reason="the job has no download url")
    # Named, so the raw upload opens its own handle: boto3's managed upload closes the file it is given.
    with tempfile.NamedTemporaryFile() as spool:
        try:
            size = urls.download(
                job.url,
                spool,
                allowed_hosts=config.export_url_allowed_hosts,
                allow_loopback=config.export_url_allow_loopback,
                max_bytes=config.export_url_max_bytes,
                timeout_seconds=timeout_seconds,
            )
        except urls.UrlNotAllowed as exc:
            return jobs.FileRecord(index, jobs.FAILED, source, reason=f"url not allowed: {exc}")
        except urls.DownloadFailed as exc:
            if exc.permanent:
                return jobs.FileRecord(index, jobs.FAILED, source, reason=str(exc))
            raise CopyTaskFailed(str(exc)) from None
        raw = lake.raw_key(job.export_date, job.job_id, _download_name(job.url))
        spool.flush()
        s3.upload_file(spool.name, config.lake_bucket, raw, Config=_RAW_TRANSFER)
        spool.seek(0)
        return _convert(config, s3, spool, index, part, source=source, raw=raw, size=size)


def _convert(
    config: ExportCopierSettings, s3: Any, stream: IO[bytes], index: int, part: str, *, source: str, raw: str, size: int
) -> jobs.FileRecord:
    try:
        with GzipPartWriter(s3, config.lake_bucket, part, config.lake_part_bytes) as writer:
            for line in export_lines(stream, config.export_max_line_bytes):
                writer.write_line(line)
    except CorruptFile as exc:
        return jobs.FileRecord(index, jobs.FAILED, source, source_bytes=size, raw_key=raw, reason=str(exc))
    return jobs.FileRecord(
        index,
        jobs.COPIED,
        source,
        source_bytes=size,
        users=writer.lines,
        bytes=writer.bytes,
        part_key=part,
        raw_key=raw,
    )


def finish_if_done(config: ExportCopierSettings, job_id: str) -> bool:
    """If every file is recorded, finish the job: manifest, then the final status. True if finished."""
    table = config.export_jobs_table
    job = jobs.get(table, job_id)
    if job is None or job.files_total is None:
        return False
    if job.status in (jobs.ENQUEUING, jobs.COPYING):
        if job.files_done < job.files_total:
            return False
        jobs.claim_finalizing(table, job_id)  # one task wins; the others find `finalizing` below
        job = jobs.get(table, job_id)
        assert job is not None
    if job.status != jobs.FINALIZING:
        return False
    # Whoever gets here writes the manifest — the claimant, or a retry after the claimant crashed.
    manifest_key = lake.write_manifest(config.lake_bucket, job, jobs.files(table, job_id))
    status = lake.final_status(job)
    if jobs.mark_finished(table, job_id, status):
        metrics.add_metric(name="ExportsCompleted", unit=MetricUnit.Count, value=1)
        details = {"status": status, "files": job.files_total, "failed": job.files_failed, "users": job.users,
                   "manifest": manifest_key}  # fmt: skip
        if job.files_failed:
            metrics.add_metric(name="ExportsCompletedWithFailures", unit=MetricUnit.Count, value=1)
            logger.error("export finished, but some files could not be copied", extra=details)
        else:
            logger.info("export finished", extra=details)
    return True


def _relative_name(key: str, object_prefix: str | None) -> str:
    """The key below the export's own folder (Braze's <object_prefix>/), so raw copies keep their names."""
    marker = f"/{object_prefix}/" if object_prefix else None
    if marker and marker in key:
        return key.split(marker, 1)[1]
    return key.rsplit("/", 1)[-1]


def _download_name(url: str | None) -> str:
    name = unquote(urlsplit(url or "").path.rsplit("/", 1)[-1])
    return name if _SAFE_NAME.fullmatch(name) else "export.zip"

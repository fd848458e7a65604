"""POST /exports/{job_id}/callback?token=…: Braze says the export is ready.

Authentication first, and one answer for every way it can fail: an unknown job, a malformed job
id, a missing or wrong token all get the same 404, after the same constant-time comparison. Only
then is the body read (a 400 for a malformed one), so nobody without the token learns anything.

Braze documents the callback body loosely (`{"success": true}`, plus `url` without own storage)
and nothing about retries, so the callback is a hint that is verified: the export's files are
found by listing the export bucket under Braze's documented layout, never taken from the request.
The answer comes fast — list, enqueue one copy task per file, record — and the copying happens in
the copier. A repeated callback is a no-op 200; one that arrives while the previous delivery was
still enqueuing (or crashed doing so) enqueues again, which the copier's once-only recording makes
harmless.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from braze_forwarder import aws, queue
from braze_forwarder.config import ExportCallbackSettings, settings
from braze_forwarder.exports import jobs, tasks, urls
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.observability import MetricUnit, logger, metrics
from braze_forwarder.request_body import parse_json, read_body

EXPORT_ROOT = "segment-export/"  # §7: fixed, even for the global control group export
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_SEND_CHUNK = 100  # messages per thread: 4,000 files go out in well under a second
_SEND_THREADS = 8
# Braze could call back in the milliseconds between answering the starter and the starter
# recording object_prefix; wait that long for it, no longer.
_SETTLE_POLLS, _SETTLE_PAUSE_SECONDS = 5, 0.1


def not_found() -> RequestRejected:
    return RequestRejected(404, "not_found", "no export job with this id and token")


def receive(event: APIGatewayProxyEventV2, job_id: str) -> dict[str, Any]:
    """Handle one callback; return the 200 body, or raise RequestRejected."""
    config = settings(ExportCallbackSettings)
    table = config.export_jobs_table
    token = event.get_query_string_value("token")
    job = jobs.get(table, job_id) if tasks.JOB_ID.fullmatch(job_id) else None
    if not jobs.token_matches(job, token):
        metrics.add_metric(name="ExportCallbacksRefused", unit=MetricUnit.Count, value=1)
        logger.warning("export callback refused: unknown job or wrong token")
        raise not_found()
    assert job is not None
    logger.append_keys(job_id=job_id)
    payload = _payload(event, config.max_callback_body_bytes)
    jobs.count_callback(table, job_id)
    job = _settled(table, job)

    if job.status in jobs.CALLBACK_HANDLED:
        metrics.add_metric(name="ExportCallbacksRepeated", unit=MetricUnit.Count, value=1)
        logger.info("export callback repeated; nothing to do", extra={"status": job.status})
        return {"message": "already received", "job_id": job_id, "status": job.status}
    if job.status in (jobs.REQUESTED, jobs.START_FAILED):
        metrics.add_metric(name="ExportCallbacksRefused", unit=MetricUnit.Count, value=1)
        logger.error("export callback for a job whose start was not recorded", extra={"status": job.status})
        raise RequestRejected(409, "export_not_started", "this job has no started export; nothing was copied")
    if job.status == jobs.ENQUEUING:
        logger.warning("export callback repeated while its copy tasks were being queued; queueing them again")
        return _enqueue(config, job, _copy_tasks(config, job, job.mode == "url"))
    return _first_callback(config, job, payload)


def _first_callback(config: ExportCallbackSettings, job: jobs.Job, payload: dict[str, Any]) -> dict[str, Any]:
    table = config.export_jobs_table
    if payload.get("success") is False:
        return _failed(config, job, "Braze's callback reported that the export failed (success: false)")
    url = job.url if job.url is not None else payload.get("url")
    if job.url is not None and payload.get("url") not in (None, job.url):
        # The url from Braze's own answer to our authenticated request is the one to trust.
        logger.warning(
            "the callback's url differs from the one Braze answered the export request with; using the latter",
            extra={"callback_url_host": urls.host_of(payload.get("url")), "url_host": urls.host_of(job.url)},
        )
    if url is not None:
        try:
            urls.check_download_url(
                url, config.export_url_allowed_hosts, allow_loopback=config.export_url_allow_loopback
            )
        except urls.UrlNotAllowed as exc:
            _failed(config, job, f"download url refused: {exc}")
            raise RequestRejected(400, "url_not_allowed", f"the export url is not accepted: {exc}") from None
        copy_tasks = [tasks.CopyTask(job.job_id, "url", 0)]
        mode = "url"
    elif not config.braze_export_bucket:
        return _failed(
            config,
            job,
            "the callback has no url and BRAZE_EXPORT_BUCKET is not set: configure the bucket Braze exports to",
        )
    else:
        copy_tasks = _copy_tasks(config, job, False)
        mode = "bucket"
    files_total = sum(task.kind != "finalize" for task in copy_tasks)
    new_url = url if url is not None and job.url is None else None
    if not jobs.begin_copying(table, job.job_id, mode=mode, files_total=files_total, url=new_url):
        metrics.add_metric(name="ExportCallbacksRepeated", unit=MetricUnit.Count, value=1)
        logger.info("a concurrent delivery of this callback is handling it")
        return {"message": "already received", "job_id": job.job_id, "status": jobs.ENQUEUING}
    metrics.add_metric(name="ExportCallbacksAccepted", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ExportFilesFound", unit=MetricUnit.Count, value=files_total)
    logger.info("export callback accepted", extra={"mode": mode, "files": files_total})
    return _enqueue(config, job, copy_tasks)


def _copy_tasks(config: ExportCallbackSettings, job: jobs.Job, url_mode: bool) -> list[tasks.CopyTask]:
    if url_mode:
        return [tasks.CopyTask(job.job_id, "url", 0)]
    found = list_export_files(config.braze_export_bucket, job.object_prefix or "", job.requested_at)
    if job.files_total is not None and len(found) != job.files_total:
        logger.error("the export's files changed since the first callback", extra={"files": len(found)})
    if not found:  # an empty control group: nothing to copy, but the job still gets its manifest
        return [tasks.CopyTask(job.job_id, "finalize")]
    return [tasks.CopyTask(job.job_id, "file", index, key, size) for index, (key, size) in enumerate(found)]


def list_export_files(bucket: str, object_prefix: str, requested_at: str) -> list[tuple[str, int]]:
    """(key, size) of every file of the export, sorted by key.

    §7 layout: segment-export/<SEGMENT_ID>/<YYYY-MM-dd>/<object_prefix>/<file>. The segment id and
    the date (the day Braze received its own callback, in its clock) are found by listing, not
    assumed; date folders from before the day preceding the request are not looked into. Keys come
    back decoded: the listing uses EncodingType=url (so keys XML cannot carry survive), and botocore
    decodes them exactly once — a key with a literal "%2B" keeps it.
    """
    s3 = aws.client("s3")
    earliest = (date.fromisoformat(requested_at[:10]) - timedelta(days=1)).isoformat()
    found: list[tuple[str, int]] = []
    for segment in _folders(s3, bucket, EXPORT_ROOT):
        for day_folder in _folders(s3, bucket, segment):
            day = day_folder[len(segment) :].rstrip("/")
            if not _DAY.fullmatch(day) or day < earliest:
                continue
            for entry in _objects(s3, bucket, f"{day_folder}{object_prefix}/"):
                if not entry["Key"].endswith("/"):  # a console-made "folder" is not a file
                    found.append((entry["Key"], int(entry["Size"])))
    return sorted(found)


def _folders(s3: Any, bucket: str, prefix: str) -> list[str]:
    folders: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        folders.extend(entry["Prefix"] for entry in page.get("CommonPrefixes", []))
    return folders


def _objects(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        entries.extend(page.get("Contents", []))
    return entries


def _enqueue(config: ExportCallbackSettings, job: jobs.Job, copy_tasks: list[tasks.CopyTask]) -> dict[str, Any]:
    bodies = [tasks.encode(task) for task in copy_tasks]
    chunks = [bodies[start : start + _SEND_CHUNK] for start in range(0, len(bodies), _SEND_CHUNK)]
    if len(chunks) == 1:
        queue.send_messages(config.copy_tasks_queue_url, chunks[0])
    else:
        with ThreadPoolExecutor(max_workers=min(_SEND_THREADS, len(chunks)), thread_name_prefix="enqueue") as pool:
            for future in [pool.submit(queue.send_messages, config.copy_tasks_queue_url, chunk) for chunk in chunks]:
                future.result()
    jobs.mark_enqueued(config.export_jobs_table, job.job_id)
    files = sum(task.kind != "finalize" for task in copy_tasks)
    return {"message": "success", "job_id": job.job_id, "files": files}


def _failed(config: ExportCallbackSettings, job: jobs.Job, reason: str) -> dict[str, Any]:
    jobs.fail_export(config.export_jobs_table, job.job_id, reason)
    metrics.add_metric(name="ExportsFailed", unit=MetricUnit.Count, value=1)
    logger.error("export failed", extra={"reason": reason})
    return {"message": "export failed", "job_id": job.job_id, "status": jobs.EXPORT_FAILED}


def _payload(event: APIGatewayProxyEventV2, max_bytes: int) -> dict[str, Any]:
    if not event.body:
        return {}  # the body is only a hint (§7); the bucket listing is what counts
    payload = parse_json(read_body(event.body, event.is_base64_encoded, max_bytes))
    if not isinstance(payload, dict):
        raise RequestRejected(400, "invalid_body", 'the callback body must be a JSON object, e.g. {"success": true}')
    if "url" in payload and not isinstance(payload["url"], str):
        raise RequestRejected(400, "invalid_body", "url must be a string")
    if "success" in payload and not isinstance(payload["success"], bool):
        raise RequestRejected(400, "invalid_body", "success must be true or false")
    return payload


def _settled(table: str, job: jobs.Job) -> jobs.Job:
    for _ in range(_SETTLE_POLLS):
        if job.status != jobs.REQUESTED:
            return job
        time.sleep(_SETTLE_PAUSE_SECONDS)
        job = jobs.get(table, job.job_id) or job
    return job

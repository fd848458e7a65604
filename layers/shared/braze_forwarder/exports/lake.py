"""Where an export lands in the lake bucket, and its manifest.

    braze/global_control_group/export_date=YYYY-MM-DD/job_id=<id>/part-00000.json.gz   ← the Glue table
    braze/global_control_group/export_date=YYYY-MM-DD/job_id=<id>/_manifest.json        (written last)
    raw/braze/global_control_group/export_date=YYYY-MM-DD/job_id=<id>/<file as Braze named it>

One part per export file, numbered in the order of the files' keys. The Glue table's partition
projection (template.yaml, GlobalControlGroupTable) reads `export_date` and `job_id` from these
folder names, so the layout here and the table's `storage.location.template` must agree — a test
checks that they do. `_manifest.json` starts with an underscore: Hive-style engines (Athena among
them) skip such files, so the manifest is never read as a data row. Raw copies live outside the
table's location, under `raw/`, where a lifecycle rule expires them.

export_date is the UTC date of the scheduled run the job belongs to, not of Braze's callback, so
one run's files always share one partition however late the callback comes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from braze_forwarder import aws
from braze_forwarder.exports.jobs import COMPLETE, COMPLETE_WITH_FAILURES, FileRecord, Job

TABLE_PREFIX = "braze/global_control_group/"
RAW_PREFIX = "raw/" + TABLE_PREFIX
MANIFEST_NAME = "_manifest.json"


def job_folder(export_date: str, job_id: str) -> str:
    return f"{TABLE_PREFIX}export_date={export_date}/job_id={job_id}/"


def part_key(export_date: str, job_id: str, index: int) -> str:
    return f"{job_folder(export_date, job_id)}part-{index:05d}.json.gz"


def raw_key(export_date: str, job_id: str, name: str) -> str:
    return f"raw/{job_folder(export_date, job_id)}{name}"


def manifest_key(export_date: str, job_id: str) -> str:
    return f"{job_folder(export_date, job_id)}{MANIFEST_NAME}"


def final_status(job: Job) -> str:
    return COMPLETE if job.files_failed == 0 else COMPLETE_WITH_FAILURES


def manifest(job: Job, records: Sequence[FileRecord]) -> dict[str, Any]:
    """Everything a reader needs to trust the folder, derived from the stored job and file records
    only — so two tasks that both finish the job write identical manifests."""
    return {
        "job_id": job.job_id,
        "status": final_status(job),
        "export_date": job.export_date,
        "object_prefix": job.object_prefix,
        "mode": job.mode,
        "fields": list(job.fields),
        "output_format": job.output_format,
        "requested_at": job.requested_at,
        "started_at": job.started_at,
        "callback_at": job.callback_at,
        "completed_at": job.completed_at,
        "files_total": job.files_total,
        "files_copied": job.files_copied,
        "files_failed": job.files_failed,
        "users": job.users,
        "bytes": job.bytes,
        "source_bytes": job.source_bytes,
        "files": [record.to_json() for record in records],
    }


def write_manifest(bucket: str, job: Job, records: Sequence[FileRecord]) -> str:
    key = manifest_key(job.export_date, job.job_id)
    body = json.dumps(manifest(job, records), indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return key

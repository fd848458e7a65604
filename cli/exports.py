"""`exports list | status JOB`: the global control group export jobs and their manifests.

Jobs live in the ExportJobsTable (one `job` item per job, one `file#NNNNN` item per export file);
a finished job's manifest is braze/global_control_group/export_date=…/job_id=…/_manifest.json in
the lake bucket.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from botocore.exceptions import ClientError

from cli.errors import CliError
from cli.target import Target


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "exports", help="list the export jobs, or show one job", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="exports_command", metavar="{list,status}", required=True)
    listing = commands.add_parser(
        "list", parents=parents, help="the export jobs, newest first", description="The export jobs, newest first."
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many jobs (default 50)")
    listing.set_defaults(handler=list_command)
    status = commands.add_parser(
        "status", parents=parents, help="one job, its files and its manifest", description="One job and its manifest."
    )
    status.add_argument("job", metavar="JOB", help="the job id (see `exports list`)")
    status.set_defaults(handler=status_command)


def _jobs(target: Target) -> list[Any]:
    from braze_forwarder.exports.jobs import JOB_ITEM, Job

    dynamodb = target.client("dynamodb")
    table = target.output("ExportJobsTableName")
    found = []
    request: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "item_id = :job",
        "ExpressionAttributeValues": {":job": {"S": JOB_ITEM}},
    }
    while True:
        page = dynamodb.scan(**request)
        found += [Job.from_item(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(found, key=lambda job: job.requested_at, reverse=True)


def _files(job: Any) -> str:
    total = "?" if job.files_total is None else str(job.files_total)
    failed = f" ({job.files_failed} failed)" if job.files_failed else ""
    return f"{job.files_copied}/{total}{failed}"


def list_command(target: Target, args: argparse.Namespace) -> int:
    jobs = _jobs(target)
    if not jobs:
        print("no export jobs")
        return 0
    print(f"{'JOB':<40} {'STATUS':<22} {'REQUESTED AT':<25} {'FILES':<12} USERS")
    for job in jobs[: args.limit]:
        print(f"{job.job_id:<40} {job.status:<22} {job.requested_at:<25} {_files(job):<12} {job.users}")
    if len(jobs) > args.limit:
        print(f"… and {len(jobs) - args.limit} older job(s) (--limit)")
    return 0


def status_command(target: Target, args: argparse.Namespace) -> int:
    from braze_forwarder.exports.jobs import JOB_ITEM, FileRecord, Job
    from braze_forwarder.exports.lake import manifest_key

    dynamodb = target.client("dynamodb")
    table = target.output("ExportJobsTableName")
    item = dynamodb.get_item(
        TableName=table, Key={"job_id": {"S": args.job}, "item_id": {"S": JOB_ITEM}}, ConsistentRead=True
    ).get("Item")
    if not item:
        raise CliError(f"no export job {args.job} (see `exports list`)")
    job = Job.from_item(item)
    for label, value in (
        ("job", job.job_id),
        ("status", job.status),
        ("export date", job.export_date),
        ("requested at", job.requested_at),
        ("started at", job.started_at),
        ("callback at", job.callback_at),
        ("completed at", job.completed_at),
        ("files copied", _files(job)),
        ("users", job.users),
        ("bytes", job.bytes),
        ("error", job.error or job.start_error),
    ):
        if value not in (None, ""):
            print(f"{label + ':':<14}{value}")
    pages = dynamodb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="job_id = :job AND begins_with(item_id, :file)",
        ExpressionAttributeValues={":job": {"S": job.job_id}, ":file": {"S": "file#"}},
    )
    records = sorted((FileRecord.from_item(i) for page in pages for i in page.get("Items", [])), key=lambda r: r.index)
    for record in records:
        detail = f"{record.users} users, {record.bytes} bytes" if record.reason is None else f"failed: {record.reason}"
        print(f"  file {record.index}: {record.status} ({detail})")
    key = manifest_key(job.export_date, job.job_id)
    bucket = target.output("LakeBucketName")
    try:
        body = target.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "AccessDenied"):
            print(f"manifest:     not written (yet): s3://{bucket}/{key}")
            return 0
        raise
    print(f"manifest:     s3://{bucket}/{key}")
    print(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
    return 0

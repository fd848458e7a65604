"""`import start | status | cancel`: bulk imports of a CSV or NDJSON file in the stack's import bucket.

The stack splits the file into byte ranges and queues its rows for the sender (docs/imports.md).
`start` asks the stack's ImportStarterFunction (a file dropped under users/, events/ or purchases/
starts by itself); `status` reads the ImportsTable; `cancel` asks the starter again, and the
workers stop before their next chunk.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any
from urllib.parse import urlsplit

from cli.errors import CliError
from cli.target import Target

WATCH_SECONDS = 2.0


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "import", help="bulk-import a file from the stack's import bucket", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="import_command", metavar="{start,status,cancel}", required=True)
    start = commands.add_parser(
        "start",
        parents=parents,
        help="import s3://BUCKET/KEY",
        description="Start importing a file in the import bucket.",
    )
    start.add_argument("source", metavar="s3://BUCKET/KEY")
    start.add_argument("--kind", choices=["users", "events", "purchases"], help="default: the key's first folder")
    start.add_argument("--format", choices=["csv", "ndjson"], help="default: from the key's extension")
    start.add_argument(
        "--map", metavar="COLUMN=FIELD", action="append", default=[], help="rename a column (repeatable; COLUMN= drops)"
    )
    start.add_argument("--watch", action="store_true", help="then show its progress until it ends")
    start.set_defaults(handler=start_command)
    status = commands.add_parser(
        "status", parents=parents, help="the imports, or one import's progress", description="Imports and progress."
    )
    status.add_argument("import_id", metavar="ID", nargs="?", help="an import id (default: list the imports)")
    status.add_argument("--watch", action="store_true", help="redraw until the import ends")
    status.set_defaults(handler=status_command)
    cancel = commands.add_parser(
        "cancel",
        parents=parents,
        help="cancel an import",
        description="Cancel an import: workers stop at their next chunk.",
    )
    cancel.add_argument("import_id", metavar="ID")
    cancel.set_defaults(handler=cancel_command)


def parse_source(source: str) -> tuple[str, str]:
    parts = urlsplit(source)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise CliError(f"{source}: expected s3://BUCKET/KEY")
    return parts.netloc, key


def start_command(target: Target | None, args: argparse.Namespace) -> int:
    from braze_forwarder import rows

    assert target is not None
    bucket, key = parse_source(args.source)
    kind = args.kind or key.split("/", 1)[0]
    if kind not in rows.ARRAYS:
        raise CliError(f"{key}: give --kind users|events|purchases (the key's first folder names none)")
    try:
        mapping = rows.parse_map(args.map)
        rows.check_mapping(mapping)
    except rows.MappingError as exc:
        raise CliError(f"--map {exc}") from None
    event = {"action": "start", "bucket": bucket, "key": key, "kind": kind, "map": mapping}
    if args.format:
        event["format"] = args.format
    answer = _invoke(target, event)
    if answer["created"]:
        print(f"import {answer['import_id']} started: {answer['ranges']} range(s)")
    else:
        print(f"import {answer['import_id']} exists already ({answer['status']}): the same file, kind and --map")
    if args.watch:
        return _watch(target, answer["import_id"])
    return 0


def cancel_command(target: Target | None, args: argparse.Namespace) -> int:
    assert target is not None
    answer = _invoke(target, {"action": "cancel", "import_id": args.import_id})
    if answer["cancelled"]:
        print(f"import {args.import_id} cancelled: its workers stop before their next chunk")
        return 0
    print(f"import {args.import_id} was not running; nothing to cancel")
    return 1


def status_command(target: Target | None, args: argparse.Namespace) -> int:
    assert target is not None
    table = _table(target)
    if not args.import_id:
        imports = table.recent()
        if not imports:
            print("no imports")
        for record in imports:
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.started_at_ms / 1000))
            print(
                f"{record.import_id}  {record.status:<9}  {started}  {record.kind:<9}  "
                f"{record.rows_queued:,} queued, {record.rows_rejected:,} rejected  s3://{record.bucket}/{record.key}"
            )
        return 0
    if args.watch:
        return _watch(target, args.import_id)
    record = table.get(args.import_id)
    if record is None:
        raise CliError(f"no import {args.import_id}")
    for line in describe(record, _events_waiting(target)):
        print(line)
    return _exit_code(record)


def _exit_code(record: Any) -> int:
    """As `backfill`: 1 when rows were rejected (or the import was cancelled), else 0."""
    return 1 if record.rows_rejected or record.status == "cancelled" else 0


def describe(record: Any, events_waiting: int | None, now_ms: int | None = None) -> list[str]:
    """The status of one import as lines of text (rate and ETA from its own start)."""
    from braze_forwarder.imports.worker import rejects_prefix

    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    end_ms = record.finished_at_ms or now_ms
    elapsed = max((end_ms - record.started_at_ms) / 1000, 1e-3)
    data_bytes = max(record.size - record.data_start, 0)
    rate = record.rows_read / elapsed
    byte_rate = record.bytes_read / elapsed
    eta = (data_bytes - record.bytes_read) / byte_rate if byte_rate > 0 and record.status == "running" else 0
    lines = [
        f"import {record.import_id}: {record.status}",
        f"  file      s3://{record.bucket}/{record.key} ({record.format}, {record.kind}, {record.size:,} bytes)",
        f"  ranges    {record.ranges_done}/{record.ranges_total} done; {record.bytes_read:,}/{data_bytes:,} bytes read",
        f"  rows      {record.rows_read:,} read, {record.rows_queued:,} queued, {record.rows_rejected:,} rejected",
        f"  rate      {rate:,.0f} rows/s over {elapsed:,.0f} s" + (f", ETA {eta:,.0f} s" if eta else ""),
    ]
    if events_waiting is not None:
        # Delivery per import would need the sender to count by source: the queue's depth is the cheap proxy.
        lines.append(f"  delivery  {events_waiting:,} message(s) of every source still wait in the sender's queue")
    if record.rows_rejected:
        lines.append(
            f"  rejected  rows kept with line and reason under s3://<RejectedObjectsBucket>/{rejects_prefix(record.import_id)}"
        )
    return lines


def _watch(target: Target, import_id: str) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    table = _table(target)
    record = table.get(import_id)
    if record is None:
        raise CliError(f"no import {import_id}")
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(import_id, total=max(record.size - record.data_start, 1), rows="")
        while True:
            rows_text = f"{record.rows_read:,} read, {record.rows_queued:,} queued, {record.rows_rejected:,} rejected"
            progress.update(bar, completed=record.bytes_read, rows=rows_text)
            if record.status not in ("enqueuing", "running"):
                break
            time.sleep(WATCH_SECONDS)
            fresh = table.get(import_id)
            if fresh is None:
                raise CliError(f"import {import_id} is gone (expired?)")
            record = fresh
    for line in describe(record, _events_waiting(target)):
        print(line)
    return _exit_code(record)


def _table(target: Target) -> Any:
    from braze_forwarder.imports.records import ImportsTable

    return ImportsTable(target.output("ImportsTableName"), dynamodb=target.client("dynamodb"))


def _events_waiting(target: Target) -> int | None:
    url = target.outputs.get("EventsQueueUrl")
    if not url:
        return None
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = target.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def _invoke(target: Target, event: dict[str, Any]) -> dict[str, Any]:
    function = target.output("ImportStarterFunctionName")
    response = target.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())
    payload = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        raise CliError(f"the import starter failed: {payload.get('errorType')}: {payload.get('errorMessage')}")
    if not payload.get("ok"):
        raise CliError(str(payload.get("error") or "the import starter refused the request"))
    return dict(payload)

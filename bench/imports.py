"""Import worker: peak memory and throughput for one range of 20,000 rows and of 200,000 rows.

The worker's real code runs — the streamed, ranged GET of the file, line alignment, CSV/NDJSON
parsing, the mapping, Braze's validation, envelope packing with deterministic ids — against a stub
S3 serving the file from disk, an in-memory stand-in for the ImportsTable (the same conditional
rules: chunk number and lease) and a sink that counts and drops the envelopes. moto would hold the
whole file and every message in this process, so a memory figure against it would measure moto.

The whole file is one range here, so one worker streams all of it: the 10x file must not need
more memory than the small one (target: peak ratio <= 1.3). Peak memory is tracemalloc's; rows/s
comes from a separate untraced run.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import print_table
from bench.exports import StubS3

SIZES = (20_000, 200_000)


class _StubImportS3(StubS3):
    def head_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:
        return {"ContentLength": self._path.stat().st_size, "ETag": '"bench"'}

    def get_object(self, Bucket: str, Key: str, Range: str, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return super().get_object(Bucket, Key, Range)


class MemoryImports:
    """The ImportsTable calls a worker makes, in memory, with its conditions (chunk number, lease)."""

    def __init__(self, record: Any, state: Any) -> None:
        self.record, self.state = record, state

    def get(self, import_id: str) -> Any:
        return self.record

    def status(self, import_id: str) -> str:
        return str(self.record.status)

    def get_range(self, import_id: str, index: int) -> Any:
        return self.state

    def claim(self, import_id: str, index: int, owner: str, lease_ms: int) -> bool:
        if self.state.lease_owner not in (None, owner):
            return False
        self.state = replace(self.state, lease_owner=owner)
        return True

    def release(self, import_id: str, index: int, owner: str) -> None:
        self.state = replace(self.state, lease_owner=None)

    def remember_sent(self, *args: Any) -> bool:
        return True

    def note_sending(self, import_id: str, index: int, owner: str, chunk: int, envelopes: int, now_ms: int) -> bool:
        return self.state.chunks == chunk and self.state.lease_owner == owner

    def set_status(self, import_id: str, status: str, only_from: Sequence[str]) -> bool:
        self.record = replace(self.record, status=status)
        return True

    def advance(self, import_id: str, index: int, owner: str, chunk: int, progress: Any, lease_ms: int) -> bool:
        if self.state.chunks != chunk or self.state.lease_owner != owner:
            return False
        self.state = replace(
            self.state, next_byte=progress.next_byte, lines=progress.lines, chunks=chunk + 1, done=progress.done
        )
        self.record = replace(
            self.record,
            rows_read=self.record.rows_read + progress.rows_read,
            rows_queued=self.record.rows_queued + progress.rows_queued,
            ranges_done=self.record.ranges_done + (1 if progress.done else 0),
        )
        return True


def write_file(path: Path, rows: int) -> None:
    rng = random.Random(rows)
    with path.open("w") as out:
        for n in range(rows):
            row = {
                "external_id": f"user-{n}-{rng.getrandbits(40):010x}",
                "email": f"user{n}@example.com",
                "plan": rng.choice(["free", "pro", "team"]),
                "visits": rng.randint(0, 999),
                "home_city": rng.choice(["London", "Zürich", "Berlin"]),
                "preferences": {"newsletter": rng.random() < 0.5, "genres": ["jazz", "soul"]},
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def import_once(path: Path, rows: int) -> tuple[float, int]:
    """One range task through the worker's own code; (seconds, rows queued)."""
    from braze_forwarder import aws
    from braze_forwarder.config import ImportSettings
    from braze_forwarder.imports import records, tasks, worker

    config = ImportSettings(
        imports_table="bench", import_tasks_queue_url="q", events_queue_url="q", rejected_bucket="r"
    )
    size = path.stat().st_size
    record = records.Import(
        import_id="imp-" + "0" * 24, status=records.RUNNING, bucket="b", key="users/bench.ndjson", size=size,
        etag='"bench"', format="ndjson", kind="users", mapping={}, header=[], chunk_rows=config.import_chunk_rows,
        max_message_bytes=config.max_message_bytes, ranges_total=1, started_at_ms=int(time.time() * 1000),
    )  # fmt: skip
    table = MemoryImports(record, records.Range(0, 0, size, 0))
    sent = {"messages": 0}

    def sink(bodies: Sequence[str]) -> None:
        sent["messages"] += len(bodies)

    parts = worker.WorkerParts(table, sink, lambda body, delay: None, "r")  # type: ignore[arg-type]
    body = tasks.encode(tasks.RangeTask(record.import_id, 0))
    with mock.patch.object(aws, "client", return_value=_StubImportS3(path)):
        start = time.perf_counter()
        outcome = worker.run_task(body, config, parts)
        seconds = time.perf_counter() - start
    assert outcome == "finished" and table.record.rows_queued == rows, (outcome, table.record)
    return seconds, table.record.rows_queued


def peak_bytes(path: Path, rows: int) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        import_once(path, rows)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run() -> list[list[str]]:
    table = []
    with tempfile.TemporaryDirectory() as folder:
        baseline = None
        for rows in SIZES:
            path = Path(folder) / f"users-{rows}.ndjson"
            write_file(path, rows)
            import_once(path, rows)  # warm-up: imports, settings, first allocations
            peak = peak_bytes(path, rows)
            baseline = baseline or peak
            seconds = min(import_once(path, rows)[0] for _ in range(2))
            table.append(
                [
                    f"{rows:,}",
                    f"{path.stat().st_size / 2**20:,.1f}",
                    f"{peak / 2**20:,.2f}",
                    f"{peak / baseline:.2f}",
                    f"{rows / seconds:,.0f}",
                ]
            )
    return table


def main() -> None:
    print_table(
        "Import worker: one range of a file queued as envelopes (S3, table and queue stubbed)",
        ["rows", "file MiB", "peak MiB", "vs 20,000", "rows/s"],
        run(),
        "tracemalloc peak of one range; best of 2 untraced runs; target: 200,000 vs 20,000 <= 1.3",
    )


if __name__ == "__main__":
    main()

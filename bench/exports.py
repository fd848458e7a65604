"""Export copier: peak memory and throughput for one export file of 5,000 and of 200,000 users.

The copier's real code runs — the streamed, ranged reads of the source object, zip/gzip
decompression, the check that every line is a JSON object, gzip compression, the /tmp spool and
the multipart upload — against a stub S3 that serves the export file from disk and counts (then
drops) what is uploaded. moto would keep every object and part in this process's memory, so a
memory figure taken against it would measure moto; the stub keeps only the copier's own.

Peak memory is tracemalloc's peak of Python allocations during one copy (zlib's buffers are
included: CPython allocates them through its own allocator). Throughput is timed in a separate
run without tracemalloc, which slows Python code down. Target: the 200,000-user file's peak is
less than 1.3 times the 5,000-user file's — memory does not grow with the file.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import print_table

SIZES = (5_000, 200_000)


def _user(n: int, rng: random.Random) -> dict[str, Any]:
    """BRAZE_API.md §7's per-user object, every field, with values that vary like real ones do."""
    return {
        "created_at": f"2020-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 15:00:00.000 UTC",
        "external_id": f"user-{n}-{rng.getrandbits(48):012x}",
        "user_aliases": [{"alias_name": f"device-{rng.getrandbits(40):010x}", "alias_label": "device_id"}],
        "braze_id": f"{rng.getrandbits(96):024x}",
        "random_bucket": rng.randint(0, 9999),
        "first_name": rng.choice(["Ada", "Grace", "Alan", "Edsger", "Barbara"]),
        "last_name": rng.choice(["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov"]),
        "email": f"user{n}@example.com",
        "dob": f"19{rng.randint(50, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "home_city": rng.choice(["London", "Zürich", "Berlin", "Chicago"]),
        "country": rng.choice(["GB", "CH", "DE", "US"]),
        "phone": f"+44{rng.randint(10**9, 10**10 - 1)}",
        "language": rng.choice(["en", "de", "fr"]),
        "time_zone": rng.choice(["Europe/London", "Europe/Zurich", "America/Chicago"]),
        "last_coordinates": [round(rng.uniform(-90, 90), 4), round(rng.uniform(-180, 180), 4)],
        "gender": rng.choice(["F", "M", "O"]),
        "total_revenue": round(rng.uniform(0, 500), 2),
        "attributed_campaign": "spring",
        "attributed_source": "search",
        "attributed_adgroup": "group-1",
        "attributed_ad": "ad-7",
        "custom_attributes": {"plan": rng.choice(["free", "pro"]), "visits": rng.randint(0, 999)},
        "custom_events": [{"name": "played", "first": "2020-07-10", "last": "2020-08-01", "count": rng.randint(1, 99)}],
        "purchases": [{"name": "premium", "first": "2020-07-11", "last": "2020-08-11", "count": rng.randint(1, 9)}],
        "devices": [
            {
                "model": rng.choice(["Pixel 8", "iPhone 15"]),
                "os": "Android 14",
                "carrier": None,
                "idfv": None,
                "idfa": None,
                "device_id": f"{rng.getrandbits(64):016x}",
                "google_ad_id": f"{rng.getrandbits(64):016x}",
                "roku_ad_id": None,
                "ad_tracking_enabled": True,
            }
        ],
        "apps": [
            {
                "name": "Player",
                "platform": "Android",
                "version": "3.29.0",
                "sessions": rng.randint(1, 2000),
                "first_used": "2020-07-10",
                "last_used": "2020-08-01",
            }
        ],
    }


def write_export(path: Path, users: int, output_format: str) -> int:
    """Write an export file as Braze does (zip with one .json member, or .json.gz); return its NDJSON bytes."""
    rng = random.Random(users)
    raw = 0
    if output_format == "gzip":
        with gzip.open(path, "wb", compresslevel=6) as out:
            for n in range(users):
                line = (json.dumps(_user(n, rng), ensure_ascii=False) + "\n").encode()
                raw += len(line)
                out.write(line)
        return raw
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("users.json", "w") as out,
    ):
        for n in range(users):
            line = (json.dumps(_user(n, rng), ensure_ascii=False) + "\n").encode()
            raw += len(line)
            out.write(line)
    return raw


class _FileBody:
    """A GetObject body streaming from a file on disk, as botocore's StreamingBody streams a socket."""

    def __init__(self, path: Path, offset: int) -> None:
        self._file = path.open("rb")
        self._file.seek(offset)

    def read(self, amount: int | None = None) -> bytes:
        return self._file.read(-1 if amount is None else amount)

    def close(self) -> None:
        self._file.close()


class StubS3:
    """The S3 calls the copier makes; uploads are read in chunks, counted and dropped."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.uploaded = 0
        self.gets = 0

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"ContentLength": self._path.stat().st_size}

    def get_object(self, Bucket: str, Key: str, Range: str) -> dict[str, Any]:
        self.gets += 1
        return {"Body": _FileBody(self._path, int(Range.removeprefix("bytes=").split("-")[0]))}

    def copy(self, CopySource: dict[str, str], Bucket: str, Key: str) -> None:
        pass  # server-side in S3: no bytes pass through the function

    def _drain(self, body: Any) -> None:
        while chunk := body.read(64 * 1024):  # as an HTTP client sends a file: in small blocks
            self.uploaded += len(chunk)

    def put_object(self, Bucket: str, Key: str, Body: Any, **kwargs: Any) -> dict[str, Any]:
        self._drain(Body)
        return {}

    def create_multipart_upload(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:
        return {"UploadId": "bench"}

    def upload_part(self, Body: Any, PartNumber: int, **kwargs: Any) -> dict[str, Any]:
        self._drain(Body)
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        return {}


def copy_once(path: Path, users: int) -> tuple[float, int, int]:
    """One copy task through the copier's own code; (seconds, users written, compressed bytes out)."""
    from braze_forwarder import aws
    from braze_forwarder.config import ExportCopierSettings
    from braze_forwarder.exports import copier, jobs, tasks

    config = ExportCopierSettings(export_jobs_table="bench", lake_bucket="lake", braze_export_bucket="exports")
    job = jobs.Job(
        job_id="gcg-bench",
        status=jobs.COPYING,
        token_hash="",
        requested_at="2026-11-22T06:00:00.000Z",
        export_date="2026-11-22",
        fields=(),
        output_format="gzip",
        expires_at=0,
        object_prefix="bench",
    )
    task = tasks.CopyTask("gcg-bench", "file", 0, key=f"segment-export/s/2026-11-22/bench/{path.name}")
    s3 = StubS3(path)
    with mock.patch.object(aws, "client", return_value=s3):
        start = time.perf_counter()
        record = copier._copy(config, job, task)
        seconds = time.perf_counter() - start
    assert record.status == jobs.COPIED and record.users == users, record
    return seconds, record.users, s3.uploaded


def peak_bytes(path: Path, users: int) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        copy_once(path, users)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run() -> list[list[str]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for output_format in ("gzip", "zip"):
            baseline = None
            for users in SIZES:
                path = Path(folder) / f"export-{users}.{'json.gz' if output_format == 'gzip' else 'zip'}"
                raw = write_export(path, users, output_format)
                copy_once(path, users)  # warm-up: imports, settings, first allocations
                peak = peak_bytes(path, users)
                baseline = baseline or peak
                seconds = min(copy_once(path, users)[0] for _ in range(2 if users > 10_000 else 5))
                rows.append(
                    [
                        output_format,
                        f"{users:,}",
                        f"{path.stat().st_size / 2**20:,.1f}",
                        f"{raw / 2**20:,.1f}",
                        f"{peak / 2**20:,.2f}",
                        f"{peak / baseline:.2f}",
                        f"{users / seconds:,.0f}",
                        f"{raw / 2**20 / seconds:,.1f}",
                    ]
                )
                os.remove(path)
    return rows


def main() -> None:
    print_table(
        "Export copier: one export file into the lake (S3 stubbed)",
        ["format", "users", "file MiB", "NDJSON MiB", "peak MiB", "vs 5,000", "users/s", "NDJSON MiB/s"],
        run(),
        "tracemalloc peak of one copy; best of 5 (2 for 200,000) untraced runs; target: 200,000 vs 5,000 < 1.3",
    )


if __name__ == "__main__":
    main()

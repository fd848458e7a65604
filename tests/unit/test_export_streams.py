"""The copier's streaming pieces against an in-memory S3 (exports/streams.py)."""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from typing import Any

import pytest

from braze_forwarder.exports.streams import CorruptFile, GzipPartWriter, S3ObjectReader, buffered, export_lines


class MemoryS3:
    """The S3 calls streams.py makes, on bytes held here; counts GETs and keeps multipart state."""

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        self.objects = dict(objects or {})
        self.gets = 0
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.aborted: list[str] = []

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"ContentLength": len(self.objects[Key])}

    def get_object(self, Bucket: str, Key: str, Range: str) -> dict[str, Any]:
        self.gets += 1
        start = int(Range.removeprefix("bytes=").rstrip("-"))
        return {"Body": io.BytesIO(self.objects[Key][start:])}

    def put_object(self, Bucket: str, Key: str, Body: Any, **kwargs: Any) -> None:
        self.objects[Key] = Body.read()

    def create_multipart_upload(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, str]:
        upload_id = f"upload-{len(self.uploads)}"
        self.uploads[upload_id] = {}
        return {"UploadId": upload_id}

    def upload_part(self, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: Any) -> dict[str, str]:
        self.uploads[UploadId][PartNumber] = Body.read()
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, Bucket: str, Key: str, UploadId: str, MultipartUpload: Any) -> None:
        numbers = [part["PartNumber"] for part in MultipartUpload["Parts"]]
        assert numbers == sorted(self.uploads[UploadId])
        parts = self.uploads.pop(UploadId)
        self.objects[Key] = b"".join(parts[n] for n in numbers)

    def abort_multipart_upload(self, Bucket: str, Key: str, UploadId: str) -> None:
        self.aborted.append(UploadId)
        self.uploads.pop(UploadId)


def user_lines(count: int, start: int = 0) -> list[bytes]:
    return [
        json.dumps({"external_id": f"u{n}", "pad": os.urandom(64).hex()}).encode() for n in range(start, start + count)
    ]


def test_a_zip_of_several_members_is_read_with_a_few_ranged_gets():
    first, second = user_lines(300), user_lines(200, 300)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("a.json", b"\n".join(first) + b"\n")
        zipped.writestr("dir/", b"")
        zipped.writestr("dir/b.json", b"\r\n".join(second))  # CRLF, no final line break
    s3 = MemoryS3({"k": archive.getvalue()})

    with buffered(S3ObjectReader(s3, "bucket", "k")) as stream:
        read = list(export_lines(stream, 1024 * 1024))

    assert read == first + second
    assert s3.gets <= 6  # end of central directory, central directory, one run per member


def test_a_multi_member_gzip_is_one_stream():
    lines = user_lines(5)
    data = gzip.compress(b"\n".join(lines[:3]) + b"\n") + gzip.compress(b"\n".join(lines[3:]))
    s3 = MemoryS3({"k": data})

    with buffered(S3ObjectReader(s3, "bucket", "k", size=len(data))) as stream:
        assert list(export_lines(stream, 1024 * 1024)) == lines
    assert s3.gets == 1  # read straight through


def test_a_line_over_the_cap_is_a_damaged_file():
    data = gzip.compress(b'{"a": "' + b"x" * 5000 + b'"}\n')
    with pytest.raises(CorruptFile, match="longer than 1024 bytes"):
        list(export_lines(io.BytesIO(data), 1024))


def test_a_truncated_object_is_a_transfer_problem_not_a_damaged_file():
    from braze_forwarder.exports.streams import SourceTruncated

    s3 = MemoryS3({"k": gzip.compress(b"\n".join(user_lines(50)))})
    reader = S3ObjectReader(s3, "bucket", "k", size=len(s3.objects["k"]) + 100)  # the listing said more
    with pytest.raises(SourceTruncated), buffered(reader) as stream:
        list(export_lines(stream, 1024 * 1024))


def test_small_output_is_one_put_and_large_output_a_multipart_upload_in_order():
    s3 = MemoryS3()
    few = user_lines(10)
    with GzipPartWriter(s3, "lake", "small.json.gz", part_bytes=5 * 1024 * 1024) as writer:
        for line in few:
            writer.write_line(line)
    assert gzip.decompress(s3.objects["small.json.gz"]).splitlines() == few
    assert writer.bytes == len(s3.objects["small.json.gz"]) and writer.lines == 10

    many = user_lines(6000)  # ~0.8 MB of incompressible hex: several 256 KiB parts
    with GzipPartWriter(s3, "lake", "large.json.gz", part_bytes=256 * 1024) as writer:
        for line in many:
            writer.write_line(line)
    assert gzip.decompress(s3.objects["large.json.gz"]).splitlines() == many
    assert writer.bytes == len(s3.objects["large.json.gz"]) and s3.uploads == {}


def test_a_failure_while_writing_aborts_the_multipart_upload_and_writes_nothing():
    s3 = MemoryS3()
    with pytest.raises(CorruptFile), GzipPartWriter(s3, "lake", "part.json.gz", part_bytes=64 * 1024) as writer:
        for line in user_lines(3000):
            writer.write_line(line)
        raise CorruptFile("line 3001 is not JSON")
    assert s3.aborted == ["upload-0"] and "part.json.gz" not in s3.objects


def test_the_same_lines_compress_to_the_same_bytes():
    # A retried task rewrites its part with identical bytes (the gzip header carries no time).
    outputs = []
    for _ in range(2):
        s3 = MemoryS3()
        with GzipPartWriter(s3, "lake", "p", part_bytes=5 * 1024 * 1024) as writer:
            for _ in range(5):
                writer.write_line(b'{"x": 1}')
        outputs.append(s3.objects["p"])
    assert outputs[0] == outputs[1]

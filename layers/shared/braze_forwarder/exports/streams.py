"""Streaming an export file from zip or gzip to gzip NDJSON, in constant memory.

Reading: `S3ObjectReader` (braze_forwarder.s3_stream, shared with imports) is a seekable file over
an S3 object that never holds the object: each run of sequential reads is one streamed GET from the
current offset, and a seek elsewhere starts another. gzip is read straight through (one GET);
zipfile reads the central directory at the end and then each member in order (a handful of GETs). A
downloaded file (url mode) is a file on /tmp and needs none of this.

Converting: `export_lines` yields one JSON user object per line, from every member of a zip, from
a gzip (multi-member too) or from plain NDJSON, recognised by their first bytes rather than the
key's extension. Each line must be a JSON object; anything else — a damaged archive, a CRC
mismatch, a truncated stream, a line that is not a JSON object, a line over the line cap — raises
`CorruptFile`, which the copier records as a permanent failure of that file.

Writing: `GzipPartWriter` compresses as lines arrive and spools the compressed bytes to a
temporary file; every `part_bytes` it sends them as one part of an S3 multipart upload. Spooling to
/tmp rather than memory is what keeps memory flat: a multipart part is 5 MiB at least, and
holding it in memory would make a large file's peak several times a small one's.
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

from braze_forwarder.s3_stream import S3ObjectReader, SourceTruncated, buffered

_COMPRESS_BATCH_BYTES = 256 * 1024
# One decoder for every line: json.loads would also sniff each line's encoding (Braze writes UTF-8).
_DECODER = json.JSONDecoder()
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib emits a gzip member (header with mtime 0: identical bytes on a retry)

__all__ = ["CorruptFile", "GzipPartWriter", "S3ObjectReader", "SourceTruncated", "buffered", "export_lines"]


class CorruptFile(Exception):
    """The export file cannot be read as zip or gzip of newline-delimited JSON objects."""


def export_lines(source: IO[bytes], max_line_bytes: int) -> Iterator[bytes]:
    """Each JSON object line of the export file (without its line break); CorruptFile if it is damaged."""
    head = source.read(4)
    source.seek(0)
    try:
        if head[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=source, mode="rb") as stream:
                yield from _lines(stream, max_line_bytes, "the gzip stream")
        elif head in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip with members, or an empty zip
            yield from _zip_lines(source, max_line_bytes)
        elif head.lstrip()[:1] in (b"{", b""):
            yield from _lines(source, max_line_bytes, "the file")
        else:
            raise CorruptFile("the file is neither zip nor gzip nor newline-delimited JSON")
    except (zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise CorruptFile(f"the archive is damaged: {type(exc).__name__}: {_short(exc)}") from None


def _zip_lines(source: IO[bytes], max_line_bytes: int) -> Iterator[bytes]:
    with zipfile.ZipFile(source) as archive:
        for member in archive.infolist():
            if member.is_dir():
                continue
            if member.flag_bits & 0x1:
                raise CorruptFile(f"zip member {member.filename!r} is encrypted")
            with archive.open(member) as stream:
                yield from _lines(stream, max_line_bytes, f"zip member {member.filename!r}")


def _lines(stream: IO[bytes] | io.BufferedIOBase, max_line_bytes: int, where: str) -> Iterator[bytes]:
    number = 0
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            raise CorruptFile(f"line {number} of {where} is longer than {max_line_bytes} bytes")
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            value = _DECODER.decode(line.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError included
            raise CorruptFile(f"line {number} of {where} is not JSON: {_short(exc)}") from None
        if not isinstance(value, dict):
            raise CorruptFile(f"line {number} of {where} is not a JSON object")
        yield line


def _short(exc: BaseException) -> str:
    return str(exc)[:200]


class GzipPartWriter:
    """Gzip NDJSON into one S3 object: a single PUT when small, a multipart upload when not.

    Use as a context manager; leaving it with an exception aborts the multipart upload, so a
    failed copy leaves no half-written part behind (the lifecycle rule also cleans up after a crash).
    """

    def __init__(self, s3: Any, bucket: str, key: str, part_bytes: int) -> None:
        self._s3, self._bucket, self._key, self._part_bytes = s3, bucket, key, part_bytes
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, _GZIP_WBITS)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.lines = 0
        self.bytes = 0  # compressed bytes written to S3

    def __enter__(self) -> GzipPartWriter:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        try:
            if kind is None:
                self._finish()
            elif self._upload_id is not None:
                self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        finally:
            self._spool.close()

    def write_line(self, line: bytes) -> None:
        self._pending.append(line)
        self._pending.append(b"\n")
        self._pending_bytes += len(line) + 1
        self.lines += 1
        if self._pending_bytes >= _COMPRESS_BATCH_BYTES:
            self._compress()

    def _compress(self) -> None:
        if self._pending:
            self._spool.write(self._compressor.compress(b"".join(self._pending)))
            self._pending.clear()
            self._pending_bytes = 0
        if self._spool.tell() >= self._part_bytes:
            self._send_part()

    def _send_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType="application/gzip"
            )["UploadId"]
        size = self._spool.tell()
        self._spool.seek(0)
        number = len(self._parts) + 1
        answer = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=self._spool,
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.bytes += size
        self._spool.seek(0)
        self._spool.truncate()

    def _finish(self) -> None:
        self._compress()
        self._spool.write(self._compressor.flush())
        if self._upload_id is None:
            size = self._spool.tell()
            self._spool.seek(0)
            self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=self._spool, ContentType="application/gzip")
            self.bytes += size
            return
        if self._spool.tell():
            self._send_part()
        self._s3.complete_multipart_upload(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )

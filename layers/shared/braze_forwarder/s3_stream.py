"""Reading an S3 object as a seekable stream without ever holding it (the export copier and imports).

`S3ObjectReader` never holds the object: each run of sequential reads is one streamed GET from the
current offset, and a seek elsewhere starts another. With `etag`, every GET carries If-Match, so an
object replaced while it is being read fails the read (412) instead of mixing two versions: a
resumed import must read the very bytes its first attempt read.
"""

from __future__ import annotations

import io
from typing import Any

_READ_BUFFER_BYTES = 64 * 1024


class SourceTruncated(Exception):
    """The object ended before its announced size: a transfer problem, worth another try."""


class S3ObjectReader(io.RawIOBase):
    """A read-only, seekable view of one S3 object, streamed with ranged GETs."""

    def __init__(self, s3: Any, bucket: str, key: str, size: int | None = None, etag: str | None = None) -> None:
        super().__init__()
        self._s3, self._bucket, self._key = s3, bucket, key
        self.size = size if size is not None else int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        self._etag = etag
        self._position = 0
        self._body: Any = None
        self._body_position = -1
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self.size or len(buffer) == 0:
            return 0
        if self._body is None or self._body_position != self._position:
            self._close_body()
            request = {"Bucket": self._bucket, "Key": self._key, "Range": f"bytes={self._position}-"}
            if self._etag is not None:
                request["IfMatch"] = self._etag
            response = self._s3.get_object(**request)
            self._body, self._body_position = response["Body"], self._position
            self.requests += 1
        data = self._body.read(min(len(buffer), self.size - self._position))
        if not data:
            raise SourceTruncated(f"s3://{self._bucket}/{self._key} ended at byte {self._position} of {self.size}")
        count = len(data)
        buffer[:count] = data
        self._position += count
        self._body_position += count
        return count

    def close(self) -> None:
        self._close_body()
        super().close()

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()  # an unfinished stream's connection is dropped, not returned to the pool
            self._body = None


def buffered(raw: io.RawIOBase) -> io.BufferedReader:
    return io.BufferedReader(raw, buffer_size=_READ_BUFFER_BYTES)

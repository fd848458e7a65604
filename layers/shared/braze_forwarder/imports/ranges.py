"""Splitting a file into byte ranges, and reading the lines a range owns.

The split is by bytes alone, without reading the file: ranges of `range_bytes` from the first data
byte (after a CSV header) to the end. A range owns the lines that START in it, as Hadoop's splits
do: its reader steps back one byte and skips to the end of that line — if the byte before the range
is a line break the skipped "line" is empty and the range's first line starts at its first byte —
and reads on past its end to finish the last line it owns. So every line belongs to exactly one
range, whatever the byte boundaries cut through.

That holds when a line break always ends a row: true of NDJSON (JSON escapes line breaks in
strings), and of CSV only without quoted line breaks. A CSV value that opens a quote and does not
close it on its line is therefore refused as a malformed row (rows.csv_fields), in every range
alike: processing CSV as one range would allow quoted breaks but give up the fan-out, and a
byte-split reader cannot tell a quoted break from a row's end without reading everything before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO


@dataclass(frozen=True)
class Line:
    offset: int  # where the line starts in the file
    end: int  # the first byte after it (after its line break)
    text: bytes | None  # without its line break; None when it is longer than the limit
    number: int  # in the range, from 1 (blank lines counted)


def plan(data_start: int, size: int, range_bytes: int) -> list[tuple[int, int]]:
    """[start, end) byte ranges covering data_start..size; one empty range for a file with no data."""
    if range_bytes < 1:
        raise ValueError("range_bytes must be positive")
    if size <= data_start:
        return [(data_start, data_start)]
    return [(start, min(start + range_bytes, size)) for start in range(data_start, size, range_bytes)]


def align(stream: IO[bytes], start: int, max_line_bytes: int) -> int:
    """Position `stream` at the first line that starts at or after `start`; return that offset.

    Offset 0 is a line start. Elsewhere the byte before `start` is read: the rest of its line (just
    the break, when `start` begins a line) belongs to the range before.
    """
    if start == 0:
        stream.seek(0)
        return 0
    stream.seek(start - 1)
    position = start - 1
    while True:
        piece = stream.readline(max_line_bytes + 1)
        position += len(piece)
        if not piece or piece.endswith(b"\n"):
            return position


def lines(stream: IO[bytes], position: int, end: int, max_line_bytes: int, numbered_from: int = 0) -> Iterator[Line]:
    """Each line starting in [position, end), `stream` being at `position`, a line start."""
    number = numbered_from
    while position < end:
        piece = stream.readline(max_line_bytes + 1)
        if not piece:
            return
        start = position
        position += len(piece)
        number += 1
        if len(piece) > max_line_bytes and not piece.endswith(b"\n"):
            while piece and not piece.endswith(b"\n"):  # skip the rest of the long line, held nowhere
                piece = stream.readline(max_line_bytes + 1)
                position += len(piece)
            yield Line(start, position, None, number)
            continue
        yield Line(start, position, piece.rstrip(b"\r\n"), number)

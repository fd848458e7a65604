"""Byte ranges own the lines that start in them: every line read once, wherever the cuts fall."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braze_forwarder import rows
from braze_forwarder.imports import ranges


def read_all(data: bytes, data_start: int, range_bytes: int, max_line_bytes: int = 1 << 20) -> list[bytes | None]:
    found: list[bytes | None] = []
    for start, end in ranges.plan(data_start, len(data), range_bytes):
        stream = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
        position = ranges.align(stream, start, max_line_bytes)
        found += [line.text for line in ranges.lines(stream, position, end, max_line_bytes)]
    return found


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=60),
    range_bytes=st.integers(min_value=1, max_value=200),
    trailing_break=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_every_line_belongs_to_exactly_one_range_wherever_the_cuts_fall(lines, range_bytes, trailing_break):
    data = b"\n".join(lines) + (b"\n" if trailing_break and lines else b"")
    expected = [line.rstrip(b"\r") for line in data.split(b"\n")]
    if data.endswith(b"\n") or not data:
        expected = expected[:-1]
    assert read_all(data, 0, range_bytes) == expected


def test_a_csv_header_is_read_once_and_the_ranges_start_after_it():
    data = b"external_id,plan\nu1,pro\nu2,free\nu3,pro\n"
    header_end = data.index(b"\n") + 1
    for range_bytes in range(1, len(data)):
        assert read_all(data, header_end, range_bytes) == [b"u1,pro", b"u2,free", b"u3,pro"]


def test_the_ranges_cover_the_data_and_an_empty_file_has_one_empty_range():
    assert ranges.plan(10, 35, 10) == [(10, 20), (20, 30), (30, 35)]
    assert ranges.plan(7, 7, 10) == [(7, 7)]
    with pytest.raises(ValueError):
        ranges.plan(0, 10, 0)


def test_a_line_over_the_limit_is_reported_without_its_text_and_the_next_line_is_read():
    data = b"short\n" + b"x" * 100 + b"\nafter\n"
    stream = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    found = list(ranges.lines(stream, 0, len(data), 16))
    assert [(line.text, line.number) for line in found] == [(b"short", 1), (None, 2), (b"after", 3)]
    assert found[1].offset == 6 and found[2].offset == 107


def test_a_quoted_line_break_in_csv_is_refused_not_joined_with_the_next_line():
    header = rows.csv_header("external_id,note\n")
    assert rows.csv_row(header, 'u1,"multi') == (None, _quote_reason())
    assert rows.csv_row(header, 'u2,"quoted, with comma"') == (
        {"external_id": "u2", "note": "quoted, with comma"},
        None,
    )
    assert rows.csv_row(header, "u3,a,b") == (None, "more values than the header has columns")
    assert rows.csv_row(header, "u4") == ({"external_id": "u4"}, None)


def _quote_reason() -> str:
    return "a quoted value does not close on its line (CSV rows must be one line each)"


def test_rows_map_as_the_backfill_maps_them():
    mapping = rows.parse_map(["user=external_id", "plan=properties.plan", "secret="])
    obj = rows.to_object({"user": "u1", "plan": "pro", "secret": "x", "price": "9.5"}, mapping, from_csv=True)
    assert obj == {"external_id": "u1", "properties": {"plan": "pro"}, "price": 9.5}
    assert rows.to_object({"quantity": "two"}, {}, from_csv=True) == {"quantity": "two"}  # Braze's rule names it
    with pytest.raises(rows.MappingError):
        rows.check_mapping({"a": "plan", "b": "plan.tier"})
    with pytest.raises(rows.MappingError):
        rows.parse_map(["=x"])
    assert rows.ndjson_row('{"external_id": "u1"}') == ({"external_id": "u1"}, None)
    assert rows.ndjson_row("[1]") == (None, "not a JSON object")
    assert rows.ndjson_row("{") == (None, "not a JSON line")

"""A file's rows as Braze objects: one mapping for the CLI's `backfill` and the stack's imports.

Rows come from CSV (a header line names the columns) or NDJSON (one JSON object a line). Columns are
named as Braze's fields, or renamed with a mapping (`column=field`; `column=` drops the column; a
field may be nested, `properties.plan`). CSV text in the fields Braze wants as numbers (`price`,
`quantity`) is converted when it is a number and left as text otherwise, so Braze's own rule
(braze/validation.py) names the problem.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Mapping
from typing import Any

# What each row is → the /users/track array it goes into.
ARRAYS = {"users": "attributes", "events": "events", "purchases": "purchases"}
NUMBERS: dict[str, type] = {"price": float, "quantity": int}  # CSV text that Braze wants as numbers
_DECODER = json.JSONDecoder()


class MappingError(ValueError):
    """A mapping that cannot be applied: malformed, or nesting under a field that is not an object."""


def parse_map(pairs: list[str]) -> dict[str, str]:
    """`column=field` pairs (`column=` drops the column) as a mapping; MappingError if malformed."""
    mapping = {}
    for pair in pairs:
        column, equals, name = pair.partition("=")
        if not equals or not column:
            raise MappingError(f"{pair}: expected COLUMN=FIELD (or COLUMN= to drop the column)")
        mapping[column] = name
    return mapping


def check_mapping(mapping: Mapping[str, str]) -> None:
    """MappingError when one field would nest under another mapped field (`a` and `a.b`)."""
    fields = {name for name in mapping.values() if name}
    for name in fields:
        parents = name.split(".")[:-1]
        for depth in range(1, len(parents) + 1):
            if ".".join(parents[:depth]) in fields:
                raise MappingError(f"{name} nests under a field that is not an object")


def to_object(row: Mapping[str, Any], mapping: Mapping[str, str], from_csv: bool) -> dict[str, Any]:
    """The Braze object of one row; MappingError when a field nests under a value that is not an object."""
    obj: dict[str, Any] = {}
    for column, value in row.items():
        name = mapping.get(column, column)
        if not name:
            continue
        if from_csv and name in NUMBERS:
            with contextlib.suppress(ValueError):
                value = NUMBERS[name](value)
        *parents, last = name.split(".")
        place = obj
        for parent in parents:
            place = place.setdefault(parent, {})
            if not isinstance(place, dict):
                raise MappingError(f"{name} nests under a field that is not an object")
        place[last] = value
    return obj


def csv_header(line: str) -> list[str]:
    """The column names of a CSV header line; ValueError when it is not one."""
    columns = csv_fields(line)
    if not columns or any(not name for name in columns):
        raise ValueError("the CSV header names no columns, or an empty one")
    if len(set(columns)) != len(columns):
        raise ValueError("the CSV header names a column twice")
    return columns


def csv_fields(line: str) -> list[str]:
    """One CSV line's fields. A quoted value must close on its line: a quoted line break is refused
    (ValueError), because a file split by bytes cannot tell a quoted break from a row's end."""
    try:
        return next(csv.reader([line.rstrip("\r\n")], strict=True), [])
    except csv.Error:
        raise ValueError("a quoted value does not close on its line (CSV rows must be one line each)") from None


def csv_row(header: list[str], line: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the row's non-empty values by column, None) or (None, why the line is not a row)."""
    try:
        fields = csv_fields(line)
    except ValueError as exc:
        return None, str(exc)
    if len(fields) > len(header):
        return None, "more values than the header has columns"
    return {name: value for name, value in zip(header, fields, strict=False) if value != ""}, None


def ndjson_row(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the line's JSON object, None) or (None, why it is not one)."""
    try:
        value = _DECODER.decode(line.strip())
    except (ValueError, RecursionError):
        return None, "not a JSON line"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    return value, None

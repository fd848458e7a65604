"""Duplicate keys: the ingest path's colon count must agree with the strict parse on every body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braze_forwarder import queue, request_body
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest import service
from braze_forwarder.request_body import parse_json, parse_json_deferring_keys


class Pairs(list):
    """A JSON object as written: its (key, spelling, value) entries, repeats allowed."""


def _spelled(key: str, spelling: str) -> str:
    if spelling == "escaped":  # every character as \uXXXX: same key, other text (and ':' as \u003a)
        return '"' + "".join(f"\\u{ord(c):04x}" for c in key) + '"'
    return json.dumps(key, ensure_ascii=spelling == "ascii")


def _text(value: Any) -> str:
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{_spelled(k, s)} : {_text(v)}" for k, s, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


# A small alphabet, so keys repeat often and strings hold colons, quotes and non-ASCII.
small_text = st.text(alphabet='ab:"\\é\u2028', max_size=4)
keys = st.tuples(small_text, st.sampled_from(["plain", "ascii", "escaped"]))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), small_text
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(st.tuples(keys, children).map(lambda e: (*e[0], e[1])), max_size=4).map(Pairs)
    ),
    max_leaves=25,
)


def _strict_verdict(data: bytes) -> str | None:
    try:
        parse_json(data)
    except RequestRejected as rejected:
        return rejected.type
    return None


@settings(max_examples=400, deadline=None)
@given(values)
def test_the_colon_count_finds_exactly_the_repeats_the_strict_parse_finds(value):
    data = _text(value).encode()
    deferred = parse_json_deferring_keys(data)

    try:
        deferred.require_unique_keys(queue.encode_object(deferred.document).count(":"))
        verdict = None
    except RequestRejected as rejected:
        verdict = rejected.type

    assert verdict == _strict_verdict(data)


def _event(i: int, **extra: Any) -> dict[str, Any]:
    return {"external_id": f"u:{i}", "name": "a:b", "time": "2026-11-22T07:00:00Z", **extra}


@pytest.mark.parametrize(
    "document",
    [
        {"events": [_event(1)]},
        {"api_key": "rest:key", "attributes": [{"external_id": "u", "note": "x:y"}], "events": [_event(2)]},
        {"events": [_event(3), {"external_id": "u"}, 7, "a:b", None], "purchases": [], "attributes": None},
        {"events": [_event(4, properties={"nested": {"a": [{"b": "c:d"}]}})]},
    ],
)
def test_a_request_without_repeats_is_not_parsed_twice(monkeypatch, document):
    # The count is the fast path; falling back to the strict parse would still answer right, only
    # slower, so this is the test that notices a count that stopped adding up.
    def strict_parse(_data: bytes) -> Any:
        raise AssertionError("the strict parse ran: the colon count did not add up")

    monkeypatch.setattr(request_body, "parse_json", strict_parse)
    monkeypatch.setattr(service.queue, "send_messages", lambda _url, _messages, **_options: None)

    answer = service.accept(
        service.TRACK,
        parse_json_deferring_keys(json.dumps(document, indent=1, ensure_ascii=False).encode()),
        client="tests",
        correlation_id=None,
        queue_url="unused",
        max_message_bytes=256 * 1024,
        max_json_depth=20,
    )

    assert answer.status == 202

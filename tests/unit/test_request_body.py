"""Reading a body: the ingest path's colon count must agree with the strict parse on every body, and
msgspec (compiled_json) must read exactly what the standard parser reads, or leave the body to it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braze_forwarder import compiled_json, queue, request_body
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

    encode = compiled_json.encode_objects if deferred.compiled else lambda objects: map(queue.encode_object, objects)
    try:
        deferred.require_unique_keys("".join(encode([deferred.document])).count(":"))
        verdict = None
    except RequestRejected as rejected:
        verdict = rejected.type

    assert verdict == _strict_verdict(data)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, an int never equal to a float (1 == 1.0 in Python)."""
    return json.dumps(a, ensure_ascii=True) == json.dumps(b, ensure_ascii=True)


def _standard_read(data: bytes) -> tuple[bool, Any]:
    """What the ingest read before msgspec: the standard parser, last of repeated keys kept."""
    try:
        return True, json.loads(data.decode("utf-8"), parse_constant=float.__call__)
    except (ValueError, RecursionError):
        return False, None


damaged = st.tuples(values, st.integers(min_value=0, max_value=60), st.binary(max_size=3), st.booleans())


@settings(max_examples=600, deadline=None)
@given(damaged)
def test_msgspec_reads_only_what_the_standard_parser_reads_and_reads_it_the_same(case):
    value, at, extra, replace = case
    text = _text(value).encode()
    data = text[:at] + extra + text[at + (len(extra) if replace else 0) :]

    read, document = compiled_json.decode(data)

    if read:  # whatever msgspec takes, the standard parser takes too, as the same document
        standard, expected = _standard_read(data)
        assert standard and _same(document, expected)
        assert not any(isinstance(x, float) and x != x for x in [document])  # no NaN
        assert b"NaN" not in data or not read or "NaN" in json.dumps(document)


@settings(max_examples=400, deadline=None)
@given(values)
def test_msgspecs_encoding_is_the_queue_encodings_json_in_ascii_with_as_many_colons(value):
    read, document = compiled_json.decode(_text(value).encode())
    if not read:
        return  # the standard path's body: encoded by queue.encode_object, as before
    objects = document if isinstance(document, list) else [document]

    for obj, encoded in zip(objects, compiled_json.encode_objects(objects), strict=True):
        assert encoded.isascii()
        assert _same(json.loads(encoded), obj)
        assert encoded.count(":") == queue.encode_object(obj).count(":")  # what DeferredKeysBody counts


def _accept(body: request_body.DeferredKeysBody) -> service.Answer:
    """The ingest's accept step on a parsed body, queueing nowhere (send_messages patched by the caller)."""
    return service.accept(
        service.TRACK,
        body,
        client="tests",
        correlation_id=None,
        queue_url="unused",
        max_message_bytes=256 * 1024,
        max_json_depth=20,
    )


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        (
            b'{"events":[{"external_id":"u","name":"e","time":"2026-11-22T07:00:00Z","properties":{"v":1e400}}]}',
            "invalid_number",
        ),
        (
            b'{"events":[{"external_id":"u","name":"e","time":"2026-11-22T07:00:00Z","properties":{"v":NaN}}]}',
            "invalid_number",
        ),
        (b'{"events":[' + b"[" * 5000 + b"]" * 5000 + b"]}", "nesting_too_deep"),
        (b'{"events":[{"external_id":"u","external_id":"v"}]}', "duplicate_key"),
        (b'{"events":[{"external_id":"' + bytes([0xFF]) + b'"}]}', "invalid_encoding"),
    ],
)
def test_bodies_the_standard_parser_refused_get_the_answers_they_always_got(monkeypatch, body, answer):
    monkeypatch.setattr(service.queue, "send_messages", lambda _url, _messages, **_options: None)
    with pytest.raises(RequestRejected) as rejected:
        _accept(parse_json_deferring_keys(body))
    assert rejected.value.type == answer


def test_a_lone_surrogate_msgspec_refuses_is_read_and_queued_escaped_as_before(monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(service.queue, "send_messages", lambda _url, messages, **_options: sent.extend(messages))
    body = b'{"events":[{"external_id":"u","name":"e\\ud800","time":"2026-11-22T07:00:00Z"}]}'

    parsed = parse_json_deferring_keys(body)
    answer = _accept(parsed)

    assert not parsed.compiled and answer.status == 202
    assert "\\ud800" in sent[0]


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

    answer = _accept(parse_json_deferring_keys(json.dumps(document, indent=1, ensure_ascii=False).encode()))

    assert answer.status == 202

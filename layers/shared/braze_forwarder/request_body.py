"""Reading a request body: size cap, base64, UTF-8 and strict JSON.

Python's json module accepts NaN and Infinity, keeps the last of duplicate keys silently (a parser
differential: Braze or a log reader may see the other value) and raises RecursionError rather
than ValueError on deep nesting. Each of these becomes a 400 here, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from braze_forwarder.http_answers import RequestRejected


class _DuplicateKey(ValueError):
    pass


class _NonFiniteNumber(ValueError):
    pass


def read_body(raw: str | None, is_base64_encoded: bool | None, max_bytes: int) -> bytes:
    """The request body as bytes, base64-decoded when API Gateway encoded it, at most max_bytes."""
    if not raw:
        raise RequestRejected(400, "empty_body", "the request has no body; send a JSON object")
    if is_base64_encoded:
        if len(raw) > (max_bytes + 2) // 3 * 4:
            raise _too_large(max_bytes)
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise RequestRejected(400, "invalid_base64", "the body is marked base64-encoded but is not") from None
    else:
        if len(raw) > max_bytes:  # every character is at least one byte
            raise _too_large(max_bytes)
        data = raw.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return data


def parse_json(data: bytes) -> Any:
    """Parse strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, no pathological nesting."""
    return _parsed(_text(data), _STRICT)


@dataclass(frozen=True, slots=True)
class DeferredKeysBody:
    """A body parsed without the duplicate-key hook, and what it takes to prove it had none.

    The strict parse calls a Python hook for every JSON object, a third of the parse of a
    /users/track body. This one is parsed in C alone and proven free of duplicate keys afterwards
    by counting, at almost no cost, because the ingest path re-encodes every object anyway:

    - in the body, every key is followed by one ':' and every other ':' is inside a string;
    - the compact re-encoding writes one ':' per key it has, and every ':' of a string as itself;
    - JSON keeps the last of repeated keys, so each dropped key takes its ':' with it.

    So the re-encoding has as many ':' as the body exactly when no key was dropped. Two cases do not
    fit the count, and the strict parse decides them: a body that escapes a colon (\\u003a) and a body
    refused for another reason (its answer should name the duplicate, as the strict parse would).
    """

    document: Any
    data: bytes
    colons: int | None  # ':' in the body's text; None when an escaped colon makes the count unreliable
    compiled: bool = False  # read by msgspec (compiled_json): its objects may be encoded by it too

    def require_unique_keys(self, reencoded_colons: int | None = None) -> None:
        """Raise duplicate_key (400) if the body repeats a key in any object.

        ``reencoded_colons`` is the ':' count of re-encoding the whole document compactly, or None
        when the caller has not re-encoded it (then the body is parsed again, strictly).
        """
        if reencoded_colons is None or reencoded_colons != self.colons:
            parse_json(self.data)


def parse_json_deferring_keys(data: bytes) -> DeferredKeysBody:
    """Parse like parse_json, except that duplicate keys are left to DeferredKeysBody.require_unique_keys.

    msgspec first (compiled_json: it refuses whatever the standard parse refuses), the standard
    parser for what msgspec does not take, which answers as it always did."""
    from braze_forwarder import compiled_json  # the ingest's only: other functions never load msgspec

    read, document = compiled_json.decode(data)
    if read:  # valid UTF-8, so the bytes' ':' and escapes are the text's
        return DeferredKeysBody(document, data, None if b"\\u003" in data else data.count(b":"), compiled=True)
    text = _text(data)
    document = _parsed(text, _DEFERRED_KEYS)
    return DeferredKeysBody(document, data, None if "\\u003" in text else text.count(":"))


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected(400, "invalid_encoding", "the body is not valid UTF-8") from None


def _parsed(text: str, decoder: json.JSONDecoder) -> Any:
    try:
        return decoder.decode(text)
    except _DuplicateKey:
        raise RequestRejected(
            400, "duplicate_key", "an object in the body repeats a key; each key may appear once"
        ) from None
    except _NonFiniteNumber:
        raise non_finite_number() from None
    except RecursionError:
        raise RequestRejected(400, "nesting_too_deep", "the body nests arrays or objects too deeply") from None
    except ValueError as exc:
        raise RequestRejected(400, "malformed_json", f"the body is not valid JSON: {_position(exc)}") from None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


def _reject_constant(name: str) -> Any:
    raise _NonFiniteNumber(name)


# Built once: json.loads builds a decoder on every call that passes a hook.
_STRICT = json.JSONDecoder(object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
_DEFERRED_KEYS = json.JSONDecoder(parse_constant=_reject_constant)


def _position(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "a number is too long"  # CPython refuses integers of more than 4,300 digits


def non_finite_number() -> RequestRejected:
    """The answer to NaN, Infinity, or a number json.loads reads as an infinity (1e400): no queue
    message, Braze call or stored answer can carry one."""
    return RequestRejected(
        400,
        "invalid_number",
        "numbers must be finite; NaN, Infinity and numbers past a double's range (such as 1e400) are refused",
    )


def _too_large(max_bytes: int) -> RequestRejected:
    return RequestRejected(
        413, "payload_too_large", f"the body is larger than {max_bytes} bytes; split it into several requests"
    )

"""msgspec's compiled JSON for the ingest's two hot steps, the standard library judging the rest.

Reading a /users/track body and writing each of its objects for the queue are, at 75 objects, a third
of the ingest handler's time, and the standard library's C code spends much of it in per-call and
per-object set-up (`make bench`: 3.4x the JSON floor with it, under 3x with these). Nothing changes
in what is accepted or what is queued:

- `decode` takes only what msgspec reads, and msgspec refuses everything the strict parse refuses
  (malformed JSON, NaN, numbers past a double's range such as 1e400, invalid UTF-8) plus some it
  takes (lone-surrogate escapes, nesting deeper than its own limit). Whatever msgspec refuses is
  parsed by request_body's standard path, which gives the answer, or the document, it always gave.
  Both keep the last of repeated keys: DeferredKeysBody still proves there were none.
- `encode_objects` writes each object as msgspec's compact JSON where that is ASCII, and as
  queue.encode_object's otherwise: text outside ASCII stays \\u-escaped, as SQS needs for some
  characters. Only documents msgspec decoded come here, so no infinity or NaN can reach it (msgspec
  writes those as null). Numbers may be spelled differently (1e16 for 1e+16): the same JSON number.

Loaded by the ingest function only (~4 ms of its cold start, counted in `make bench`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from braze_forwarder.queue import encode_object

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def decode(data: bytes) -> tuple[bool, Any]:
    """(True, the document) if msgspec reads `data`; (False, None) if the standard parser must."""
    try:
        return True, _decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return False, None


def encode_objects(objects: Sequence[Any]) -> list[str]:
    """Each object of a document `decode` read, as compact ASCII JSON (see the module's docstring)."""
    encode = _encoder.encode
    encoded = []
    for obj in objects:
        text = encode(obj)
        encoded.append(text.decode("ascii") if text.isascii() else encode_object(obj))
    return encoded

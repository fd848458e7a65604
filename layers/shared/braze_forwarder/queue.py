"""The queue message envelope, and sending envelopes to SQS.

The envelope is the only contract between the ingest API (producer) and the Braze sender
(consumer); both use this module. A message is JSON, ASCII-escaped (SQS refuses some Unicode,
e.g. lone surrogates), versioned, and carries Braze-shaped objects with the array and index they
had in the original request, so every delivery result can be traced back to its origin.
`received_at` is when the values were true: the API's receipt time, or the provider's event time
for webhooks; the sender orders one user's values by it. `accepted_at` is when the forwarder accepted
the request (the API's clock): the order of deletes, aliases and merges against everything else is
judged by it (user_order.py, docs/ordering.md). An envelope written before it existed has none, and
its `received_at` stands in.

    {"v": 1, "kind": "track", "id": "<uuid>", "source": "<client>", "received_at": "<ISO-8601>",
     "accepted_at": "<ISO-8601>", "correlation_id": "...",
     "items": [{"array": "events", "index": 3, "object": {...}}, ...]}

`"dedupe": true` (absent otherwise) marks an envelope whose id is deterministic — an import's, derived
from (import, range, chunk, n) — so a second copy of it is the same envelope queued twice: the sender
records it in the delivery ledger once it is fully delivered, and skips a copy that finds it there.

Items hold Braze's own objects, exactly as the request had them: for `delete` that is an identifier
(a string in `external_ids` and `braze_ids`, an object in the other arrays).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from braze_forwarder import aws
from braze_forwarder.observability import logger

ENVELOPE_VERSION = 1
Kind = Literal["track", "identify", "delete", "alias", "merge"]
KINDS: tuple[Kind, ...] = ("track", "identify", "delete", "alias", "merge")

SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 1024 * 1024
_SEND_ATTEMPTS = 3


class EnvelopeError(ValueError):
    """A queue message that is not a valid envelope of a version this code understands."""


class QueueUnavailable(RuntimeError):
    """SQS did not accept every message after retries."""

    def __init__(self, message: str, queued: int, total: int, queued_positions: frozenset[int] = frozenset()) -> None:
        super().__init__(message)
        self.queued = queued
        self.total = total
        self.queued_positions = queued_positions  # the bodies SQS did accept, by their place in the list


# One object ready for a message: (array, index, compact ASCII JSON), the array and index being the
# ones it had in the request. A plain tuple: the ingest path makes one per accepted object, and a
# tuple costs a fraction of any class instance.
EncodedItem = tuple[str, int, str]


def _fragments(items: Iterable[EncodedItem]) -> list[str]:
    return [f'{{"array":"{array}","index":{index},"object":{object_json}}}' for array, index, object_json in items]


@dataclass(frozen=True, slots=True)
class Item:
    array: str
    index: int
    object: Any  # a Braze object; for `delete`, an identifier (see the module's docstring)


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: Kind
    id: str
    source: str
    received_at: str
    correlation_id: str | None
    items: tuple[Item, ...]
    accepted_at: str = ""
    dedupe: bool = False  # the id is deterministic: a copy with the same id is the same envelope

    @property
    def order_time(self) -> str:
        """When the forwarder accepted these objects: what deletes, aliases and merges are ordered by."""
        return self.accepted_at or self.received_at


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


# The C encoder json.dumps builds on each call, built once: every object of every request is
# encoded once on the ingest path, and dumps' per-call setup cost as much as the encoding itself.
# No circular-reference markers: the objects come from json.loads and cannot be circular.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)

if _c_make_encoder is None:  # not CPython: json.dumps, with its per-call set-up

    def encode_object(obj: Any) -> str:
        """Compact, ASCII-escaped JSON; NaN and Infinity refused (SQS and Braze both need that)."""
        return json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))

else:
    _encode_chunks = _c_make_encoder(
        None, _refuse, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def encode_object(obj: Any) -> str:
        """Compact, ASCII-escaped JSON; NaN and Infinity refused (SQS and Braze both need that)."""
        return "".join(_encode_chunks(obj, 0))


def utc_now_iso() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def envelope_overhead_bytes(max_index: int) -> int:
    """Bytes one item's wrapper adds to its object, at most (for size-aware splitting)."""
    return len(_fragments([("phone_numbers_to_identify", max_index, "")])[0]) + 1


def build_messages(
    kind: Kind,
    items: Sequence[EncodedItem],
    *,
    source: str,
    correlation_id: str | None,
    max_message_bytes: int,
    received_at: str | None = None,
    accepted_at: str | None = None,
    spans: list[tuple[int, int]] | None = None,
    envelope_id: Callable[[int], str] | None = None,
    dedupe: bool = False,
) -> list[str]:
    """Pack items, in order, into as few envelopes as fit max_message_bytes each.

    The caller guarantees each item fits a message on its own (see max_object_bytes). `spans`, when
    given, receives each message's items as a (start, end) slice of `items`. `accepted_at` defaults
    to now, `received_at` to `accepted_at`. `envelope_id`, when given, names message n (from 0)
    instead of a random id: an import that sends a chunk again after a crash sends envelopes with the
    same ids, so a copy queued twice can be recognised; `dedupe` marks the envelopes so (the sender
    then records each one delivered whole and skips a later copy). Only deterministic ids may be marked.
    """
    accepted_at = accepted_at or utc_now_iso()
    received_at = received_at or accepted_at
    fragments = _fragments(items)
    head = _head(
        kind,
        source,
        received_at,
        correlation_id,
        envelope_id(0) if envelope_id else None,
        accepted_at=accepted_at,
        dedupe=dedupe,
    )
    if len(head) + 2 + sum(map(len, fragments)) + len(fragments) <= max_message_bytes:
        if spans is not None:
            spans.append((0, len(fragments)))
        return [head + ",".join(fragments) + "]}"]  # the usual request: one message
    messages: list[str] = []
    start, count = 0, len(fragments)
    while start < count:
        if messages:
            head = _head(
                kind,
                source,
                received_at,
                correlation_id,
                envelope_id(len(messages)) if envelope_id else None,
                accepted_at=accepted_at,
                dedupe=dedupe,
            )
        size = len(head) + 2 + len(fragments[start]) + 1
        end = start + 1
        while end < count and size + len(fragments[end]) + 1 <= max_message_bytes:
            size += len(fragments[end]) + 1
            end += 1
        messages.append(head + ",".join(fragments[start:end]) + "]}")
        if spans is not None:
            spans.append((start, end))
        start = end
    return messages


# Same lengths as a real envelope id and receipt time: sizing needs no random id or clock.
_SIZING_ID = str(uuid.UUID(int=0))
_SIZING_TIME = "2000-01-01T00:00:00.000Z"


def max_object_bytes(max_message_bytes: int, source: str, correlation_id: str | None, *, dedupe: bool = False) -> int:
    """The largest encoded object that still fits a message of its own."""
    head = _head("identify", source, _SIZING_TIME, correlation_id, _SIZING_ID, accepted_at=_SIZING_TIME, dedupe=dedupe)
    return max_message_bytes - len(head) - 2 - envelope_overhead_bytes(10**9)


def _head(
    kind: Kind,
    source: str,
    received_at: str,
    correlation_id: str | None,
    envelope_id: str | None = None,
    *,
    accepted_at: str,
    dedupe: bool = False,
) -> str:
    meta: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "kind": kind,
        "id": envelope_id or str(uuid.uuid4()),
        "source": source,
        "received_at": received_at,
        "accepted_at": accepted_at,
        "correlation_id": correlation_id,
    }
    if dedupe:  # absent otherwise: envelopes without it read as before, by any version of the sender
        meta["dedupe"] = True
    return encode_object(meta)[:-1] + ',"items":['


def decode(body: str) -> Envelope:
    """Parse one queue message; raise EnvelopeError for anything that is not a v1 envelope."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError("message body is not JSON") from exc
    if not isinstance(data, dict) or data.get("v") != ENVELOPE_VERSION:
        raise EnvelopeError(f"unsupported envelope version {data.get('v') if isinstance(data, dict) else None!r}")
    kind, items = data.get("kind"), data.get("items")
    if kind not in KINDS or not isinstance(items, list) or not isinstance(data.get("id"), str):
        raise EnvelopeError("envelope lacks kind, id or items")
    try:
        decoded = tuple(Item(i["array"], int(i["index"]), i["object"]) for i in items)
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError("envelope item lacks array, index or object") from exc
    return Envelope(
        kind=kind,
        id=data["id"],
        source=str(data.get("source", "")),
        received_at=str(data.get("received_at", "")),
        correlation_id=data.get("correlation_id"),
        items=decoded,
        accepted_at=str(data.get("accepted_at") or ""),
        dedupe=data.get("dedupe") is True,
    )


def send_messages(queue_url: str, bodies: Sequence[str], *, delay_seconds: int = 0) -> None:
    """Send every body with SendMessageBatch; retry what failed; raise QueueUnavailable if SQS refuses.

    SendMessageBatch answers 200 even when entries fail, so each entry's outcome is read. Entries
    SQS reports as the sender's fault are not retried: the same body would fail again.
    `delay_seconds` (0-900) keeps the messages invisible that long: deletes and merges wait behind
    the ordering fence (user_order.py).
    """
    pending = list(enumerate(bodies))
    accepted: set[int] = set()
    for attempt in range(_SEND_ATTEMPTS):
        if attempt:
            time.sleep(0.05 * 2**attempt)
        retryable: list[tuple[int, str]] = []
        for batch in _batches(pending):
            failures = _send_batch(queue_url, batch, delay_seconds)
            failed = {position for position, _, _ in failures}
            accepted.update(position for position, _ in batch if position not in failed)
            if any(sender_fault for _, _, sender_fault in failures):
                break
            retryable.extend((position, body) for position, body, _ in failures)
        else:
            if not retryable:
                return
            logger.warning("SQS refused messages, retrying", extra={"failed": len(retryable), "attempt": attempt + 1})
            pending = retryable
            continue
        break
    refused = len(bodies) - len(accepted)
    raise QueueUnavailable(
        f"SQS did not accept {refused} of {len(bodies)} messages",
        queued=len(accepted),
        total=len(bodies),
        queued_positions=frozenset(accepted),
    )


_WAITING_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def messages_waiting(queue_url: str) -> int:
    """Messages on the queue not yet deleted: visible, in flight and delayed together (SQS's approximate counts)."""
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(_WAITING_COUNTS))
    return sum(int(attributes["Attributes"].get(name, 0)) for name in _WAITING_COUNTS)


def _batches(entries: Iterable[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    size = 0
    for position, body in entries:
        length = len(body)
        if batch and (len(batch) == SQS_BATCH_ENTRIES or size + length > SQS_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((position, body))
        size += length
    if batch:
        yield batch


def _send_batch(queue_url: str, batch: list[tuple[int, str]], delay_seconds: int = 0) -> list[tuple[int, str, bool]]:
    """Send one batch; return the entries that failed, each with SQS's sender-fault flag."""
    by_id = {str(position): (position, body) for position, body in batch}
    delay = {"DelaySeconds": delay_seconds} if delay_seconds else {}
    try:
        response = aws.client("sqs").send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": entry_id, "MessageBody": body, **delay} for entry_id, (_, body) in by_id.items()],
        )
    except (BotoCoreError, ClientError) as exc:
        logger.warning("SendMessageBatch failed", extra={"error": type(exc).__name__, "entries": len(batch)})
        return [(position, body, False) for position, body in batch]
    return [(*by_id[failure["Id"]], bool(failure.get("SenderFault"))) for failure in response.get("Failed", [])]

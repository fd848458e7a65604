"""Keeping what cannot be delivered, with its reason, where an operator can list and replay it.

One JSON-lines object per sender invocation that rejected anything, under
s3://<bucket>/<prefix>YYYY/MM/DD/HH/<time>-<id>.jsonl. Each line holds the Braze object, where it
came from, and why it was refused — enough to fix the cause and send it again.

The sender is handed a RejectStore (functions/braze_sender/app.py wires S3Rejects); the webhook
receiver keeps the events it cannot map with `keep` under its own prefix.

Erasure (docs/personal-data.md): `named_users` tells which users (as digests) a record names and
`accepted_at` when its object was accepted, so a replay can skip a deleted user's objects and
`erase_lines` can take a user's lines out of a file (erasure.py's daily job, the operator's
`rejects erase` and `users erase`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from braze_forwarder import aws
from braze_forwarder.braze.shapes import IDENTIFY_ARRAYS, TRACK_ARRAYS
from braze_forwarder.user_order import identities, user_digest


def keep(bucket: str, prefix: str, records: Sequence[dict[str, Any]]) -> str | None:
    """Write the records; return the object key (None when there was nothing to keep)."""
    if not records:
        return None
    now = time.gmtime()
    key = f"{prefix}{time.strftime('%Y/%m/%d/%H', now)}/{time.strftime('%Y%m%dT%H%M%SZ', now)}-{uuid.uuid4().hex}.jsonl"
    body = "".join(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n" for record in records)
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode("ascii"), ContentType="application/x-ndjson")
    return key


class RejectStore(Protocol):
    def keep(self, records: Sequence[dict[str, Any]]) -> str | None:
        """Write the records; return where (None when there was nothing to keep)."""
        ...


class S3Rejects:
    """Rejected objects under s3://<bucket>/<prefix>, as `keep` writes them."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix

    def keep(self, records: Sequence[dict[str, Any]]) -> str | None:
        return keep(self.bucket, self.prefix, records)


# Where the sender (SenderSettings.rejected_prefix), the webhook receiver and the import worker keep them.
PREFIX = "rejected/"
WEBHOOKS_PREFIX = f"{PREFIX}webhooks/"


def files(s3: Any, bucket: str, since_hour: str = "") -> list[str]:
    """The record files of the store, from the hour `since_hour` ("YYYY/MM/DD/HH", "" for all) on.

    S3 lists keys in order, so the hours before it are skipped by StartAfter rather than read and
    dropped (the store grows by the hour). rejected/YYYY/… (and rejected/imports/…) sort before
    rejected/webhooks/YYYY/…: each tree is listed from its own hour."""
    direct = itertools.takewhile(
        lambda key: not key.startswith(WEBHOOKS_PREFIX), _listed(s3, bucket, PREFIX, since_hour)
    )
    return [key for key in (*direct, *_listed(s3, bucket, WEBHOOKS_PREFIX, since_hour)) if key.endswith(".jsonl")]


def _listed(s3: Any, bucket: str, prefix: str, hour: str) -> Iterator[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, StartAfter=prefix + hour)
    for page in pages:
        yield from (item["Key"] for item in page.get("Contents", []))


# ---------------------------------------------------------------------- erasure (docs/personal-data.md)

_IDENTIFIER_FIELDS = ("external_id", "braze_id", "email", "phone")


def record_kind(record: Mapping[str, Any]) -> str | None:
    """The API route an object came through (track, identify, …), from its origin or its array."""
    origin = _origin(record)
    kind = origin.get("kind")
    if isinstance(kind, str) and kind:
        return kind
    array = origin.get("array")
    if array in TRACK_ARRAYS:
        return "track"
    if array in IDENTIFY_ARRAYS:
        return "identify"
    return None


def accepted_at(record: Mapping[str, Any]) -> str:
    """When the forwarder accepted the object (ISO UTC): what a tombstone is compared with.

    `origin.accepted_at` once the sender writes it; before that `origin.received_at` (the API's
    receipt time, or a webhook's earlier event time); for a record with neither, `rejected_at`.
    """
    origin = _origin(record)
    for value in (origin.get("accepted_at"), origin.get("received_at"), record.get("rejected_at")):
        if isinstance(value, str) and value:
            return value
    return ""


def named_users(record: Mapping[str, Any]) -> frozenset[str]:
    """The digest of every user a rejected record names (user_order.user_digest).

    Every identifier the object holds counts, not only the one Braze would key it by: an object of
    external id X that sets email E is personal data of E's owner too. A message kept raw because it
    was unreadable is searched for identifiers wherever its JSON holds them.
    """
    found: set[Hashable] = set()
    origin = _origin(record)
    obj = record.get("object")
    if obj is not None:
        array = origin.get("array")
        found.update(identities(record_kind(record) or "", array if isinstance(array, str) else "", obj))
        found.update(_identifiers(obj))
    raw = record.get("raw_message")
    if isinstance(raw, str):
        # Not JSON: nothing can be read from it (`mentions` looks for an identifier the operator typed).
        with contextlib.suppress(ValueError):
            found.update(_identifiers(json.loads(raw), nested=True))
    return frozenset(user_digest(user) for user in found)


def mentions(record: Mapping[str, Any], value: str) -> bool:
    """Whether an unreadable raw message holds this identifier as a JSON string (the operator typed it)."""
    raw = record.get("raw_message")
    if not isinstance(raw, str):
        return False
    return json.dumps(value, ensure_ascii=True) in raw or json.dumps(value, ensure_ascii=False) in raw


def _identifiers(value: Any, *, nested: bool = False) -> Iterator[Hashable]:
    if isinstance(value, Mapping):
        for name in _IDENTIFIER_FIELDS:
            if isinstance(value.get(name), str):
                yield (name, value[name])
        alias = value.get("user_alias")
        if isinstance(alias, Mapping):
            yield ("user_alias", alias.get("alias_name"), alias.get("alias_label"))
        children: Any = value.values() if nested else ()
    else:
        children = value if nested and isinstance(value, list) else ()
    for child in children:
        if isinstance(child, Mapping | list):
            yield from _identifiers(child, nested=True)


def _origin(record: Mapping[str, Any]) -> Mapping[str, Any]:
    origin = record.get("origin")
    return origin if isinstance(origin, Mapping) else {}


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What erasing lines from one rejected-objects file did (or, in a dry run, would do)."""

    key: str
    lines: int  # lines the file held
    removed: int  # lines that named an erased user

    @property
    def deleted(self) -> bool:
        return self.removed > 0 and self.removed == self.lines


def erase_lines(
    s3: Any, bucket: str, key: str, erase: Callable[[Mapping[str, Any]], bool], *, dry_run: bool = False
) -> Rewrite:
    """Remove the lines of one file for which `erase(record)` is true.

    S3 objects cannot be edited: the file is read, the other lines are written back under the same
    key (or the file is deleted when none is left), and the version read is then deleted for good,
    so the erased lines do not linger as a previous version for the bucket's 7 days. A line that is
    not JSON is kept: nothing can be known of it.
    """
    found = s3.get_object(Bucket=bucket, Key=key)
    version = found.get("VersionId")
    lines = [line for line in found["Body"].read().decode("utf-8", "replace").splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not (isinstance(record, Mapping) and erase(record)):
            kept.append(line)
    rewrite = Rewrite(key, len(lines), len(lines) - len(kept))
    if dry_run or not rewrite.removed:
        return rewrite
    if kept:
        body = "".join(line + "\n" for line in kept).encode("utf-8")
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
    if version and version != "null":
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    elif not kept:
        s3.delete_object(Bucket=bucket, Key=key)
    return rewrite

"""Keeping what cannot be delivered, with its reason, where an operator can list and replay it.

One JSON-lines object per sender invocation that rejected anything, under
s3://<bucket>/<prefix>YYYY/MM/DD/HH/<time>-<id>.jsonl. Each line holds the Braze object, where it
came from, and why it was refused — enough to fix the cause and send it again.

The sender is handed a RejectStore (functions/braze_sender/app.py wires S3Rejects); the webhook
receiver keeps the events it cannot map with `keep` under its own prefix.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from braze_forwarder import aws


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

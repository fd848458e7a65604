"""Ingest overhead: the handler's time per request next to json.loads + json.dumps of the same body.

The handler runs in-process with its real code: Powertools resolver, authentication against a
cached secret, strict parsing, validation of every object, envelope splitting and the SQS call —
with SQS answered by a stub (moto would measure moto), so the figure is the product's own cost.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any
from unittest import mock

from bench.common import paired_seconds, print_table

KEY = "bench-client-key-0123456789abcdef"


def _body(objects: int) -> str:
    attributes = [
        {
            "external_id": f"user-{i}",
            "first_name": "Ada",
            "email": f"user{i}@example.com",
            "country": "GB",
            "visits": {"inc": 1},
            "genres": {"add": ["jazz"]},
            "plan": "pro",
            "score": 12.5,
        }
        for i in range(objects // 3)
    ]
    events = [
        {
            "external_id": f"user-{i}",
            "name": "played_track",
            "time": "2026-11-22T07:39:12Z",
            "properties": {"track_id": f"t-{i}", "duration_seconds": 187, "shuffle": False},
        }
        for i in range(objects - len(attributes))
    ]
    return json.dumps({"attributes": attributes, "events": events})


def _event(body: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "POST /users/track",
        "rawPath": "/users/track",
        "rawQueryString": "",
        "headers": {"authorization": f"Bearer {KEY}", "content-type": "application/json"},
        "requestContext": {
            "http": {"method": "POST", "path": "/users/track", "sourceIp": "127.0.0.1"},
            "requestId": "bench",
            "routeKey": "POST /users/track",
            "stage": "$default",
        },
        "body": body,
        "isBase64Encoded": False,
    }


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


class _NullStream(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


class _StubSQS:
    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def get_item(self, **_request: Any) -> dict[str, Any]:
        return {}  # the partial-queue marker (ingest.partial), read at most every 2 s: none raised


class _SecretProvider:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def get(self, _name: str, **_options: Any) -> dict[str, Any]:
        return self.document


def run() -> list[list[str]]:
    import os

    os.environ.update(
        EVENTS_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/bench",
        INGEST_KEYS_SECRET_ARN="arn:aws:secretsmanager:us-east-1:123456789012:secret:bench",
        IDEMPOTENCY_TABLE="bench",
        USER_ORDER_TABLE="bench",
    )
    from aws_lambda_powertools.utilities.parameters import secrets

    from braze_forwarder import aws
    from braze_forwarder.ingest.auth import hash_key
    from functions.ingest_api import app

    secret = {"clients": [{"name": "bench", "key_sha256": hash_key(KEY)}]}
    sqs = _StubSQS()
    rows = []
    with (
        # Plain functions, not Mock objects: a Mock call costs tens of microseconds, which is not the product's.
        # The secret comes through Powertools' real get_secret and its cache, from a provider that reads
        # no AWS and answers from memory, as the real provider does within max_age after the first request.
        mock.patch.dict(secrets.DEFAULT_PROVIDERS, {"secrets": _SecretProvider(secret)}),
        mock.patch.object(aws, "client", new=lambda _service: sqs),
        contextlib.redirect_stdout(_NullStream()),  # metrics are still built and printed: part of the cost
    ):
        for objects in (1, 75, 1000):
            body = _body(objects)
            event = _event(body)
            answer = app.lambda_handler(event, _Context())
            assert answer["statusCode"] == 202, answer
            baseline, handler, ratio = paired_seconds(
                lambda body=body: json.dumps(json.loads(body)),
                lambda event=event: app.lambda_handler(event, _Context()),
            )
            rows.append(
                [
                    str(objects),
                    f"{len(body):,}",
                    f"{baseline * 1e6:,.0f}",
                    f"{handler * 1e6:,.0f}",
                    f"{ratio:.2f}x",
                ]
            )
    return rows


def main() -> None:
    print_table(
        "Ingest overhead (POST /users/track, SQS stubbed)",
        ["objects", "body bytes", "loads+dumps µs", "handler µs", "ratio"],
        run(),
        "15 rounds, each timing both side by side; medians, and the median of the rounds' ratios; same body; "
        "target ≤ 3x at 75 and 1,000 objects",
    )


if __name__ == "__main__":
    main()

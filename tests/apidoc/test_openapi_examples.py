"""The examples in openapi.json are real: each request example, sent to the real handler (moto behind
it), gets exactly the answer example the document gives for it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from apidoc.document import OPENAPI_JSON, REFUSED
from braze_forwarder.ingest.auth import hash_key
from tests.conftest import ingest_event, load_event, use_function_environment
from tests.webhook_signing import STRIPE_SAMPLE_SECRET, api_event, body_of, sign

KEY = "k_docs_0123456789abcdef0123456789abcdef"
DOCUMENT = json.loads(OPENAPI_JSON.read_text(encoding="utf-8"))
Handler = Callable[[dict[str, Any]], tuple[int, Any]]


def operation(path: str) -> dict[str, Any]:
    return DOCUMENT["paths"][path]["post"]


def request_example(path: str, name: str) -> dict[str, Any]:
    return operation(path)["requestBody"]["content"]["application/json"]["examples"][name]


def answer_example(path: str, status: int, name: str) -> Any:
    return operation(path)["responses"][str(status)]["content"]["application/json"]["examples"][name]["value"]


@pytest.fixture
def ingest(aws_stack, monkeypatch, lambda_context) -> Callable[..., tuple[int, Any]]:
    use_function_environment(monkeypatch, aws_stack, "IngestApiFunction")
    secrets = boto3.client("secretsmanager")
    secrets.put_secret_value(
        SecretId=aws_stack.refs["IngestKeysSecret"],
        SecretString=json.dumps({"clients": [{"name": "docs", "key_sha256": hash_key(KEY)}]}),
    )
    secrets.put_secret_value(
        SecretId=aws_stack.refs["WebhookSecrets"], SecretString=json.dumps({"stripe": [STRIPE_SAMPLE_SECRET]})
    )
    from functions.ingest_api import app

    def post(path: str, body: str, headers: dict[str, str] | None = None, key: str | None = KEY) -> tuple[int, Any]:
        result = app.lambda_handler(ingest_event(path, body, headers, key), lambda_context)
        return result["statusCode"], json.loads(result["body"])

    return post


REQUEST_EXAMPLES = [
    ("/users/track", "sample", 202, "sample"),
    ("/users/track", "no_valid_objects", 400, "no_valid_objects"),
    ("/users/identify", "sample", 202, "sample"),
    ("/users/delete", "sample", 202, "sample"),
    ("/users/alias/new", "sample", 202, "sample"),
    ("/users/merge", "sample", 202, "sample"),
]
# (status, error example, body, headers, key): a request that gets that error from /users/track.
ERROR_REQUESTS = [
    (400, "empty_body", "", {}, KEY),
    (400, "malformed_json", '{"events": }', {}, KEY),
    (400, "invalid_number", '{"events": [NaN]}', {}, KEY),
    (400, "duplicate_key", '{"events": [], "events": []}', {}, KEY),
    (400, "invalid_body", '{"events": {}}', {}, KEY),
    (400, "unknown_field", '{"event": []}', {}, KEY),
    (400, "empty_request", '{"events": []}', {}, KEY),
    (400, "invalid_idempotency_key", '{"events": []}', {"idempotency-key": "has spaces"}, KEY),
    (401, "unauthorized", '{"events": []}', {}, None),
    (413, "payload_too_large", " " * (4 * 1024 * 1024 + 1), {}, KEY),
]


def test_each_request_example_gets_its_documented_answer(ingest) -> None:
    # One moto stack for all of them (each costs a second to create); a mismatch names its example.
    for path, request_name, status, answer_name in REQUEST_EXAMPLES:
        example = request_example(path, request_name)

        answered = ingest(path, json.dumps(example["value"]))

        assert answered == (status, answer_example(path, status, answer_name)), f"{path} {request_name}"
        refused = [f"{error['input_array']}[{error['index']}]" for error in answered[1]["errors"]]
        assert refused == example.get(REFUSED, []), f"{path} {request_name}"


def test_the_error_examples_are_what_the_api_answers(ingest) -> None:
    for status, name, body, headers, key in ERROR_REQUESTS:
        assert ingest("/users/track", body, headers, key) == (status, answer_example("/users/track", status, name)), (
            name
        )


def test_the_reused_idempotency_key_example(ingest) -> None:
    sample = json.dumps(request_example("/users/track", "sample")["value"])
    assert ingest("/users/track", sample, {"idempotency-key": "docs-1"})[0] == 202

    answered = ingest("/users/track", sample.replace("user-1001", "user-1009"), {"idempotency-key": "docs-1"})

    assert answered == (422, answer_example("/users/track", 422, "idempotency_key_reused"))


def webhook(lambda_context, provider: str, body: str, signature: str | None) -> tuple[int, Any]:
    from functions.ingest_api import app

    result = app.lambda_handler(api_event(provider, body, signature), lambda_context)
    return result["statusCode"], json.loads(result["body"])


def test_the_webhook_examples(ingest, lambda_context) -> None:
    path = "/webhooks/{provider}"
    raw = body_of(load_event("webhook_stripe_invoice_paid.json"))
    assert json.loads(raw) == request_example(path, "stripe_invoice_paid")["value"]
    signed = sign("stripe", raw, STRIPE_SAMPLE_SECRET)

    assert webhook(lambda_context, "stripe", raw, signed) == (200, answer_example(path, 200, "queued"))
    assert webhook(lambda_context, "stripe", raw, signed) == (200, answer_example(path, 200, "duplicate"))
    assert webhook(lambda_context, "stripe", raw, None) == (401, answer_example(path, 401, "missing_signature"))
    wrong = sign("stripe", raw, "whsec_notTheEndpointsSecret000000000000")
    assert webhook(lambda_context, "stripe", raw, wrong) == (401, answer_example(path, 401, "invalid_signature"))
    stale = sign("stripe", raw, STRIPE_SAMPLE_SECRET, timestamp=1_000_000_000)
    assert webhook(lambda_context, "stripe", raw, stale) == (401, answer_example(path, 401, "stale_timestamp"))
    assert webhook(lambda_context, "stripe", "[]", sign("stripe", "[]", STRIPE_SAMPLE_SECRET)) == (
        400,
        answer_example(path, 400, "invalid_event"),
    )
    live = json.dumps({**json.loads(raw), "livemode": True})
    assert webhook(lambda_context, "stripe", live, sign("stripe", live, STRIPE_SAMPLE_SECRET)) == (
        400,
        answer_example(path, 400, "livemode_mismatch"),
    )
    assert webhook(lambda_context, "square", raw, signed) == (404, answer_example(path, 404, "unknown_provider"))
    other = json.dumps({**json.loads(raw), "id": "evt_1QxSampleCustomer0001", "type": "customer.created"})
    assert webhook(lambda_context, "stripe", other, sign("stripe", other, STRIPE_SAMPLE_SECRET)) == (
        200,
        answer_example(path, 200, "ignored"),
    )


def test_the_export_callback_not_found_example(aws_stack, monkeypatch, lambda_context) -> None:
    use_function_environment(monkeypatch, aws_stack, "ExportCallbackFunction")
    from functions.export_callback import app

    result = app.lambda_handler(load_event("export_callback.json"), lambda_context)

    path = "/exports/{job_id}/callback"
    assert (result["statusCode"], json.loads(result["body"])) == (404, answer_example(path, 404, "not_found"))
    assert json.loads(load_event("export_callback.json")["body"]) == request_example(path, "sample")["value"]

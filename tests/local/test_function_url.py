"""FrontDoor=FunctionUrl through the local stack: the ingest function behind its Lambda function URL.

The same routes, answers, authentication and body limits as behind the HTTP API (docs/ingest-api.md,
"Front door"); what differs is who answers what no route takes (the function, not API Gateway) and
the front door's own errors (Lambda's 413 over 6 MB, 502 for a failed function).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.api_gateway import function_url_target
from local.stack import Stack, StackOptions

# At the top: importing tests.conftest runs it again, and it clears AWS_ENDPOINT_URL (the stack's).
from tests.conftest import load_event
from tests.webhook_signing import SIGNATURE_HEADERS, body_of, sign

pytestmark = pytest.mark.local

FREE_PORTS = {"api_port": 0, "lambda_port": 0, "aws_port": 0, "sandbox_port": 0}
INGEST_KEY = "function-url-test-key"
TRACK = {"attributes": [{"external_id": "furl-user-1", "first_name": "Ada"}]}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    options = StackOptions(**FREE_PORTS, ingest_key=INGEST_KEY, parameter_overrides={"FrontDoor": "FunctionUrl"})
    with Stack(options) as running:
        yield running


def post(stack: Stack, path: str, body: bytes | str | dict[str, Any], **headers: str) -> requests.Response:
    assert stack.api is not None
    data = json.dumps(body) if isinstance(body, dict) else body
    return requests.post(stack.api.url + path, data=data, headers=headers, timeout=30)


def bearer(key: str = INGEST_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def test_the_function_url_copy_runs_and_the_http_api_copy_does_not(stack: Stack) -> None:
    assert "IngestUrlFunction" in stack.functions and "IngestApiFunction" not in stack.functions
    assert stack.function_url is stack.functions["IngestUrlFunction"]
    # Only the export callback is left on the HTTP API.
    assert [route.key for route in stack.routes] == ["POST /exports/{job_id}/callback"]
    assert stack.environment["EXPORT_CALLBACK_BASE_URL"] == stack.api.url
    assert "any other request (function URL)" in "\n".join(stack.describe())


def test_track_and_identify_are_routed_by_the_function(stack: Stack) -> None:
    track = post(stack, "/users/track", TRACK, **bearer())
    assert track.status_code == 202, track.text
    assert track.json()["message"] == "success"
    assert track.headers["x-amzn-requestid"] and "apigw-requestid" not in track.headers  # Lambda's, not API Gateway's
    alias = {"alias_name": "a", "alias_label": "b"}
    identify = {"aliases_to_identify": [{"external_id": "furl-user-1", "user_alias": alias}]}
    answer = post(stack, "/users/identify", identify, **bearer())
    assert answer.status_code == 202, answer.text


def test_delete_alias_and_merge_are_routed_by_the_function(stack: Stack) -> None:
    bodies = {
        "/users/delete": ({"external_ids": ["furl-user-9"]}, "deleted"),
        "/users/alias/new": ({"user_aliases": [{"alias_name": "a9", "alias_label": "b"}]}, "aliases_queued"),
        "/users/merge": (
            {
                "merge_updates": [
                    {"identifier_to_merge": {"external_id": "furl-old"}, "identifier_to_keep": {"external_id": "x"}}
                ]
            },
            "merge_updates_queued",
        ),
    }
    for path, (body, count) in bodies.items():
        answer = post(stack, path, body, **bearer())
        assert answer.status_code == 202, (path, answer.text)
        assert answer.json()[count] == 1, path


def test_a_missing_or_wrong_key_is_refused_by_the_function(stack: Stack) -> None:
    assert post(stack, "/users/track", TRACK, **{"Content-Type": "application/json"}).status_code == 401
    refused = post(stack, "/users/track", TRACK, **bearer("not-the-key"))
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/json")


def test_what_no_route_takes_gets_the_functions_json_404_not_api_gateways(stack: Stack) -> None:
    for method, path in (("POST", "/users/nothing"), ("GET", "/users/track"), ("POST", "/")):
        assert stack.api is not None
        answer = requests.request(method, stack.api.url + path, headers=bearer(), timeout=30)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["type"] == "not_found"


def test_a_body_over_max_body_bytes_gets_the_functions_413(stack: Stack) -> None:
    limit = int(stack.environment["MAX_BODY_BYTES"])
    answer = post(stack, "/users/track", b"{" + b" " * limit + b"}", **bearer())
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("application/json") and answer.json()["type"]


def test_an_event_over_lambdas_6_mb_gets_the_function_urls_own_413(stack: Stack) -> None:
    answer = post(stack, "/users/track", b"{" + b" " * (6 * 1024 * 1024) + b"}", **bearer())
    assert answer.status_code == 413
    assert answer.json() == {"message": "Request Entity Too Large"}


def test_a_signed_stripe_webhook_is_taken(stack: Stack, load_stripe_sample: dict[str, Any]) -> None:
    body = body_of(load_stripe_sample)
    signature = sign("stripe", body, stack.webhook_secrets["stripe"])
    headers = {"Content-Type": "application/json", SIGNATURE_HEADERS["stripe"]: signature}
    answer = post(stack, "/webhooks/stripe", body.encode("utf-8"), **headers)
    assert answer.status_code == 200, answer.text
    unsigned = post(stack, "/webhooks/stripe", body.encode("utf-8"), **{"Content-Type": "application/json"})
    assert unsigned.status_code in (400, 401), unsigned.text


@pytest.fixture
def load_stripe_sample() -> dict[str, Any]:
    return load_event("webhook_stripe_invoice_paid.json")


def test_only_one_function_url_with_auth_type_none_is_served_locally() -> None:
    class Fake:
        def __init__(self, logical_id: str, config: dict[str, str]) -> None:
            self.logical_id, self.properties = logical_id, {"FunctionUrlConfig": config}

    from local.runtime import LocalRuntimeError

    with pytest.raises(LocalRuntimeError, match="one function URL"):
        function_url_target({"A": Fake("A", {"AuthType": "NONE"}), "B": Fake("B", {"AuthType": "NONE"})})  # type: ignore[dict-item]
    with pytest.raises(LocalRuntimeError, match="AuthType NONE"):
        function_url_target({"A": Fake("A", {"AuthType": "AWS_IAM"})})  # type: ignore[dict-item]

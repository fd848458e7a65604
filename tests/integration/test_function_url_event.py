"""The ingest handler answers a Lambda function URL event as it answers the HTTP API's (FrontDoor).

Both are payload format 2.0. What a function URL event lacks or sets otherwise: routeKey and
requestContext.routeKey are "$default", stage "$default", no pathParameters or stageVariables,
accountId "anonymous" (AuthType NONE), apiId the URL id, domainName <url-id>.lambda-url.<region>.on.aws.
Powertools' APIGatewayHttpResolver routes by rawPath (minus a stage that is not "$default") and
extracts /webhooks/<provider> itself, so none of that matters: one resolver serves both.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest

from braze_forwarder.ingest.auth import hash_key
from tests.conftest import ingest_event, load_event, use_function_environment

pytestmark = pytest.mark.clock  # Idempotency records and envelopes carry the time

CLIENT_KEY = "k_test_0123456789abcdef0123456789abcdef"
URL_ID = "abcdefghijklmnopqrstuvwxyz012345"


def as_function_url_event(event: dict[str, Any]) -> dict[str, Any]:
    """The same request as a function URL with AuthType NONE would deliver it."""
    url_event = copy.deepcopy(event)
    url_event["routeKey"] = "$default"
    url_event.pop("pathParameters", None)
    url_event.pop("stageVariables", None)
    context = url_event["requestContext"]
    context.update(routeKey="$default", stage="$default", accountId="anonymous", apiId=URL_ID)
    context["domainName"] = f"{URL_ID}.lambda-url.us-east-1.on.aws"
    context["domainPrefix"] = URL_ID
    context.pop("authorizer", None)
    return url_event


@pytest.fixture
def handler(aws_stack, monkeypatch, lambda_context):
    use_function_environment(monkeypatch, aws_stack, "IngestUrlFunction")
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws_stack.refs["IngestKeysSecret"],
        SecretString=json.dumps({"clients": [{"name": "ios-backend", "key_sha256": hash_key(CLIENT_KEY)}]}),
    )
    from functions.ingest_api import app

    def answer(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        result = app.lambda_handler(event, lambda_context)
        return result["statusCode"], json.loads(result["body"])

    return answer


def test_the_url_function_has_the_http_api_functions_environment(aws_stack):
    assert aws_stack.function_environment("IngestUrlFunction") == aws_stack.function_environment("IngestApiFunction")


@pytest.mark.parametrize(
    ("path", "key", "body"),
    [
        ("/users/track", CLIENT_KEY, json.loads(load_event("ingest_track.json")["body"])),
        ("/users/identify", CLIENT_KEY, {"aliases_to_identify": []}),
        ("/users/track", "k_wrong", {"attributes": []}),
        ("/users/track", None, {"attributes": []}),
        ("/users/nothing", CLIENT_KEY, {}),
        ("/webhooks/nobody", None, {}),
        ("/", None, {}),
    ],
)
def test_a_function_url_event_gets_the_http_api_events_answer(handler, path, key, body):
    http_api_event = ingest_event(path, json.dumps(body), {"idempotency-key": f"k-{path}-{key}"}, key)
    url_event = as_function_url_event(http_api_event)
    url_event["headers"]["idempotency-key"] += "-url"  # not a replay of the first

    http_status, http_body = handler(http_api_event)
    url_status, url_body = handler(url_event)

    assert (url_status, url_body) == (http_status, http_body)


def test_the_webhook_provider_comes_from_the_path_not_path_parameters(handler):
    sample = load_event("webhook_stripe_invoice_paid.json")
    url_event = as_function_url_event(sample)
    status, body = handler(url_event)
    # Signed with the sample secret at the sample's time: refused as stale or unsigned, but by the
    # Stripe receiver (a 4xx of its own), not the 404 an unrouted request would get.
    assert status != 404, body
    assert status == handler(sample)[0]

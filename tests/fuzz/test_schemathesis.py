"""Schema-driven fuzzing: schemathesis generates requests from openapi.json for the Braze-compatible
routes and checks every answer of the real handler (over loopback HTTP, moto behind it) against the
document: no 5xx, a documented status, content type, headers and body schema. Each request carries
a fresh Idempotency-Key, so requests are accepted and queued rather than answered from a record."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance, unsupported_method
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import RejectedPositiveData

from braze_forwarder.ingest.auth import hash_key
from tests.conftest import use_function_environment
from tests.loopback_api import serve

KEY = "k_schemathesis_0123456789abcdef0123456789"
OPENAPI_JSON = Path(__file__).resolve().parents[2] / "openapi.json"

_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")

# Bounded for make test: the examples phase (the document's own examples) and max_examples fuzzed
# cases per operation, a few seconds each; the coverage phase (every boundary of every field, some
# 5,000 requests here, about a minute) is left out.
CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
schema = schemathesis.openapi.from_path(OPENAPI_JSON, config=CONFIG).include(path_regex="^/users/")


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    from moto import mock_aws

    from local.resources import create_resources

    with mock_aws(), pytest.MonkeyPatch.context() as monkeypatch:
        stack = create_resources(boto3.session.Session(region_name="us-east-1"))
        boto3.client("secretsmanager").put_secret_value(
            SecretId=stack.refs["IngestKeysSecret"],
            SecretString=json.dumps({"clients": [{"name": "schemathesis", "key_sha256": hash_key(KEY)}]}),
        )
        use_function_environment(monkeypatch, stack, "IngestApiFunction")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        from functions.ingest_api import app

        with serve(app.lambda_handler) as url:
            yield url


@schemathesis.check
def negative_data_refused_or_listed(ctx, response, case) -> None:
    """negative_data_rejection, for an API that validates object by object as Braze does: a request
    whose only violations are in its objects is accepted (2xx) with each such object listed in
    `errors` and not queued (BRAZE_API.md §2.10, the document's ObjectError). Accepted with no
    error listed is still a failure: the document refuses what the code took."""
    try:
        negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        body = response.json() if 200 <= response.status_code < 300 else {}
        if not (isinstance(body, dict) and body.get("errors")):
            raise


@schemathesis.check
def positive_data_accepted_or_listed(ctx, response, case) -> None:
    """positive_data_acceptance, for the rules a schema cannot say (an event's time, byte lengths, an
    email's domain…): a schema-valid request whose every object breaks one is the documented 400
    no_valid_objects, each object listed in `errors` with its reason."""
    try:
        positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        body = response.json() if response.status_code == 400 else {}
        if not (isinstance(body, dict) and body.get("type") == "no_valid_objects" and body.get("errors")):
            raise


@schema.parametrize()
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_is_one_the_document_gives(case, api_url):
    headers = {"Authorization": f"Bearer {KEY}"}
    generated = (case.headers or {}).get("Idempotency-Key")
    if generated is None or _VALID_KEY.fullmatch(generated):  # keep a key generated to be refused
        headers["Idempotency-Key"] = str(uuid.uuid4())
    # API Gateway answers a method a route does not have with its 404 {"message": "Not Found"}
    # (tests/local/test_api_gateway.py), not the 405 schemathesis's unsupported_method check expects.
    case.call_and_validate(
        base_url=api_url,
        headers=headers,
        timeout=10,
        excluded_checks=[unsupported_method, negative_data_rejection, positive_data_acceptance],
        additional_checks=[negative_data_refused_or_listed, positive_data_accepted_or_listed],
    )

"""Shared test setup: a fake AWS environment, the template's resources in moto, fresh caches."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Set before anything imports boto3 or Powertools: no test may reach a real AWS account.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "braze-forwarder",
        "POWERTOOLS_METRICS_NAMESPACE": "BrazeForwarderTests",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
)
for _name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
    del os.environ[_name]

import boto3  # noqa: E402
import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402

from local.resources import LocalStack, create_resources  # noqa: E402
from tests.clock import (  # noqa: E402, F401  (pytest finds the --clock plugin's hooks here)
    _month_end_clock,
    pytest_addoption,
    pytest_configure,
    pytest_report_header,
    pytest_unconfigure,
)

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def ingest_event(path: str, body: str, headers: dict[str, str] | None = None, key: str | None = None) -> dict:
    """The ingest API sample event, as a JSON POST to ``path`` with ``body``, these headers and the bearer key."""
    event = load_event("ingest_track.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"POST {path}"
    event["headers"] = {"content-type": "application/json", **(headers or {})}
    if key is not None:
        event["headers"]["authorization"] = f"Bearer {key}"
    event["body"], event["isBase64Encoded"] = body, False
    return event


@dataclass
class LambdaContextStub:
    """What Lambda passes as context; only the fields the functions and Powertools read."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_millis: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


@pytest.fixture
def lambda_context() -> LambdaContextStub:
    return LambdaContextStub()


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Every cache that outlives an invocation in Lambda is emptied between tests."""
    from aws_lambda_powertools.utilities import parameters

    from braze_forwarder import aws
    from braze_forwarder.config import settings
    from braze_forwarder.exports import start as export_start
    from braze_forwarder.ingest import auth, idempotency, partial
    from braze_forwarder.ingest.webhooks import signing_secrets
    from braze_forwarder.observability import metrics

    def clear() -> None:
        aws.reset()
        settings.cache_clear()
        parameters.clear_caches()
        auth.reset()
        idempotency.reset()
        partial.reset()
        signing_secrets.reset()
        export_start.reset()
        metrics.clear_metrics()

    clear()
    yield
    clear()


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """The template's queues, tables, secrets and buckets in moto."""
    with mock_aws():
        stack = create_resources(boto3.session.Session(region_name="us-east-1"))
        yield stack


def use_function_environment(
    monkeypatch: pytest.MonkeyPatch, stack: LocalStack, logical_id: str, **overrides: str
) -> None:
    for name, value in {**stack.function_environment(logical_id), **overrides}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


def use_sender_environment(
    monkeypatch: pytest.MonkeyPatch, stack: LocalStack, braze_url: str, braze_key: str, **overrides: str
) -> None:
    """BrazeSenderFunction's environment against a Braze sandbox, with short timeouts (tests wait on
    them), one call in flight unless overridden, and the sandbox's key in the stack's secret."""
    import boto3

    settings = {
        "BRAZE_REST_ENDPOINT": braze_url,
        "BRAZE_MAX_IN_FLIGHT": "1",
        "BRAZE_CONNECT_TIMEOUT_SECONDS": "0.5",
        "BRAZE_READ_TIMEOUT_SECONDS": "1",
        "BRAZE_MAX_ATTEMPTS": "3",
        "TIME_RESERVE_SECONDS": "0.5",
    }
    use_function_environment(monkeypatch, stack, "BrazeSenderFunction", **{**settings, **overrides})
    boto3.client("secretsmanager").put_secret_value(SecretId=stack.refs["BrazeApiKeySecret"], SecretString=braze_key)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Everything logged at any level — Powertools' JSON lines with their appended keys, every other
    library's records with all their fields — and everything printed (metrics)."""
    import io
    import logging

    from braze_forwarder.observability import logger

    buffer = io.StringIO()
    previous_stream = logger.registered_handler.setStream(buffer)
    previous_level = logger.log_level
    logger.setLevel("DEBUG")
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        printed = capsys.readouterr()
        records = [json.dumps(vars(record), default=str) for record in caplog.records]
        return "\n".join([buffer.getvalue(), printed.out, printed.err, *records])

    yield text
    logger.registered_handler.setStream(previous_stream)
    logger.setLevel(previous_level)


def metric_values(printed: str, name: str) -> list[float]:
    """The values of one metric across the EMF lines that Powertools printed."""
    values: list[float] = []
    for line in printed.splitlines():
        if '"_aws"' in line and f'"{name}"' in line:
            value = json.loads(line)[name]
            values.extend(value if isinstance(value, list) else [value])
    return values

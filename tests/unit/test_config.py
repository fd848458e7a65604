"""Settings: environment strings become typed values, and a bad deployment fails with a message naming
the variable and what it must be."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from braze_forwarder.config import ConfigurationError, IngestSettings, SenderSettings
from braze_forwarder.user_order import fence_seconds

INGEST = {
    "EVENTS_QUEUE_URL": "https://sqs/q",
    "INGEST_KEYS_SECRET_ARN": "arn:secret",
    "IDEMPOTENCY_TABLE": "t",
    "USER_ORDER_TABLE": "order",
}
SENDER = {
    "BRAZE_REST_ENDPOINT": "https://rest.iad-01.braze.com",
    "BRAZE_API_KEY_SECRET_ARN": "arn:secret",
    "LEDGER_TABLE": "ledger",
    "REJECTED_BUCKET": "rejects",
    "USER_ORDER_TABLE": "order",
    "EVENTS_QUEUE_URL": "https://sqs/q",
}


def test_values_are_converted_from_environment_strings() -> None:
    config = SenderSettings.from_environ(
        {
            **SENDER,
            "BRAZE_MAX_IN_FLIGHT": "16",
            "BRAZE_READ_TIMEOUT_SECONDS": "2.5",
            "DELTA_SENDING_ENABLED": "True",
            "ATTRIBUTE_STATE_TABLE": "state",
            "BRAZE_TRACK_BATCH_MODE": "per_array",
            "UNRELATED": "ignored",
        }
    )
    assert config.braze_max_in_flight == 16
    assert config.braze_read_timeout_seconds == 2.5
    assert config.delta_sending_enabled is True
    assert config.braze_track_batch_mode == "per_array"
    assert config.braze_rest_endpoint == "https://rest.iad-01.braze.com"


def test_defaults_apply_when_a_variable_is_absent() -> None:
    config = IngestSettings.from_environ(INGEST)
    assert config.max_body_bytes == 4 * 1024 * 1024
    assert config.max_json_depth == 32


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_BODY_BYTES", "lots", "MAX_BODY_BYTES: must be a whole number, not 'lots'"),
        ("MAX_BODY_BYTES", "12", "MAX_BODY_BYTES: must be at least 1024, not 12"),
        ("MAX_JSON_DEPTH", "1000", "MAX_JSON_DEPTH: must be at most 256, not 1000"),
        ("EVENTS_QUEUE_URL", "", "EVENTS_QUEUE_URL: must not be empty"),
    ],
)
def test_an_invalid_value_names_the_variable_and_the_rule(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=f"invalid configuration for IngestSettings: {message}"):
        IngestSettings.from_environ({**INGEST, name: value})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as raised:
        IngestSettings.from_environ({**INGEST, "MAX_JSON_DEPTH": "x", "MAX_BODY_BYTES": "1"})
    assert "MAX_JSON_DEPTH" in str(raised.value) and "MAX_BODY_BYTES" in str(raised.value)


def test_a_missing_required_variable_is_named() -> None:
    with pytest.raises(ConfigurationError, match="IDEMPOTENCY_TABLE: is required"):
        IngestSettings.from_environ({k: v for k, v in INGEST.items() if k != "IDEMPOTENCY_TABLE"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"BRAZE_TRACK_BATCH_MODE": "all"}, "BRAZE_TRACK_BATCH_MODE: must be one of total, per_array"),
        ({"DELTA_SENDING_ENABLED": "maybe"}, "DELTA_SENDING_ENABLED: must be true or false"),
        ({"BRAZE_READ_TIMEOUT_SECONDS": "nan"}, "BRAZE_READ_TIMEOUT_SECONDS: must be a number"),
        ({"BRAZE_READ_TIMEOUT_SECONDS": "0"}, "BRAZE_READ_TIMEOUT_SECONDS: must be more than 0"),
        ({"BRAZE_REST_ENDPOINT": "https://example.com"}, "BRAZE_REST_ENDPOINT: "),
        ({"DELTA_SENDING_ENABLED": "true"}, "ATTRIBUTE_STATE_TABLE: must name the attribute state table"),
    ],
)
def test_sender_rules(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SenderSettings.from_environ({**SENDER, **overrides})


def test_settings_are_frozen() -> None:
    config = IngestSettings.from_environ(INGEST)
    with pytest.raises(AttributeError):
        config.max_json_depth = 8  # type: ignore[misc]


def test_settings_are_made_from_keywords_like_a_dataclass() -> None:
    # One __init__ serves every settings class (none is generated per class): keywords are checked
    # and converted, defaults fill the rest, and a missing or unknown keyword is refused.
    config = IngestSettings(
        events_queue_url="https://sqs/q",
        ingest_keys_secret_arn="arn:secret",
        idempotency_table="t",
        user_order_table="order",
        max_json_depth="16",
    )
    assert config.max_json_depth == 16
    assert config.max_body_bytes == IngestSettings.from_environ(INGEST).max_body_bytes
    assert dataclasses.replace(config, max_json_depth=20).max_json_depth == 20
    with pytest.raises(ConfigurationError, match="MAX_JSON_DEPTH"):
        dataclasses.replace(config, max_json_depth=0)
    with pytest.raises(TypeError, match="idempotency_table"):
        IngestSettings(events_queue_url="https://sqs/q", ingest_keys_secret_arn="arn:secret", user_order_table="o")
    with pytest.raises(TypeError, match="max_json_dept"):
        dataclasses.replace(config, max_json_dept=20)


@pytest.mark.parametrize(
    "module",
    [
        "functions.ingest_api.app",
        "functions.braze_sender.app",
        "functions.export_starter.app",
        "functions.export_callback.app",
        "functions.export_copier.app",
        "functions.import_starter.app",
        "functions.import_worker.app",
        "functions.rejects_eraser.app",
    ],
)
def test_a_cold_start_with_tracing_off_loads_neither_pydantic_nor_the_xray_sdk(module: str) -> None:
    """Each costs tens of milliseconds of every cold start (make bench); neither is needed then."""
    probe = f"import sys, {module}; print(sorted(m for m in ('pydantic', 'aws_xray_sdk') if m in sys.modules))"
    environment = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=_with_path(environment)
    )
    assert loaded.stdout.strip() == "[]"


def test_with_tracing_on_the_handlers_use_powertools_tracer() -> None:
    probe = (
        "from braze_forwarder.observability import tracer; "
        "from aws_lambda_powertools import Tracer; print(isinstance(tracer, Tracer))"
    )
    environment = {"POWERTOOLS_TRACE_DISABLED": "false", "AWS_DEFAULT_REGION": "us-east-1"}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=_with_path(environment)
    )
    assert loaded.stdout.strip() == "True"


def _with_path(environment: dict[str, str]) -> dict[str, str]:
    import os

    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path), **environment}


def test_an_invocation_that_counts_nothing_prints_no_powertools_warning() -> None:
    """Empty flushes are normal in every function (observability.py says why); other warnings still show."""
    probe = (
        "import warnings; from braze_forwarder.observability import metrics; "
        "metrics.flush_metrics(); warnings.warn('another warning')"
    )
    environment = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    loaded = subprocess.run(
        [sys.executable, "-W", "default", "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=_with_path(environment),
    )
    assert "No application metrics" not in loaded.stderr
    assert "another warning" in loaded.stderr


def test_the_ingest_fence_default_follows_the_senders_default_timeouts() -> None:
    # The ingest function does not read the sender's Braze timeouts; its default is computed from theirs.
    defaults = {cls: {f.name: f.default for f in dataclasses.fields(cls)} for cls in (IngestSettings, SenderSettings)}
    sender = defaults[SenderSettings]
    expected = fence_seconds(sender["braze_connect_timeout_seconds"], sender["braze_read_timeout_seconds"])
    assert defaults[IngestSettings]["order_fence_seconds"] == expected == 56

"""Typed settings, read from environment variables once per execution environment.

Every setting is an environment variable named after its field in upper case, with the unit in its
name. A missing or invalid value fails the cold start with a message naming the variable, so a bad
deployment shows up in the first invocation's log instead of as odd behaviour later.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

KIB = 1024
MIB = 1024 * KIB
SQS_MAX_MESSAGE_BYTES = 1 * MIB


class ConfigurationError(RuntimeError):
    """The function's environment is missing a setting or holds an invalid one."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        values = {name: environ[name.upper()] for name in cls.model_fields if name.upper() in environ}
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{str(error['loc'][0]).upper()}: {error['msg']}" for error in exc.errors(include_url=False)
            )
            raise ConfigurationError(f"invalid configuration for {cls.__name__}: {problems}") from None


class IngestSettings(Settings):
    """IngestApiFunction: authenticate, validate, queue."""

    events_queue_url: str = Field(min_length=1)
    ingest_keys_secret_arn: str = Field(min_length=1)
    idempotency_table: str = Field(min_length=1)
    max_body_bytes: int = Field(default=4 * MIB, ge=1 * KIB, le=6 * MIB)
    max_message_bytes: int = Field(default=256 * KIB, ge=16 * KIB, le=SQS_MAX_MESSAGE_BYTES)
    max_json_depth: int = Field(default=32, ge=4, le=256)
    ingest_keys_max_age_seconds: int = Field(default=300, ge=0, le=3600)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)


class WebhookSettings(IngestSettings):
    """IngestApiFunction's POST /webhooks/{provider}: the ingest settings plus signing, dedupe and user lookup."""

    webhook_secrets_arn: str = Field(min_length=1)
    webhook_secrets_max_age_seconds: int = Field(default=300, ge=0, le=3600)
    # Providers retry for about three days (Stripe, Paddle); an event id forgotten sooner could be
    # counted twice when a late retry arrives.
    webhook_dedupe_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=3 * 24 * 3600, le=30 * 24 * 3600)
    rejected_bucket: str = Field(min_length=1)
    stripe_live_mode: bool = False
    # Stripe metadata keys are at most 40 characters.
    stripe_user_metadata_key: str = Field(default="braze_external_id", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    stripe_tolerance_seconds: int = Field(default=300, ge=5, le=3600)
    paddle_tolerance_seconds: int = Field(default=300, ge=5, le=3600)
    paddle_user_custom_data_key: str = Field(default="braze_external_id", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class SenderSettings(Settings):
    """BrazeSenderFunction: pack, send, record."""

    braze_rest_endpoint: str
    braze_api_key_secret_arn: str = Field(min_length=1)
    braze_track_batch_mode: Literal["total", "per_array"] = "total"
    braze_track_batch_limit: int = Field(default=75, ge=1, le=75)
    braze_identify_batch_limit: int = Field(default=50, ge=1, le=50)
    braze_max_in_flight: int = Field(default=8, ge=1, le=64)
    braze_connect_timeout_seconds: float = Field(default=3.05, gt=0, le=30)
    braze_read_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    braze_max_attempts: int = Field(default=6, ge=1, le=20)
    braze_api_key_max_age_seconds: int = Field(default=300, ge=0, le=3600)
    braze_max_request_bytes: int = Field(default=3_500_000, ge=64 * KIB, le=4_000_000)
    ledger_table: str = Field(min_length=1)
    ledger_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=3600)
    rejected_bucket: str = Field(min_length=1)
    rejected_prefix: str = "rejected/"
    time_reserve_seconds: float = Field(default=5.0, ge=0.5, le=60)
    # Delta sending (delivery.savings): off, the last-sent store is neither read nor written.
    delta_sending_enabled: bool = False
    attribute_state_table: str = Field(default="", validate_default=True)
    attribute_state_ttl_seconds: int = Field(default=90 * 24 * 3600, ge=3600, le=400 * 24 * 3600)

    @field_validator("braze_rest_endpoint")
    @classmethod
    def _known_braze_host(cls, value: str) -> str:
        from braze_forwarder.braze.endpoints import check_rest_endpoint

        return check_rest_endpoint(value)

    @field_validator("attribute_state_table")
    @classmethod
    def _table_for_delta_sending(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("delta_sending_enabled") and not value:
            raise ValueError("must name the attribute state table when DELTA_SENDING_ENABLED is true")
        return value


# BRAZE_API.md §7: the fields the global control group export accepts.
GCG_EXPORT_FIELDS = frozenset(
    {
        "apps", "attributed_campaign", "attributed_source", "attributed_adgroup", "attributed_ad",
        "braze_id", "country", "created_at", "custom_attributes", "custom_events", "devices", "dob",
        "email", "external_id", "first_name", "gender", "home_city", "language", "last_coordinates",
        "last_name", "phone", "purchases", "random_bucket", "time_zone", "total_revenue",
        "uninstalled_at", "user_aliases",
    }
)  # fmt: skip
# What a holdout analysis joins on, and nothing that identifies a person directly (no email, phone,
# names or birth date) or that makes the export slow (§7: fewer fields, faster export).
DEFAULT_EXPORT_FIELDS = (
    "external_id", "braze_id", "user_aliases", "random_bucket", "created_at", "country", "language", "time_zone",
)  # fmt: skip


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class ExportStarterSettings(Settings):
    """ExportStarterFunction: create the job, ask Braze for the global control group export."""

    braze_rest_endpoint: str
    braze_api_key_secret_arn: str = Field(min_length=1)
    braze_api_key_max_age_seconds: int = Field(default=300, ge=0, le=3600)
    braze_connect_timeout_seconds: float = Field(default=3.05, gt=0, le=30)
    braze_read_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    braze_max_attempts: int = Field(default=6, ge=1, le=20)
    export_jobs_table: str = Field(min_length=1)
    export_callback_base_url: str
    export_fields: tuple[str, ...] = Field(default=DEFAULT_EXPORT_FIELDS, min_length=1)
    export_output_format: Literal["zip", "gzip"] = "gzip"
    export_job_ttl_days: int = Field(default=400, ge=1, le=3650)
    time_reserve_seconds: float = Field(default=2.0, ge=0.5, le=60)

    @field_validator("braze_rest_endpoint")
    @classmethod
    def _known_braze_host(cls, value: str) -> str:
        from braze_forwarder.braze.endpoints import check_rest_endpoint

        return check_rest_endpoint(value)

    @field_validator("export_callback_base_url")
    @classmethod
    def _callback_base(cls, value: str) -> str:
        from braze_forwarder.exports.urls import check_callback_base_url

        return check_callback_base_url(value)

    @field_validator("export_fields", mode="before")
    @classmethod
    def _split_fields(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("export_fields")
    @classmethod
    def _documented_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - GCG_EXPORT_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown fields {', '.join(unknown)}; Braze accepts {', '.join(sorted(GCG_EXPORT_FIELDS))}"
            )
        return tuple(dict.fromkeys(value))


class ExportUrlSettings(Settings):
    """Where a download url from Braze may point (checked by the callback, and again by the copier)."""

    # Empty = the default allow-list in exports/urls.py (validated like an explicit one).
    export_url_allowed_hosts: tuple[str, ...] = Field(default=(), validate_default=True)
    # Plain-HTTP loopback URLs (the local Braze sandbox). Deliberately not a template parameter:
    # only the tests and the local stack set it.
    export_url_allow_loopback: bool = False

    @field_validator("export_url_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("export_url_allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from braze_forwarder.exports.urls import DEFAULT_ALLOWED_HOSTS, check_host_pattern

        return tuple(check_host_pattern(pattern) for pattern in value or DEFAULT_ALLOWED_HOSTS)


class ExportCallbackSettings(ExportUrlSettings):
    """ExportCallbackFunction: check the token, find the export's files, enqueue one copy task each."""

    export_jobs_table: str = Field(min_length=1)
    copy_tasks_queue_url: str = Field(min_length=1)
    braze_export_bucket: str = ""  # empty: no own bucket configured in Braze, every export comes as a url
    max_callback_body_bytes: int = Field(default=64 * KIB, ge=1 * KIB, le=1 * MIB)


class ExportCopierSettings(ExportUrlSettings):
    """ExportCopierFunction: stream one export file into the lake as gzip NDJSON."""

    export_jobs_table: str = Field(min_length=1)
    lake_bucket: str = Field(min_length=1)
    braze_export_bucket: str = ""
    export_url_max_bytes: int = Field(default=1024 * MIB, ge=1 * MIB, le=10 * 1024 * MIB)
    export_url_timeout_seconds: float = Field(default=300.0, ge=5, le=900)
    # S3 multipart parts are 5 MiB at least; the copier spools each part on /tmp, not in memory.
    lake_part_bytes: int = Field(default=8 * MIB, ge=5 * MIB, le=512 * MIB)
    export_max_line_bytes: int = Field(default=16 * MIB, ge=64 * KIB, le=256 * MIB)


S = TypeVar("S", bound=Settings)


@functools.cache
def settings(kind: type[S]) -> S:
    """The validated settings of one kind, read once per execution environment."""
    return kind.from_environ()  # type: ignore[return-value]

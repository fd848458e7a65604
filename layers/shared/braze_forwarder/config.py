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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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

    @field_validator("braze_rest_endpoint")
    @classmethod
    def _known_braze_host(cls, value: str) -> str:
        from braze_forwarder.braze.endpoints import check_rest_endpoint

        return check_rest_endpoint(value)


S = TypeVar("S", bound=Settings)


@functools.cache
def settings(kind: type[S]) -> S:
    """The validated settings of one kind, read once per execution environment."""
    return kind.from_environ()  # type: ignore[return-value]

"""Typed settings, read from environment variables once per execution environment.

Every setting is an environment variable named after its field in upper case, with the unit in its
name. A missing or invalid value fails the cold start with a message naming the variable, so a bad
deployment shows up in the first invocation's log instead of as odd behaviour later.

Plain dataclasses rather than pydantic: loading pydantic and building its models cost about 60 ms
of every cold start, for a dozen numbers and names read once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from braze_forwarder import user_order
from braze_forwarder.url_policy import DEFAULT_ALLOWED_HOSTS, check_callback_base_url, check_host_pattern

KIB = 1024
MIB = 1024 * KIB
SQS_MAX_MESSAGE_BYTES = 1 * MIB

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class ConfigurationError(RuntimeError):
    """The function's environment is missing a setting or holds an invalid one."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    pattern: str | None = None,
    check: Callable[[Any], Any] | None = None,
) -> Any:
    """A setting's default and limits; `check` may normalise the value or raise ValueError."""
    limits = {"ge": ge, "gt": gt, "le": le, "min_length": min_length, "pattern": pattern, "check": check}
    return dataclasses.field(default=default, metadata={k: v for k, v in limits.items() if v is not None})


T = TypeVar("T")


@typing.dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(dataclasses.field, setting))
def settings_class(cls: type[T]) -> type[T]:
    """A settings class: a frozen, keyword-only dataclass (a function, so type checkers see one).

    Nothing is generated but what freezes it: Settings.__init__ serves every class, and nothing
    compares or prints settings (each kind is read once, `settings`). Generating an __init__,
    __eq__, __hash__ and __repr__ for each class was two thirds of this module's import, paid by
    every function's cold start (`make bench`).
    """
    return dataclasses.dataclass(frozen=True, kw_only=True, init=False, eq=False, repr=False)(cls)


@settings_class
class Settings:
    """Base of every function's settings: fields are converted and checked when the object is made."""

    def __init__(self, **values: Any) -> None:
        """Keyword arguments only, one per field; a field without a default is required."""
        for spec in dataclasses.fields(self):
            if spec.name in values:
                value = values.pop(spec.name)
            elif spec.default is not dataclasses.MISSING:
                value = spec.default
            elif spec.default_factory is not dataclasses.MISSING:
                value = spec.default_factory()
            else:
                raise TypeError(f"{type(self).__name__}() missing the keyword argument {spec.name!r}")
            object.__setattr__(self, spec.name, value)
        if values:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments: {', '.join(sorted(values))}")
        self.__post_init__()

    def __post_init__(self) -> None:
        cls: type = type(self)  # annotated: mypy takes type[Settings] for unhashable (the class object is hashable)
        hints = _type_hints(cls)
        problems = []
        for spec in dataclasses.fields(self):
            try:
                value = _checked(_converted(getattr(self, spec.name), hints[spec.name]), spec.metadata)
            except ValueError as exc:
                problems.append(f"{spec.name.upper()}: {exc}")
            else:
                object.__setattr__(self, spec.name, value)
        if not problems:
            problems = [f"{name.upper()}: {message}" for name, message in self._problems_together().items()]
        if problems:
            raise ConfigurationError(f"invalid configuration for {type(self).__name__}: {'; '.join(problems)}")

    def _problems_together(self) -> dict[str, str]:
        """Rules that involve several settings: field name → what is wrong."""
        return {}

    @classmethod
    def required(cls) -> frozenset[str]:
        """The fields without a default: their environment variables must be set."""
        return frozenset(
            spec.name
            for spec in dataclasses.fields(cls)
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        )

    @classmethod
    def from_environ(cls: type[S], environ: Mapping[str, str] = os.environ) -> S:
        names = [spec.name for spec in dataclasses.fields(cls)]
        missing = sorted(name.upper() for name in cls.required() if name.upper() not in environ)
        if missing:
            problems = "; ".join(f"{name}: is required" for name in missing)
            raise ConfigurationError(f"invalid configuration for {cls.__name__}: {problems}")
        return cls(**{name: environ[name.upper()] for name in names if name.upper() in environ})


S = TypeVar("S", bound=Settings)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _converted(value: Any, kind: Any) -> Any:
    """An environment string (or an already typed value) as `kind`."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        return _as_literal(value, typing.get_args(kind))
    if origin is tuple:
        return _as_string_tuple(value)
    if kind is bool:
        return _as_bool(value)
    if kind is int:
        return _as_int(value)
    if kind is float:
        return _as_float(value)
    if kind is str:
        return _as_str(value)
    raise TypeError(f"settings of type {kind} are not supported")  # a programming error, not configuration


def _as_literal(value: Any, allowed: tuple[Any, ...]) -> Any:
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(map(str, allowed))}, not {value!r}")
    return value


def _as_string_tuple(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise ValueError("must be a comma-separated list")
    return tuple(item.strip() for item in items if item.strip())


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"must be true or false, not {value!r}")


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"must be a whole number, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be a whole number, not {value!r}") from None


def _as_float(value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"must be a number, not {value!r}")
    return number


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text, not {value!r}")
    return value


def _checked(value: Any, limits: Mapping[str, Any]) -> Any:
    if "ge" in limits and value < limits["ge"]:
        raise ValueError(f"must be at least {limits['ge']}, not {value}")
    if "gt" in limits and value <= limits["gt"]:
        raise ValueError(f"must be more than {limits['gt']}, not {value}")
    if "le" in limits and value > limits["le"]:
        raise ValueError(f"must be at most {limits['le']}, not {value}")
    if "min_length" in limits and len(value) < limits["min_length"]:
        raise ValueError("must not be empty" if limits["min_length"] == 1 else f"needs {limits['min_length']} items")
    if "pattern" in limits and not re.fullmatch(limits["pattern"], value):
        raise ValueError(f"must match {limits['pattern']}")
    if "check" in limits:
        value = limits["check"](value)
    return value


def _braze_endpoint(value: str) -> str:
    from braze_forwarder.braze.endpoints import check_rest_endpoint

    return check_rest_endpoint(value)


def _google_url(value: str) -> str:
    """An https URL, or http on loopback: Google's own endpoints, or the stand-ins of tests and the local stack."""
    parts = urlsplit(value)
    loopback = parts.hostname in {"127.0.0.1", "localhost", "::1"}
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ValueError("must be an https URL (or http on 127.0.0.1 for a local stand-in)")
    return value


# Apple Root CA - G3 (www.apple.com/certificateauthority), the root of the App Store's signing chain;
# the same value as Apple's published fingerprint (checked in tests/unit/test_app_store_jws.py).
APPLE_ROOT_CA_G3_SHA256 = "63343abfb89a6a03ebb57e9b3f5fa7be7c4f5c756f3017b3a8c488c3653e9179"
APP_STORE_ENVIRONMENTS = ("Production", "Sandbox")


def _app_store_environments(values: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [value for value in values if value not in APP_STORE_ENVIRONMENTS]
    if unknown or not values:
        raise ValueError(f"must be a comma-separated list of {', '.join(APP_STORE_ENVIRONMENTS)}")
    return values


def _sha256_fingerprints(values: tuple[str, ...]) -> tuple[str, ...]:
    """Hex SHA-256 fingerprints, with or without colons, in lower case."""
    normalised = tuple(value.replace(":", "").lower() for value in values)
    if not normalised or not all(re.fullmatch(r"[0-9a-f]{64}", value) for value in normalised):
        raise ValueError("must be a comma-separated list of hex SHA-256 certificate fingerprints")
    return normalised


@settings_class
class IngestSettings(Settings):
    """IngestApiFunction: authenticate, validate, queue."""

    events_queue_url: str = setting(min_length=1)
    ingest_keys_secret_arn: str = setting(min_length=1)
    idempotency_table: str = setting(min_length=1)
    user_order_table: str = setting(min_length=1)
    max_body_bytes: int = setting(default=4 * MIB, ge=1 * KIB, le=6 * MIB)
    max_message_bytes: int = setting(default=256 * KIB, ge=16 * KIB, le=SQS_MAX_MESSAGE_BYTES)
    max_json_depth: int = setting(default=32, ge=4, le=256)
    ingest_keys_max_age_seconds: int = setting(default=300, ge=0, le=3600)
    idempotency_ttl_seconds: int = setting(default=24 * 3600, ge=60, le=7 * 24 * 3600)
    # How long deletes and merges wait in the queue (docs/ordering.md, the fence): the sender's
    # snapshot life and Braze timeouts, which this function does not read; default from the
    # sender's defaults (3.05 s connect, 15 s read). SQS delays at most 900 s.
    order_fence_seconds: int = setting(default=user_order.fence_seconds(3.05, 15.0), ge=10, le=900)


@settings_class
class WebhookSettings(IngestSettings):
    """IngestApiFunction's POST /webhooks/{provider}: the ingest settings plus signing, dedupe and user lookup."""

    webhook_secrets_arn: str = setting(min_length=1)
    webhook_secrets_max_age_seconds: int = setting(default=300, ge=0, le=3600)
    # Providers retry for about three days (Stripe, Paddle); an event id forgotten sooner could be
    # counted twice when a late retry arrives.
    webhook_dedupe_ttl_seconds: int = setting(default=7 * 24 * 3600, ge=3 * 24 * 3600, le=30 * 24 * 3600)
    rejected_bucket: str = setting(min_length=1)
    stripe_live_mode: bool = False
    # Stripe metadata keys are at most 40 characters.
    stripe_user_metadata_key: str = setting(default="braze_external_id", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    stripe_tolerance_seconds: int = setting(default=300, ge=5, le=3600)
    paddle_tolerance_seconds: int = setting(default=300, ge=5, le=3600)
    paddle_user_custom_data_key: str = setting(default="braze_external_id", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Google Play real-time developer notifications (ingest/webhooks/google_play.py, docs/google-play.md).
    google_play_package_name: str = setting(default="", pattern=r"^([A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+)?$")
    google_play_push_audience: str = setting(default="", pattern=r"^[\x21-\x7e]{0,512}$")
    google_play_push_service_account: str = setting(default="", pattern=r"^([^@\s]{1,64}@[^@\s]{1,255})?$")
    google_play_certs_url: str = setting(default="https://www.googleapis.com/oauth2/v1/certs", check=_google_url)
    google_play_token_clock_skew_seconds: int = setting(default=10, ge=0, le=300)
    google_play_service_account_secret_arn: str = ""
    google_play_api_base_url: str = setting(default="https://androidpublisher.googleapis.com", check=_google_url)
    google_play_token_url: str = setting(default="https://oauth2.googleapis.com/token", check=_google_url)
    google_play_api_timeout_seconds: float = setting(default=10.0, gt=0, le=60)
    # App Store Server Notifications V2 (ingest/webhooks/app_store.py). No bundle id: every
    # notification is refused, as a provider without a signing secret is.
    app_store_bundle_id: str = setting(default="", pattern=r"^[A-Za-z0-9.-]{0,155}$")
    app_store_app_apple_id: int = setting(default=0, ge=0)  # 0: not checked (Apple's id of the app, in production)
    # Production only by default: Sandbox purchases are test money and stay out of a production workspace.
    app_store_environments: tuple[str, ...] = setting(default=("Production",), check=_app_store_environments)
    app_store_use_app_account_token: bool = True
    # The SHA-256 of the root certificates an x5c chain may end in: Apple Root CA - G3 only, unless the
    # local stack or a test adds its own test CA.
    app_store_trusted_root_sha256: tuple[str, ...] = setting(
        default=(APPLE_ROOT_CA_G3_SHA256,), check=_sha256_fingerprints
    )


@settings_class
class SenderSettings(Settings):
    """BrazeSenderFunction: pack, send, record."""

    braze_rest_endpoint: str = setting(check=_braze_endpoint)
    braze_api_key_secret_arn: str = setting(min_length=1)
    braze_track_batch_mode: Literal["total", "per_array"] = "total"
    braze_track_batch_limit: int = setting(default=75, ge=1, le=75)
    braze_identify_batch_limit: int = setting(default=50, ge=1, le=50)
    braze_delete_batch_limit: int = setting(default=50, ge=1, le=50)
    braze_alias_batch_limit: int = setting(default=50, ge=1, le=50)
    braze_merge_batch_limit: int = setting(default=50, ge=1, le=50)
    braze_max_in_flight: int = setting(default=8, ge=1, le=64)
    braze_connect_timeout_seconds: float = setting(default=3.05, gt=0, le=30)
    braze_read_timeout_seconds: float = setting(default=15.0, gt=0, le=120)
    braze_max_attempts: int = setting(default=6, ge=1, le=20)
    braze_api_key_max_age_seconds: int = setting(default=300, ge=0, le=3600)
    braze_max_request_bytes: int = setting(default=3_500_000, ge=64 * KIB, le=4_000_000)
    ledger_table: str = setting(min_length=1)
    ledger_ttl_seconds: int = setting(default=14 * 24 * 3600, ge=3600)
    rejected_bucket: str = setting(min_length=1)
    rejected_prefix: str = "rejected/"
    time_reserve_seconds: float = setting(default=5.0, ge=0.5, le=60)
    # Delta sending (delivery.savings): off, the last-sent store is neither read nor written.
    delta_sending_enabled: bool = False
    attribute_state_table: str = ""
    attribute_state_ttl_seconds: int = setting(default=90 * 24 * 3600, ge=3600, le=400 * 24 * 3600)
    user_order_table: str = setting(min_length=1)
    events_queue_url: str = setting(min_length=1)
    # Objects held behind an undelivered delete, alias or merge come back as a new message this much later.
    order_hold_delay_seconds: int = setting(default=20, ge=1, le=900)
    # The rate budget every sender invocation shares (delivery.rate_budget), at most Braze's figures:
    # /users/track 3,000 per 3 s, the identify/delete/alias/merge family 20,000 per minute.
    rate_budget_enabled: bool = False
    rate_budget_table: str = ""
    braze_track_requests_per_second: float = setting(default=800.0, gt=0, le=1000)
    braze_user_data_requests_per_minute: float = setting(default=16_000.0, gt=0, le=20_000)
    rate_budget_lease_requests: int = setting(default=10, ge=1, le=1000)

    def _problems_together(self) -> dict[str, str]:
        problems = {}
        if self.delta_sending_enabled and not self.attribute_state_table:
            problems["attribute_state_table"] = "must name the attribute state table when DELTA_SENDING_ENABLED is true"
        if self.rate_budget_enabled and not self.rate_budget_table:
            problems["rate_budget_table"] = "must name the rate budget table when RATE_BUDGET_ENABLED is true"
        return problems


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


def _documented_fields(fields: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(fields) - GCG_EXPORT_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {', '.join(unknown)}; Braze accepts {', '.join(sorted(GCG_EXPORT_FIELDS))}")
    return tuple(dict.fromkeys(fields))


def _callback_base(value: str) -> str:
    return check_callback_base_url(value)


def _host_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(check_host_pattern(pattern) for pattern in patterns or DEFAULT_ALLOWED_HOSTS)


@settings_class
class ExportStarterSettings(Settings):
    """ExportStarterFunction: create the job, ask Braze for the global control group export."""

    braze_rest_endpoint: str = setting(check=_braze_endpoint)
    braze_api_key_secret_arn: str = setting(min_length=1)
    braze_api_key_max_age_seconds: int = setting(default=300, ge=0, le=3600)
    braze_connect_timeout_seconds: float = setting(default=3.05, gt=0, le=30)
    braze_read_timeout_seconds: float = setting(default=15.0, gt=0, le=120)
    braze_max_attempts: int = setting(default=6, ge=1, le=20)
    export_jobs_table: str = setting(min_length=1)
    export_callback_base_url: str = setting(check=_callback_base)
    export_fields: tuple[str, ...] = setting(default=DEFAULT_EXPORT_FIELDS, min_length=1, check=_documented_fields)
    export_output_format: Literal["zip", "gzip"] = "gzip"
    export_job_ttl_days: int = setting(default=400, ge=1, le=3650)
    time_reserve_seconds: float = setting(default=2.0, ge=0.5, le=60)


@settings_class
class ExportUrlSettings(Settings):
    """Where a download url from Braze may point (checked by the callback, and again by the copier)."""

    # Empty = the default allow-list in url_policy.py (validated like an explicit one).
    export_url_allowed_hosts: tuple[str, ...] = setting(default=(), check=_host_patterns)
    # Plain-HTTP loopback URLs (the local Braze sandbox). Deliberately not a template parameter:
    # only the tests and the local stack set it.
    export_url_allow_loopback: bool = False


@settings_class
class ExportCallbackSettings(ExportUrlSettings):
    """ExportCallbackFunction: check the token, find the export's files, enqueue one copy task each."""

    export_jobs_table: str = setting(min_length=1)
    copy_tasks_queue_url: str = setting(min_length=1)
    braze_export_bucket: str = ""  # empty: no own bucket configured in Braze, every export comes as a url
    max_callback_body_bytes: int = setting(default=64 * KIB, ge=1 * KIB, le=1 * MIB)


@settings_class
class ExportCopierSettings(ExportUrlSettings):
    """ExportCopierFunction: stream one export file into the lake as gzip NDJSON."""

    export_jobs_table: str = setting(min_length=1)
    lake_bucket: str = setting(min_length=1)
    braze_export_bucket: str = ""
    export_url_max_bytes: int = setting(default=1024 * MIB, ge=1 * MIB, le=10 * 1024 * MIB)
    export_url_timeout_seconds: float = setting(default=300.0, ge=5, le=900)
    # S3 multipart parts are 5 MiB at least; the copier spools each part on /tmp, not in memory.
    lake_part_bytes: int = setting(default=8 * MIB, ge=5 * MIB, le=512 * MIB)
    export_max_line_bytes: int = setting(default=16 * MIB, ge=64 * KIB, le=256 * MIB)


@settings_class
class ImportSettings(Settings):
    """ImportStarterFunction and ImportWorkerFunction: split a file into ranges, queue its rows."""

    imports_table: str = setting(min_length=1)
    import_tasks_queue_url: str = setting(min_length=1)
    events_queue_url: str = setting(min_length=1)
    rejected_bucket: str = setting(min_length=1)
    import_bucket: str = ""  # the bucket whose drops start imports (the template's ImportBucket)
    # 8-64 MiB a range in production; tests and the local stack use small ones to get several.
    import_range_bytes: int = setting(default=32 * MIB, ge=16 * KIB, le=1024 * MIB)
    import_chunk_rows: int = setting(default=1000, ge=1, le=10_000)
    import_max_line_bytes: int = setting(default=1 * MIB, ge=1 * KIB, le=16 * MIB)
    max_message_bytes: int = setting(default=256 * KIB, ge=16 * KIB, le=SQS_MAX_MESSAGE_BYTES)
    import_ttl_days: int = setting(default=30, ge=1, le=400)
    # Stop this long before the timeout and hand the range to a fresh invocation.
    time_reserve_seconds: float = setting(default=20.0, ge=0.5, le=300)
    # A range's lease: at least the worker's timeout, so a live worker never loses it.
    import_lease_seconds: int = setting(default=900, ge=1, le=3600)
    # The sender's delivery ledger, read when a crashed range resumes ("" = not read): envelopes of
    # the interrupted chunk a sender already received are not queued again.
    ledger_table: str = ""
    # A resumed range whose interrupted chunk may still wait on EventsQueue looks again this much
    # later (its task goes back with this DelaySeconds; SQS allows 900 at most) ...
    import_resume_recheck_seconds: int = setting(default=60, ge=1, le=900)
    # ... and sends what it still cannot place once the chunk's send is this old (other traffic can
    # keep the queue from ever draining); counted in ImportEnvelopesMaybeQueuedTwice.
    import_resume_wait_seconds: int = setting(default=900, ge=0, le=24 * 3600)
    # An empty reading of EventsQueue counts only once the chunk's send is this old: SQS's counts "may
    # not achieve consistency until at least 1 minute after the producers stop sending" (GetQueueAttributes).
    import_queue_counts_settle_seconds: int = setting(default=60, ge=0, le=900)


@functools.cache
def settings(kind: type[S]) -> S:
    """The validated settings of one kind, read once per execution environment."""
    return kind.from_environ()


@settings_class
class ErasureSettings(Settings):
    """RejectsEraserFunction: take deleted users' objects out of the rejected-objects store, daily."""

    rejected_bucket: str = setting(min_length=1)
    user_order_table: str = setting(min_length=1)
    # Stop reading files this long before the timeout; the next run reads what is left.
    time_reserve_seconds: float = setting(default=30.0, ge=1, le=300)

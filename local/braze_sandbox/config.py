"""How the sandbox behaves (`SandboxConfig`) and what it records of each call (`RecordedRequest`)."""

from dataclasses import dataclass, field
from typing import Any

from local.braze_sandbox.rules import (
    DEFAULT_GCG_SEGMENT_ID,
    DEFAULT_MAX_PAYLOAD_BYTES,
    RATE_LIMIT_HEADER_CHOICES,
    TRACK_BATCH_MODES,
)


@dataclass
class SandboxConfig:
    """How the sandbox behaves. Mutable at runtime: every request reads the current values."""

    api_key: str = "sandbox-rest-key"
    track_batch_mode: str = "total"  # "total" | "per_array" (§2.8)
    track_batch_limit: int = 75  # §2.8
    identify_batch_limit: int = 50  # §5
    rate_limit_requests: int = 3000  # §2.9: 3,000 requests per 3 seconds
    rate_limit_window_seconds: float = 3.0
    rate_limit_header_style: str = "retry_after"  # see RATE_LIMIT_HEADER_CHOICES and §4
    error_rate: float = 0.0
    rate_limited_rate: float = 0.0
    latency_seconds: float = 0.0
    drop_rate: float = 0.0
    drop_after_processing_rate: float = 0.0
    timeout_rate: float = 0.0
    export_bucket: str | None = None
    s3_endpoint_url: str | None = None
    export_users_per_file: int = 5000  # §7 "one file per ~5,000 users"
    seed: int | None = None
    # Additions beyond the agreed list; all have defaults.
    blocked_external_ids: set[str] = field(default_factory=set)  # → BLACKLISTED_EXTERNAL_USER_ID
    control_group_users: list[dict[str, Any]] = field(default_factory=list)  # export-shaped users
    timeout_sleep_seconds: float = 30.0
    injected_retry_after_seconds: int = 1  # the wait announced by injected (not real) 429s
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    export_delay_seconds: float = 0.05  # before the export files are written
    gcg_segment_id: str = DEFAULT_GCG_SEGMENT_ID
    callback_timeout_seconds: float = 5.0
    s3_region: str | None = None  # None: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1
    # §6: /users/delete, /users/alias/new and /users/merge take at most 50 identifiers, aliases, merges.
    delete_batch_limit: int = 50
    alias_batch_limit: int = 50
    merge_batch_limit: int = 50
    # §2.9: identify, alias/new, merge and delete share 20,000 requests a minute (USER_DATA_FAMILY_PATHS).
    user_data_rate_limit_requests: int = 20000
    user_data_rate_limit_window_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.track_batch_mode not in TRACK_BATCH_MODES:
            raise ValueError(f"track_batch_mode must be one of {TRACK_BATCH_MODES}")
        if self.rate_limit_header_style not in RATE_LIMIT_HEADER_CHOICES:
            raise ValueError(f"rate_limit_header_style must be one of {RATE_LIMIT_HEADER_CHOICES}")
        for name in ("error_rate", "rate_limited_rate", "drop_rate", "drop_after_processing_rate",
                     "timeout_rate"):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in ("track_batch_limit", "identify_batch_limit", "rate_limit_requests",
                     "export_users_per_file", "max_payload_bytes", "delete_batch_limit",
                     "alias_batch_limit", "merge_batch_limit", "user_data_rate_limit_requests"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("rate_limit_window_seconds", "user_data_rate_limit_window_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


@dataclass
class RecordedRequest:
    """A request the sandbox received on a Braze route (the /sandbox/* routes are not recorded)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any  # parsed body, None when empty or not JSON
    status: int | None = None  # None: no answer reached the client (dropped, or the client gave up)
    time: float = 0.0  # epoch seconds when received
    fault: str | None = None  # "scripted", "drop", "error", "rate_limited", "timeout", "client_gone", ...
    # Braze applied the call (all of it but the objects `errors` names), whether or not its answer
    # reached the client: what counts deliveries, where `status` only says what the client heard.
    processed: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)  # a processed call's errors[] entries
    rate_limit_style: str | None = None  # the header style of a 429 answer

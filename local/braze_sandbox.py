"""A local stand-in for Braze's REST API, served over real HTTP on loopback.

Two uses:

* integration tests of the sender script it (`BrazeSandbox.script`) to answer anything, and inspect
  the requests it received (`BrazeSandbox.requests`);
* the local stack (`make run`) and the soak test run it as a realistic Braze: limits, per-object
  validation, rate-limit headers and 429s, the global-control-group export with files and callback,
  and random faults (500, 429, dropped connections, timeouts) at configurable rates.

It keeps the resulting user profiles (attributes, event and purchase tallies, aliases, data points)
so that what the forwarder did can be looked at, in Python or over `GET /sandbox/users/...`.

This is a model of Braze written from /work/shared/BRAZE_API.md (section numbers "§n" below refer
to it), deliberately independent of the forwarder's own validator: sharing that code would make the
sandbox agree with the forwarder's mistakes. Where Braze documents no error code for a rule, the
sandbox uses a code of its own in Braze's `BAD_*` style (see `SANDBOX_ERROR_TYPES`).

Run in the foreground:  python -m local.braze_sandbox --port 8181 --error-rate 0.05
"""

import argparse
import contextlib
import copy
import gzip
import hmac
import io
import json
import logging
import math
import os
import random
import re
import select
import signal
import socket
import sys
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

import requests

logger = logging.getLogger("braze_sandbox")

# --------------------------------------------------------------------------------------------------
# Braze's numbers and names
# --------------------------------------------------------------------------------------------------

TRACK_PATH = "/users/track"
IDENTIFY_PATH = "/users/identify"
GCG_EXPORT_PATH = "/users/export/global_control_group"

# §2.1: attributes are processed first, then events, then purchases.
TRACK_ARRAYS = ("attributes", "events", "purchases")
IDENTIFY_ARRAYS = ("aliases_to_identify", "emails_to_identify", "phone_numbers_to_identify")

PRIMARY_IDENTIFIERS = ("external_id", "user_alias", "braze_id")  # §2.2: at most one per object
SECONDARY_IDENTIFIERS = ("email", "phone")  # §2.2: lookup only without a primary; email wins

MAX_EXTERNAL_ID_BYTES = 987  # §2.10 EXTERNAL_USER_ID_TOO_LARGE, §11.10 (UTF-8 bytes)
MAX_NAME_CHARS = 255  # §2.6 event names and property keys, §2.7 product_id
MAX_PURCHASE_QUANTITY = 100  # §2.7
EVENT_PROPERTIES_MAX_BYTES = 100 * 1024  # §2.6 [newer]
PURCHASE_PROPERTIES_MAX_BYTES = 50 * 1024  # §2.7 (purchase-object page)
RESERVED_PROPERTY_KEYS = frozenset({"time", "event_name"})  # §2.6
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # §2.8 "payloads up to 4 MB" (413 above); MiB assumed

SUBSCRIPTION_STATES = frozenset({"opted_in", "subscribed", "unsubscribed"})  # §2.4, §2.10
SUBSCRIPTION_GROUP_STATES = frozenset({"subscribed", "unsubscribed"})  # §2.10
PRIORITIZATION_VALUES = frozenset(
    {"identified", "unidentified", "most_recently_updated", "least_recently_updated"}  # §5
)

# Keys of an attributes object that steer processing instead of being written to the profile.
CONTROL_KEYS = frozenset(
    {"external_id", "user_alias", "braze_id", "_update_existing_only", "push_token_import", "_merge_objects"}
)
# §10: subscription state changes (global and per group) are not billable; push tokens are data
# Braze collects by default, also not billable.
FREE_ATTRIBUTES = frozenset({"email_subscribe", "push_subscribe", "subscription_groups", "push_tokens"})

# §2.4 reserved profile fields; everything else an attributes object sets is a custom attribute.
RESERVED_ATTRIBUTES = frozenset(
    {
        "first_name", "last_name", "home_city", "email", "country", "language", "dob", "gender",
        "phone", "time_zone", "email_subscribe", "push_subscribe", "subscription_groups",
        "current_location", "date_of_first_session", "date_of_last_session",
        "marked_email_as_spam_at", "email_open_tracking_disabled", "email_click_tracking_disabled",
        "push_tokens", "image_url", "facebook", "twitter", "bio", "external_id", "braze_id",
        "alias_name", "alias_label",
    }
)  # fmt: skip
# §7: reserved fields that the export writes at the top level of each user object.
EXPORTED_PROFILE_FIELDS = (
    "first_name", "last_name", "email", "dob", "home_city", "country", "phone", "language",
    "time_zone", "gender", "attributed_campaign", "attributed_source", "attributed_adgroup",
    "attributed_ad",
)  # fmt: skip
# §7: the values `fields_to_export` accepts for the global control group export.
GCG_EXPORT_FIELDS = frozenset(
    {
        "apps", "attributed_campaign", "attributed_source", "attributed_adgroup", "attributed_ad",
        "braze_id", "country", "created_at", "custom_attributes", "custom_events", "devices", "dob",
        "email", "external_id", "first_name", "gender", "home_city", "language", "last_coordinates",
        "last_name", "phone", "purchases", "random_bucket", "time_zone", "total_revenue",
        "uninstalled_at", "user_aliases",
    }
)  # fmt: skip
# §7: the GCG export lands under segment-export/<SEGMENT_ID>/...; the id below is the sandbox's own.
DEFAULT_GCG_SEGMENT_ID = "7f3c1e52-0d4b-4c6a-9e21-5b8d0a6f3c90"
CONTROL_GROUP_ATTRIBUTE = "global_control_group"

# Error codes Braze documents (§2.10) that the sandbox emits.
BRAZE_ERROR_TYPES = frozenset(
    {
        "BAD_EMAIL_SUBSCRIPTION_STATE", "BAD_LOCATION_UPDATE", "BAD_PUSH_SUBSCRIPTION_STATE",
        "BAD_PUSH_TOKEN_IMPORT", "BAD_PUSH_TOKEN_STRING", "BAD_PUSH_TOKEN_VALUE",
        "BAD_SUBSCRIPTION_GROUP_ARRAY", "BAD_SUBSCRIPTION_GROUP_HASH", "BAD_SUBSCRIPTION_GROUP_ID",
        "BAD_SUBSCRIPTION_GROUP_STATE", "BLACKLISTED_EXTERNAL_USER_ID", "EMAIL_BAD_FORMAT",
        "EXTERNAL_USER_ID_TOO_LARGE",
    }
)  # fmt: skip
# [inf] Rules Braze documents without naming an error code; these names are the sandbox's own.
SANDBOX_ERROR_TYPES = frozenset(
    {
        "NO_USER_IDENTIFIER", "MULTIPLE_PRIMARY_IDENTIFIERS", "BAD_USER_IDENTIFIER",
        "BAD_EVENT_NAME", "BAD_EVENT_TIME", "BAD_EVENT_PROPERTIES", "BAD_PRODUCT_ID",
        "BAD_CURRENCY", "BAD_PRICE", "BAD_QUANTITY", "BAD_PURCHASE_TIME",
        "BAD_PURCHASE_PROPERTIES", "BAD_PRIORITIZATION",
    }
)  # fmt: skip

TRACK_BATCH_MODES = ("total", "per_array")
RATE_LIMIT_HEADER_STYLES = ("retry_after", "reset_epoch", "reset_seconds", "none")
# Not a variant of Braze's but a sandbox mode: each 429 takes the next style in turn, so one run
# meets every variant a client must understand (other answers carry the epoch X-RateLimit-Reset).
RATE_LIMIT_HEADER_ROTATION = "rotate"
RATE_LIMIT_HEADER_CHOICES = (*RATE_LIMIT_HEADER_STYLES, RATE_LIMIT_HEADER_ROTATION)
EXPORT_OUTPUT_FORMATS = ("zip", "gzip")

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")  # §2.7 ISO 4217 alphabetic; case not documented
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# §2.6: Braze's legacy event time format yyyy-MM-dd'T'HH:mm:ss:SSSZ (colon before the milliseconds).
_LEGACY_TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}):(\d{3})(Z|[+-]\d{2}:?\d{2})$")

_DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # read and discard oversize bodies up to this, then just close


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


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
                     "export_users_per_file", "max_payload_bytes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.rate_limit_window_seconds <= 0:
            raise ValueError("rate_limit_window_seconds must be positive")


@dataclass
class ScriptedResponse:
    """One answer that overrides the sandbox's normal behaviour for the next matching call.

    A scripted call skips auth, the rate limiter's refusal and the random faults (it still uses up
    the window). `body=None` answers Braze's usual body for `status` — or, with `process=True` and
    the status the processing produced, that real body. `headers` are laid over the usual rate-limit
    headers (case-insensitively). `errors_for(request_json)` adds `errors[]` entries to the body; with
    `process=True` the objects they name (`input_array`, `index`) are not applied.
    """

    status: int = 201
    body: dict[str, Any] | list[Any] | str | bytes | None = None  # str/bytes are sent verbatim
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    drop_connection: bool = False
    process: bool = False
    path: str | None = None
    errors_for: Callable[[Any], list[dict[str, Any]]] | None = None


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


@dataclass
class CallbackRecord:
    """An export callback the sandbox sent (or tried to)."""

    url: str
    body: dict[str, Any]
    status: int | None  # None when the POST failed
    error: str | None
    time: float


@dataclass
class ExportRecord:
    """One global-control-group export the sandbox accepted."""

    object_prefix: str
    fields: list[str]
    output_format: str
    callback_endpoint: str | None
    url: str | None  # set when there is no export bucket
    bucket: str | None
    s3_endpoint_url: str | None
    users_per_file: int
    status: str = "pending"  # "pending" | "done" | "failed"
    files: list[str] = field(default_factory=list)  # S3 keys, or file names served by the sandbox
    users: int = 0
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


class BrazeSandbox:
    """The HTTP server plus the profile state behind it. Use `start()`/`stop()` or `with`.

    A Braze route answers in this order: a queued script, if one matches; unknown route 404 / wrong
    method 405; latency; drop (unprocessed); auth 401; the rate-limit window (429); injected 500 or
    429 (unprocessed); 413 / 400 / processing; timeout stall (after processing); drop after
    processing. Every non-429 answer carries X-RateLimit-Limit/-Remaining/-Reset.

    Control routes, without auth and not recorded: GET /sandbox/users, GET /sandbox/users/{external_id},
    GET /sandbox/stats, POST /sandbox/reset, GET /sandbox/exports/{object_prefix}/{file}.
    """

    def __init__(self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        if not _is_loopback(host):
            raise ValueError(f"the sandbox binds to loopback only, not {host!r}")
        self.config = config or SandboxConfig()
        self.requests: list[RecordedRequest] = []
        self.callbacks: list[CallbackRecord] = []
        self.exports: list[ExportRecord] = []
        self._host = host
        self._port = port
        self._lock = threading.RLock()  # profiles, records, scripts, stats, random draws
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._export_threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._scripts: list[ScriptedResponse] = []
        self._limiter = _FixedWindowLimiter()
        self._stats = _Stats()
        self._export_files: dict[tuple[str, str], bytes] = {}
        self._seed_random()
        self._store = _ProfileStore(self._data_rng)
        self._routes: dict[str, Callable[[Any, frozenset[tuple[Any, Any]]], _Answer]] = {
            TRACK_PATH: self._track,
            IDENTIFY_PATH: self._identify,
            GCG_EXPORT_PATH: self._export_control_group,
        }
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "BrazeSandbox":
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            # stop() waits for the next poll; tests start and stop a sandbox each, so keep it short.
            kwargs={"poll_interval": 0.02},
            name="braze-sandbox",
            daemon=True,
        )
        self._serve_thread.start()
        logger.info("Braze sandbox listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes requests sleeping in latency/timeout faults and exports
        server.shutdown()
        server.server_close()
        self._close_open_connections()
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=5)
        for thread in list(self._export_threads):
            thread.join(timeout=5)

    def __enter__(self) -> "BrazeSandbox":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- test and operator helpers ----------------------------------------------------------------

    def script(self, *responses: ScriptedResponse) -> None:
        """Queue answers for the next calls, FIFO; a response with `path` waits for that path."""
        with self._lock:
            self._scripts.extend(responses)

    def profile(self, external_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._store.by_external_id(external_id)
            return found.to_json() if found else None

    def alias_profile(self, alias_name: str, alias_label: str) -> dict[str, Any] | None:
        """The profile holding this alias (identified or not)."""
        with self._lock:
            found = self._store.by_alias(alias_name, alias_label)
            return found.to_json() if found else None

    def profiles(self) -> dict[str, dict[str, Any]]:
        """All profiles: identified ones by external_id, others by "alias:<name>:<label>",
        "email:<address>", "phone:<number>" or "braze_id:<id>"."""
        with self._lock:
            found: dict[str, dict[str, Any]] = {}
            for profile in self._store.all():
                key = profile.key()
                # Two anonymous profiles can share an email or phone; the second gets its braze_id.
                found[f"braze_id:{profile.braze_id}" if key in found else key] = profile.to_json()
            return found

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats.to_json(profiles=len(self._store), data_points=self._store.data_points)

    def reset(self) -> None:
        """Forget profiles, requests, scripts, callbacks, exports and counters; reseed the faults."""
        with self._lock:
            self.requests.clear()
            self.callbacks.clear()
            self.exports.clear()
            self._scripts.clear()
            self._export_files.clear()
            self._stats = _Stats()
            self._limiter.reset()
            self._seed_random()
            self._store.clear(self._data_rng)

    def wait_for_exports(self, timeout: float = 10.0) -> bool:
        """Block until every accepted export has finished (files written, callback sent)."""
        deadline = time.monotonic() + timeout
        return all(record.finished.wait(max(0.0, deadline - time.monotonic())) for record in list(self.exports))

    # -- request entry point (called on the server's handler threads) ------------------------------

    def _serve(self, handler: "_Handler") -> None:
        try:
            incoming = _read_incoming(handler, self.config.max_payload_bytes)
        except ValueError as exc:  # e.g. a bad Content-Length: the body cannot be skipped, so close
            handler.close_connection = True
            _write_answer(handler, _Answer(400, {"message": f"Bad Request: {exc}"}))
            return
        except OSError as exc:
            logger.debug("sandbox: could not read the request: %s", exc)
            handler.close_connection = True
            return
        try:
            if incoming.path == "/sandbox" or incoming.path.startswith("/sandbox/"):
                answer: _Answer | None = self._answer_control(incoming)
            else:
                answer = self._answer_recorded(incoming, handler.connection)
        except Exception:  # the server thread must answer whatever happens
            logger.exception("sandbox: unexpected error answering %s %s", incoming.method, incoming.path)
            answer = _Answer(500, {"message": "sandbox internal error"})
        if answer is None:
            _drop_connection(handler)
        else:
            _write_answer(handler, answer)

    def _answer_recorded(self, incoming: "_Incoming", connection: socket.socket) -> "_Answer | None":
        record = RecordedRequest(
            method=incoming.method,
            path=incoming.path,
            query=incoming.query,
            headers=incoming.headers,
            json=incoming.json,
            time=time.time(),
        )
        with self._lock:
            self.requests.append(record)
            self._stats.count_call(incoming.path, _object_count(incoming.path, incoming.json))
        try:
            answer = self._answer_api(incoming, record)
        except Exception:
            logger.exception("sandbox: unexpected error answering %s %s", incoming.method, incoming.path)
            answer = _Answer(500, {"message": "sandbox internal error"})
        if answer is not None and _client_hung_up(connection):
            # The client gave up (e.g. its read timeout) before the answer was ready: it never saw
            # one, so the record says so rather than claiming a status nobody received. A timeout
            # fault keeps its name: the stall is why the client left.
            answer = None
            if record.fault != "timeout":
                record.fault = "client_gone"
        if answer is not None and answer.status != 429 and not _has_rate_headers(answer.headers):
            # §4: every non-429 answer carries the window's headers (401s and 404s included).
            self._with_rate_headers(answer, self._limiter.peek(self.config))
        with self._lock:
            # Set before the answer is written, so a client that has its answer sees the status.
            record.status = answer.status if answer else None
            self._stats.count_status(incoming.path, record.status)
            if answer is not None and answer.rate_limit_style is not None:
                record.rate_limit_style = answer.rate_limit_style
                self._stats.rate_limit_styles[answer.rate_limit_style] += 1
        return answer

    # -- the Braze behaviour: scripts, faults, auth, rate limit, processing -----------------------

    def _answer_api(self, incoming: "_Incoming", record: RecordedRequest) -> "_Answer | None":
        route = self._routes.get(incoming.path)
        script = self._take_script(incoming.path)
        if script is not None:
            record.fault = "scripted_drop" if script.drop_connection else "scripted"
            return self._answer_scripted(script, incoming, route, record)
        if route is None:
            return _Answer(404, {"message": "Not Found"})  # §3 404 = invalid URL
        if incoming.method != "POST":
            return _Answer(405, {"message": f"Method Not Allowed: {incoming.path} takes POST"})

        config = self.config
        draw = self._draw_faults()
        if not self._pause(config.latency_seconds):
            return None
        if draw.drop < config.drop_rate:
            return self._fault(record, "drop", None)
        if not self._authorized(incoming.headers):
            return _unauthorized(incoming.headers)
        window = self._limiter.acquire(config)
        if not window.admitted:
            return self._fault(record, "rate_limited_real", self._rate_limited(window))
        if draw.error < config.error_rate:
            answer = _Answer(500, {"message": "Internal Server Error"})
            return self._fault(record, "error", self._with_rate_headers(answer, window))
        if draw.rate_limited < config.rate_limited_rate:
            return self._fault(record, "rate_limited", self._injected_rate_limited())

        answer = self._process(route, incoming)
        self._note_processed(record, answer)
        if draw.timeout < config.timeout_rate:
            # Processed, then the answer stalls past the client's timeout: an overloaded API that
            # did the work. (drop_rate models the "never processed" side.) Deciding the write first
            # also keeps profile state settled while the client retries.
            self._fault(record, "timeout", None)
            if not self._pause(config.timeout_sleep_seconds):
                return None
        if answer.status < 300 and draw.drop_after < config.drop_after_processing_rate:
            return self._fault(record, "drop_after_processing", None)
        return self._with_rate_headers(answer, window)

    def _answer_scripted(
        self,
        script: ScriptedResponse,
        incoming: "_Incoming",
        route: Callable[..., "_Answer"] | None,
        record: RecordedRequest,
    ) -> "_Answer | None":
        if not self._pause(script.delay_seconds):
            return None
        # A scripted call still uses up the window (Remaining keeps falling) but is never refused.
        window = self._limiter.acquire(self.config, force=True)
        with self._lock:
            self._stats.scripted += 1
        extra_errors = _call_errors_for(script, incoming.json)
        processed = None
        if script.process and route is not None:
            processed = self._process(route, incoming, excluded=_error_positions(extra_errors))
            self._note_processed(record, processed, extra_errors)
        if script.drop_connection:
            return None
        body = script.body
        if body is None:
            if processed is not None and processed.status == script.status:
                body = processed.body
            else:
                body = _default_body(script.status, incoming.path, incoming.json)
        if extra_errors and isinstance(body, dict):
            body = {**body, "errors": [*body.get("errors", []), *extra_errors]}
        if script.status == 429:
            limited = self._injected_rate_limited()
            return _Answer(429, body, _merge_headers(limited.headers, script.headers), limited.rate_limit_style)
        return _Answer(script.status, body, _merge_headers(_rate_headers(self.config, window), script.headers))

    def _process(
        self,
        route: Callable[[Any, frozenset[tuple[Any, Any]]], "_Answer"],
        incoming: "_Incoming",
        excluded: frozenset[tuple[Any, Any]] = frozenset(),
    ) -> "_Answer":
        if incoming.too_large:
            limit = self.config.max_payload_bytes
            return _Answer(413, {"message": f"Payload Too Large: the limit is {limit} bytes"})  # §2.8
        if incoming.json_error is not None:
            return _Answer(400, {"message": f"Bad Request: {incoming.json_error}"})
        return route(incoming.json, excluded)

    def _take_script(self, path: str) -> ScriptedResponse | None:
        with self._lock:
            for position, script in enumerate(self._scripts):
                if script.path is None or _normalize_path(script.path) == path:
                    return self._scripts.pop(position)
        return None

    def _fault(self, record: RecordedRequest, kind: str, answer: "_Answer | None") -> "_Answer | None":
        with self._lock:
            record.fault = kind
            self._stats.faults[kind] += 1
        return answer

    def _draw_faults(self) -> "_FaultDraw":
        # Always five draws per request, in a fixed order, so that a seed gives the same fault
        # sequence whichever rates are switched on.
        with self._lock:
            return _FaultDraw(*(self._fault_rng.random() for _ in range(5)))

    def _pause(self, seconds: float) -> bool:
        """Sleep unless the sandbox is stopping; False means it is stopping."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        # §1/§3: a quoted key ("Bearer \"key\"") is a 401, so the key is compared as sent.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            key.strip().encode("utf-8"), self.config.api_key.encode("utf-8")
        )

    def _rate_limited(self, window: "_Window") -> "_Answer":
        wait = max(0.0, window.reset_at - time.time())
        return self._too_many_requests(window.limit, wait)

    def _injected_rate_limited(self) -> "_Answer":
        return self._too_many_requests(self.config.rate_limit_requests, float(self.config.injected_retry_after_seconds))

    def _too_many_requests(self, limit: int, wait_seconds: float) -> "_Answer":
        style = self.config.rate_limit_header_style
        if style == RATE_LIMIT_HEADER_ROTATION:
            with self._lock:
                style = RATE_LIMIT_HEADER_STYLES[self._rotation % len(RATE_LIMIT_HEADER_STYLES)]
                self._rotation += 1
        headers = _too_many_requests_headers(style, limit, wait_seconds)
        return _Answer(429, {"message": "Rate limit exceeded"}, headers, rate_limit_style=style)

    def _note_processed(
        self, record: RecordedRequest, answer: "_Answer", extra_errors: list[dict[str, Any]] | None = None
    ) -> None:
        """Mark a call Braze applied (a 2xx from processing), with the objects it did not apply."""
        if not 200 <= answer.status < 300:
            return
        errors = answer.body.get("errors", []) if isinstance(answer.body, dict) else []
        with self._lock:
            record.processed = True
            record.errors = [*errors, *(extra_errors or [])]

    def _with_rate_headers(self, answer: "_Answer", window: "_Window") -> "_Answer":
        answer.headers = _merge_headers(_rate_headers(self.config, window), answer.headers)
        return answer

    # -- /users/track ---------------------------------------------------------------------------

    def _track(self, body: Any, excluded: frozenset[tuple[Any, Any]]) -> "_Answer":
        arrays, problem = _track_arrays(body)
        if problem is not None:
            return problem
        limit_problem = _track_limit_problem(arrays, self.config)
        if limit_problem is not None:
            return limit_problem
        blocked = frozenset(self.config.blocked_external_ids)
        errors: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        with self._lock:
            for array in TRACK_ARRAYS:
                objects = arrays.get(array)
                if not objects:
                    continue
                counts[f"{array}_processed"] = 0
                for index, obj in enumerate(objects):
                    if (array, index) in excluded:
                        continue
                    issue = _validate_track_object(array, obj, blocked)
                    if issue is not None:
                        errors.append(issue.entry(array, index))
                        continue
                    self._apply_track_object(array, obj)
                    counts[f"{array}_processed"] += 1
        answer: dict[str, Any] = {"message": "success", **counts}
        if errors:
            answer["errors"] = errors  # §2.10: non-fatal errors; the rest was processed
        return _Answer(201, answer)

    def _apply_track_object(self, array: str, obj: dict[str, Any]) -> None:
        profile = self._store.resolve(obj, create_alias_profile=array == "attributes")
        if profile is None:
            return  # update-only object for an unknown user: accepted, nothing written (§2.3)
        if array == "attributes":
            points = _apply_attributes(profile, obj)
        elif array == "events":
            points = _apply_event(profile, obj)
        else:
            points = _apply_purchase(profile, obj)
        self._store.charge(profile, points)

    # -- /users/identify ------------------------------------------------------------------------

    def _identify(self, body: Any, excluded: frozenset[tuple[Any, Any]]) -> "_Answer":
        arrays, problem = _identify_arrays(body, self.config.identify_batch_limit)
        if problem is not None:
            return problem
        blocked = frozenset(self.config.blocked_external_ids)
        errors: list[dict[str, Any]] = []
        processed = 0
        with self._lock:
            for array in IDENTIFY_ARRAYS:
                for index, entry in enumerate(arrays.get(array, [])):
                    if (array, index) in excluded:
                        continue
                    issue = _validate_identify_entry(array, entry, blocked)
                    if issue is not None:
                        errors.append(issue.entry(array, index))
                        continue
                    self._store.identify(array, entry)
                    processed += 1
        # [inf] Braze documents only "aliases_processed"; the sandbox counts every entry in it.
        answer: dict[str, Any] = {"aliases_processed": processed, "message": "success"}
        if errors:
            answer["errors"] = errors
        return _Answer(201, answer)

    # -- /users/export/global_control_group ------------------------------------------------------

    def _export_control_group(self, body: Any, excluded: frozenset[tuple[Any, Any]]) -> "_Answer":
        problem = _export_request_problem(body)
        if problem is not None:
            return _Answer(400, {"message": problem})
        config = self.config
        # §7: object_prefix = <random uuid>-<request time in Unix seconds>.
        object_prefix = f"{uuid.uuid4()}-{int(time.time())}"
        # §7: without own storage Braze answers with a download url; "gzip" only applies to a bucket.
        url = None if config.export_bucket else self._export_url(object_prefix)
        record = ExportRecord(
            object_prefix=object_prefix,
            fields=list(body["fields_to_export"]),
            output_format=(body.get("output_format") or "zip") if config.export_bucket else "zip",
            callback_endpoint=body.get("callback_endpoint"),
            url=url,
            bucket=config.export_bucket,
            s3_endpoint_url=config.s3_endpoint_url,
            users_per_file=config.export_users_per_file,
        )
        thread = threading.Thread(
            target=self._run_export, args=(record,), name=f"sandbox-export-{object_prefix[:8]}", daemon=True
        )
        with self._lock:
            self.exports.append(record)
            self._export_threads = [t for t in self._export_threads if t.is_alive()] + [thread]
        thread.start()
        answer = {"message": "success", "object_prefix": object_prefix}
        if url is not None:
            answer["url"] = url
        return _Answer(201, answer)  # [inf] Braze shows no status; its async user endpoints use 201

    def _export_url(self, object_prefix: str) -> str:
        # One download holding every file, as Braze's url is one link per export.
        return f"{self.url}/sandbox/exports/{object_prefix}/{object_prefix}.zip"

    def _run_export(self, record: ExportRecord) -> None:
        try:
            self._write_export(record)
            if record.status == "done" and record.callback_endpoint:
                self._send_callback(record)
        except Exception:  # a background thread must not die with a traceback
            logger.exception("sandbox: export %s failed", record.object_prefix)
        finally:
            record.finished.set()

    def _write_export(self, record: ExportRecord) -> None:
        if not self._pause(self.config.export_delay_seconds):
            record.status, record.error = "failed", "sandbox stopped"
            return
        try:
            users = self._control_group_users(record.fields)
            chunks = list(_chunks(users, record.users_per_file))
            if record.bucket:
                record.files = _upload_export(record, chunks, self.config)
            else:
                record.files = self._publish_export(record, chunks)
        except Exception as exc:  # e.g. the bucket does not exist: record it, keep serving
            logger.exception("sandbox: export %s failed", record.object_prefix)
            record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._stats.exports_failed += 1
            return  # [inf] Braze documents no failure callback (§7), so none is sent
        record.users, record.status = len(users), "done"
        with self._lock:
            self._stats.exports_done += 1

    def _control_group_users(self, fields: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            members = [p.export_object() for p in self._store.all() if p.in_control_group()]
            members.extend(copy.deepcopy(self.config.control_group_users))
        # §7: only the requested fields; a field the user lacks is left out (= null/empty).
        return [{name: user[name] for name in fields if name in user} for user in members]

    def _publish_export(self, record: ExportRecord, chunks: list[list[dict[str, Any]]]) -> list[str]:
        # §7 without own storage: one download (the url) — a zip of newline-delimited JSON files.
        members = [(f"{uuid.uuid4().hex}.json", _ndjson(chunk)) for chunk in chunks]
        file_name = self._export_url(record.object_prefix).rsplit("/", 1)[-1]
        with self._lock:
            self._export_files[(record.object_prefix, file_name)] = _zip(members)
        return [file_name]

    def _send_callback(self, record: ExportRecord) -> None:
        body: dict[str, Any] = {"success": True}  # §7: the documented callback body
        if record.url:
            body["url"] = record.url
        status, error = None, None
        try:
            response = requests.post(
                record.callback_endpoint or "", json=body, timeout=self.config.callback_timeout_seconds
            )
            status = response.status_code
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("sandbox: export callback to %s failed: %s", record.callback_endpoint, error)
        with self._lock:
            self.callbacks.append(
                CallbackRecord(
                    url=record.callback_endpoint or "",
                    body=body,
                    status=status,
                    error=error,
                    time=time.time(),
                )
            )

    # -- /sandbox/* (no auth, not recorded) -------------------------------------------------------

    def _answer_control(self, incoming: "_Incoming") -> "_Answer":
        parts = incoming.path.split("/")[2:]  # "/sandbox/users/x" → ["users", "x"]
        if incoming.method == "GET" and parts == ["users"]:
            return _Answer(200, self.profiles())
        if incoming.method == "GET" and len(parts) == 2 and parts[0] == "users":
            found = self.profile(unquote(parts[1]))
            return _Answer(200, found) if found else _Answer(404, {"message": "no such profile"})
        if incoming.method == "GET" and parts == ["stats"]:
            return _Answer(200, self.stats())
        if incoming.method == "POST" and parts == ["reset"]:
            self.reset()
            return _Answer(200, {"message": "reset"})
        if incoming.method == "GET" and len(parts) == 3 and parts[0] == "exports":
            with self._lock:
                payload = self._export_files.get((unquote(parts[1]), unquote(parts[2])))
            if payload is None:  # §7: the url only becomes valid once the export is ready
                return _Answer(404, {"message": "export not ready or unknown"})
            return _Answer(200, payload, content_type="application/zip")
        return _Answer(404, {"message": "Not Found"})

    # -- internals --------------------------------------------------------------------------------

    def _seed_random(self) -> None:
        seed = self.config.seed
        self._fault_rng = random.Random(seed)
        self._rotation = 0  # the next 429's header style, in "rotate" mode
        # Separate stream for braze_ids and random buckets, so data never shifts the fault sequence.
        self._data_rng = random.Random(None if seed is None else seed + 1)

    def _register_connection(self, connection: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _close_open_connections(self) -> None:
        # Idle keep-alive connections would otherwise keep their handler threads alive after stop().
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------------------------------
# Request validation (pure functions)
# --------------------------------------------------------------------------------------------------


class _Issue(NamedTuple):
    type: str
    message: str

    def entry(self, array: str, index: int) -> dict[str, Any]:
        return {"type": self.type, "input_array": array, "index": index, "message": self.message}


def _track_arrays(body: Any) -> tuple[dict[str, list[Any]], "_Answer | None"]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return {}, _Answer(400, {"message": "Bad Request: the body must be a JSON object"})
    arrays: dict[str, list[Any]] = {}
    for array in TRACK_ARRAYS:
        value = body.get(array)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return {}, _Answer(400, {"message": f"Bad Request: '{array}' must be an array of objects"})
        arrays[array] = value
    if not any(arrays.values()):  # §3 "400 No Recipients"
        return {}, _Answer(400, {"message": "No Recipients: no attributes, events or purchases in the request"})
    return arrays, None


def _track_limit_problem(arrays: dict[str, list[Any]], config: SandboxConfig) -> "_Answer | None":
    limit = config.track_batch_limit
    if config.track_batch_mode == "total":  # §2.8 newest default: 75 objects combined
        total = sum(len(objects) for objects in arrays.values())
        if total <= limit:
            return None
        errors = [{"type": "MAX_INPUT_LENGTH_EXCEEDED", "count": total, "limit": limit}]
        message = (f"Max Input Length Exceeded: {total} objects in one request; at most {limit} "
                   "attributes, events and purchases combined")  # fmt: skip
        return _Answer(400, {"message": message, "errors": errors})
    errors = [
        {"type": "MAX_INPUT_LENGTH_EXCEEDED", "input_array": array, "count": len(objects), "limit": limit}
        for array, objects in arrays.items()
        if len(objects) > limit
    ]  # §2.8 legacy contracts: 75 per array
    if not errors:
        return None
    message = f"Max Input Length Exceeded: at most {limit} objects per array"
    return _Answer(400, {"message": message, "errors": errors})


def _validate_track_object(array: str, obj: dict[str, Any], blocked: frozenset[str]) -> _Issue | None:
    checks: tuple[Callable[[dict[str, Any]], _Issue | None], ...]
    if array == "attributes":
        checks = (_check_push_token_import, _check_email, _check_subscriptions, _check_subscription_groups,
                  _check_location, _check_push_tokens)  # fmt: skip
    elif array == "events":
        checks = (_check_email, _check_event)
    else:
        checks = (_check_email, _check_purchase)
    if not (array == "attributes" and obj.get("push_token_import") is True):
        issue = _check_identifier(obj, blocked)
        if issue is not None:
            return issue
    for check in checks:
        issue = check(obj)
        if issue is not None:
            return issue
    return None


def _check_identifier(obj: dict[str, Any], blocked: frozenset[str]) -> _Issue | None:
    primaries = [name for name in PRIMARY_IDENTIFIERS if obj.get(name) is not None]
    if len(primaries) > 1:  # §2.2 / §11.9
        return _Issue("MULTIPLE_PRIMARY_IDENTIFIERS", f"only one of {', '.join(primaries)} may be given")
    if primaries == ["external_id"]:
        return _external_id_issue(obj["external_id"], blocked)
    if primaries == ["user_alias"]:
        return (
            None
            if _is_alias(obj["user_alias"])
            else _Issue("BAD_USER_IDENTIFIER", "user_alias needs string alias_name and alias_label")
        )
    if primaries == ["braze_id"]:
        return None if _is_text(obj["braze_id"]) else _Issue("BAD_USER_IDENTIFIER", "braze_id must be a string")
    secondaries = [name for name in SECONDARY_IDENTIFIERS if obj.get(name) is not None]
    if not secondaries:
        return _Issue("NO_USER_IDENTIFIER", "one of external_id, user_alias, braze_id, email, phone is required")
    if not all(_is_text(obj[name]) for name in secondaries):
        return _Issue("BAD_USER_IDENTIFIER", "email and phone must be strings")
    return None


def _external_id_issue(external_id: Any, blocked: frozenset[str]) -> _Issue | None:
    if not _is_text(external_id):
        return _Issue("BAD_USER_IDENTIFIER", "external_id must be a non-empty string")
    if len(external_id.encode("utf-8")) > MAX_EXTERNAL_ID_BYTES:
        return _Issue(
            "EXTERNAL_USER_ID_TOO_LARGE",
            f"'external_id' must be fewer than {MAX_EXTERNAL_ID_BYTES + 1} bytes",
        )
    if external_id in blocked:
        return _Issue("BLACKLISTED_EXTERNAL_USER_ID", "provided external_id is blacklisted and disallowed")
    return None


def _check_email(obj: dict[str, Any]) -> _Issue | None:
    email = obj.get("email")
    if email is None or (isinstance(email, str) and _EMAIL_RE.match(email)):
        return None
    return _Issue("EMAIL_BAD_FORMAT", "email is not a valid address")


def _check_subscriptions(obj: dict[str, Any]) -> _Issue | None:
    for name, code in (("email_subscribe", "BAD_EMAIL_SUBSCRIPTION_STATE"),
                       ("push_subscribe", "BAD_PUSH_SUBSCRIPTION_STATE")):  # fmt: skip
        if name in obj and not _one_of(obj[name], SUBSCRIPTION_STATES):
            return _Issue(code, f"{name} must be one of {', '.join(sorted(SUBSCRIPTION_STATES))}")
    return None


def _check_subscription_groups(obj: dict[str, Any]) -> _Issue | None:
    if "subscription_groups" not in obj:
        return None
    groups = obj["subscription_groups"]
    if not isinstance(groups, list):
        return _Issue("BAD_SUBSCRIPTION_GROUP_ARRAY", "subscription_groups must be an array")
    for group in groups:
        if not isinstance(group, dict) or not {"subscription_group_id", "subscription_state"} <= group.keys():
            return _Issue(
                "BAD_SUBSCRIPTION_GROUP_HASH", "each group needs subscription_group_id and subscription_state"
            )
        if not isinstance(group["subscription_group_id"], str) or not _UUID_RE.match(group["subscription_group_id"]):
            return _Issue("BAD_SUBSCRIPTION_GROUP_ID", "subscription_group_id must be a subscription group UUID")
        if not _one_of(group["subscription_state"], SUBSCRIPTION_GROUP_STATES):
            return _Issue("BAD_SUBSCRIPTION_GROUP_STATE", "subscription_state must be subscribed or unsubscribed")
    return None


def _check_location(obj: dict[str, Any]) -> _Issue | None:
    location = obj.get("current_location")
    if location is None or (
        isinstance(location, dict) and all(_is_number(location.get(k)) for k in ("longitude", "latitude"))
    ):
        return None
    return _Issue("BAD_LOCATION_UPDATE", "current_location needs numeric longitude and latitude")


def _check_push_tokens(obj: dict[str, Any]) -> _Issue | None:
    if "push_tokens" not in obj:
        return None
    tokens = obj["push_tokens"]
    if not isinstance(tokens, list) or not all(isinstance(token, dict) for token in tokens):
        return _Issue("BAD_PUSH_TOKEN_VALUE", "push_tokens must be an array of objects")
    if not all(_is_text(token.get("token")) for token in tokens):
        return _Issue("BAD_PUSH_TOKEN_STRING", "each push token must be a string")
    return None


def _check_push_token_import(obj: dict[str, Any]) -> _Issue | None:
    if obj.get("push_token_import") is not True:
        return None
    # §2.4: a token import carries tokens and no external_id/braze_id.
    if obj.get("external_id") is not None or obj.get("braze_id") is not None or not obj.get("push_tokens"):
        return _Issue("BAD_PUSH_TOKEN_IMPORT", "push token import needs push_tokens and no external_id/braze_id")
    return None


def _check_event(obj: dict[str, Any]) -> _Issue | None:
    name = obj.get("name")
    if not _is_text(name) or len(name) > MAX_NAME_CHARS or name.startswith("$"):  # §2.6
        return _Issue("BAD_EVENT_NAME", "name is required: 1-255 characters, not starting with '$'")
    if _parse_time(obj.get("time")) is None:
        return _Issue("BAD_EVENT_TIME", "time is required as an ISO 8601 string")
    return _properties_issue(obj, "BAD_EVENT_PROPERTIES", EVENT_PROPERTIES_MAX_BYTES)


def _check_purchase(obj: dict[str, Any]) -> _Issue | None:
    product_id = obj.get("product_id")
    if not _is_text(product_id) or len(product_id) > MAX_NAME_CHARS:  # §2.7
        return _Issue("BAD_PRODUCT_ID", "product_id is required: 1-255 characters")
    currency = obj.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        return _Issue("BAD_CURRENCY", "currency is required: a three-letter ISO 4217 code")
    price = obj.get("price")
    if not _is_number(price) or not math.isfinite(price):
        return _Issue("BAD_PRICE", "price is required: a number in major units")
    quantity = obj.get("quantity", 1)
    if not _is_integer(quantity) or not 1 <= quantity <= MAX_PURCHASE_QUANTITY:
        return _Issue("BAD_QUANTITY", f"quantity must be an integer from 1 to {MAX_PURCHASE_QUANTITY}")
    if _parse_time(obj.get("time")) is None:
        return _Issue("BAD_PURCHASE_TIME", "time is required as an ISO 8601 string")
    return _properties_issue(obj, "BAD_PURCHASE_PROPERTIES", PURCHASE_PROPERTIES_MAX_BYTES)


def _properties_issue(obj: dict[str, Any], code: str, max_bytes: int) -> _Issue | None:
    properties = obj.get("properties")
    if properties is None:
        return None
    if not isinstance(properties, dict):
        return _Issue(code, "properties must be an object")
    for key in properties:
        if not key or len(key) > MAX_NAME_CHARS or key.startswith("$") or key in RESERVED_PROPERTY_KEYS:
            return _Issue(code, f"property key {key[:40]!r} is empty, too long, '$'-prefixed or reserved")
    if len(json.dumps(properties).encode("utf-8")) > max_bytes:
        return _Issue(code, f"properties exceed {max_bytes} bytes")
    return None


def _identify_arrays(body: Any, limit: int) -> tuple[dict[str, list[Any]], "_Answer | None"]:
    if not isinstance(body, dict):
        return {}, _Answer(400, {"message": "Bad Request: the body must be a JSON object"})
    arrays: dict[str, list[Any]] = {}
    for array in IDENTIFY_ARRAYS:
        value = body.get(array)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return {}, _Answer(400, {"message": f"Bad Request: '{array}' must be an array of objects"})
        arrays[array] = value
    total = sum(len(entries) for entries in arrays.values())
    if total == 0:  # §5: one of the three arrays is required
        return {}, _Answer(400, {"message": f"No Recipients: one of {', '.join(IDENTIFY_ARRAYS)} is required"})
    if total > limit:  # §5 up to 50; §3 message
        message = f"The max number of external_ids and aliases per request was exceeded ({total} > {limit})"
        return {}, _Answer(400, {"message": message})
    return arrays, None


def _validate_identify_entry(array: str, entry: dict[str, Any], blocked: frozenset[str]) -> _Issue | None:
    issue = _external_id_issue(entry.get("external_id"), blocked)
    if issue is not None:
        return issue
    if array == "aliases_to_identify":
        if not _is_alias(entry.get("user_alias")):
            return _Issue("BAD_USER_IDENTIFIER", "user_alias needs string alias_name and alias_label")
        return None
    contact = "email" if array == "emails_to_identify" else "phone"
    if not _is_text(entry.get(contact)):
        return _Issue("BAD_USER_IDENTIFIER", f"{contact} must be a non-empty string")
    if contact == "email" and not _EMAIL_RE.match(entry["email"]):
        return _Issue("EMAIL_BAD_FORMAT", "email is not a valid address")
    prioritization = entry.get("prioritization")
    if (
        not isinstance(prioritization, list)
        or not prioritization
        or not all(_one_of(value, PRIORITIZATION_VALUES) for value in prioritization)
        or {"identified", "unidentified"} <= set(prioritization)
    ):  # §5: required, known values, only one of identified/unidentified
        return _Issue("BAD_PRIORITIZATION", "prioritization must be an array of known values")
    return None


def _export_request_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Bad Request: the body must be a JSON object"
    fields = body.get("fields_to_export")
    if not isinstance(fields, list) or not fields:  # §7: required
        return "fields_to_export is required: a non-empty array of field names"
    unknown = [name for name in fields if not _one_of(name, GCG_EXPORT_FIELDS)]
    if unknown:
        return f"fields_to_export has unknown fields: {', '.join(map(str, unknown))}"
    if not _one_of(body.get("output_format", "zip"), EXPORT_OUTPUT_FORMATS):
        return "output_format must be zip or gzip"
    callback = body.get("callback_endpoint")
    if callback is not None and not _is_allowed_callback(callback):
        # The sandbox only calls back to loopback or https, never to arbitrary plain-http hosts.
        return "callback_endpoint must be an https URL or http://127.0.0.1 / http://localhost"
    return None


def _is_allowed_callback(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost"}


def _one_of(value: Any, allowed: Iterable[str]) -> bool:
    return isinstance(value, str) and value in allowed  # JSON lists/objects are unhashable


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_alias(alias: Any) -> bool:
    return isinstance(alias, dict) and _is_text(alias.get("alias_name")) and _is_text(alias.get("alias_label"))


def _parse_time(value: Any) -> datetime | None:
    """§2.6: ISO 8601, or Braze's legacy yyyy-MM-dd'T'HH:mm:ss:SSSZ. No zone means UTC."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    legacy = _LEGACY_TIME_RE.match(text)
    if legacy:
        text = f"{legacy.group(1)}.{legacy.group(2)}{legacy.group(3)}"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    """Summary of one custom event name or one product_id on a profile."""

    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    revenue: float = 0.0

    def record(self, when: datetime, count: int = 1, revenue: float = 0.0) -> None:
        self.count += count
        self.revenue = round(self.revenue + revenue, 6)
        self.first = when if self.first is None else min(self.first, when)
        self.last = when if self.last is None else max(self.last, when)

    def absorb(self, other: "_Tally") -> None:
        """§5 merge: counts summed, first = the earlier, last = the later."""
        if other.first is None or other.last is None:
            return
        self.record(other.first, other.count, other.revenue)
        self.last = max(self.last or other.last, other.last)  # record() only saw other's first

    def to_json(self, revenue: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"count": self.count, "first": _iso(self.first), "last": _iso(self.last)}
        if revenue:
            data["revenue"] = self.revenue
        return data


@dataclass
class _Profile:
    braze_id: str
    random_bucket: int
    created_at: datetime
    updated_at: datetime
    external_id: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # label → name: one alias per label (§6)
    attributes: dict[str, Any] = field(default_factory=dict)
    subscription_groups: dict[str, str] = field(default_factory=dict)
    push_tokens: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, _Tally] = field(default_factory=dict)
    purchases: dict[str, _Tally] = field(default_factory=dict)
    total_revenue: float = 0.0
    data_points: int = 0

    def key(self) -> str:
        if self.external_id is not None:
            return self.external_id
        if self.aliases:
            label, name = next(iter(self.aliases.items()))
            return f"alias:{name}:{label}"
        for contact in SECONDARY_IDENTIFIERS:
            if self.attributes.get(contact):
                return f"{contact}:{self.attributes[contact]}"
        return f"braze_id:{self.braze_id}"

    def in_control_group(self) -> bool:
        return self.attributes.get(CONTROL_GROUP_ATTRIBUTE) is True

    def to_json(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "braze_id": self.braze_id,
            "user_aliases": _alias_list(self.aliases),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "random_bucket": self.random_bucket,
            "attributes": copy.deepcopy(self.attributes),
            "subscription_groups": dict(self.subscription_groups),
            "push_tokens": copy.deepcopy(self.push_tokens),
            "custom_events": {name: tally.to_json(False) for name, tally in self.events.items()},
            "purchases": {product: tally.to_json(True) for product, tally in self.purchases.items()},
            "total_revenue": self.total_revenue,
            "data_points": self.data_points,
        }

    def export_object(self) -> dict[str, Any]:
        """The §7 per-user export object (every field the sandbox can fill)."""
        user: dict[str, Any] = {
            "created_at": self.created_at.strftime("%Y-%m-%d %H:%M:%S.")
            + f"{self.created_at.microsecond // 1000:03d} UTC",
            "braze_id": self.braze_id,
            "random_bucket": self.random_bucket,
        }
        if self.external_id is not None:
            user["external_id"] = self.external_id
        if self.aliases:
            user["user_aliases"] = _alias_list(self.aliases)
        for name in EXPORTED_PROFILE_FIELDS:
            if self.attributes.get(name) is not None:
                user[name] = copy.deepcopy(self.attributes[name])
        location = self.attributes.get("current_location")
        if isinstance(location, dict):
            user["last_coordinates"] = [location.get("longitude"), location.get("latitude")]  # §7 [lon, lat]
        custom = {k: v for k, v in self.attributes.items() if k not in RESERVED_ATTRIBUTES}
        if custom:
            user["custom_attributes"] = copy.deepcopy(custom)
        # The sandbox keeps all history; Braze limits custom_events/purchases to the last 90 days.
        if self.events:
            user["custom_events"] = [{"name": n, **t.to_json(False)} for n, t in self.events.items()]
        if self.purchases:
            user["purchases"] = [{"name": n, **t.to_json(False)} for n, t in self.purchases.items()]
            user["total_revenue"] = self.total_revenue
        return user


class _ProfileStore:
    """Profiles with lookup indexes. Not thread-safe on its own: the sandbox lock guards it."""

    def __init__(self, rng: random.Random):
        self.clear(rng)

    def clear(self, rng: random.Random) -> None:
        self._rng = rng
        self._profiles: dict[str, _Profile] = {}  # by braze_id
        self._by_external_id: dict[str, _Profile] = {}
        self._by_alias: dict[tuple[str, str], _Profile] = {}  # (alias_name, alias_label)
        self.data_points = 0

    def __len__(self) -> int:
        return len(self._profiles)

    def all(self) -> list[_Profile]:
        return list(self._profiles.values())

    def by_external_id(self, external_id: str) -> _Profile | None:
        return self._by_external_id.get(external_id)

    def by_alias(self, name: str, label: str) -> _Profile | None:
        return self._by_alias.get((name, label))

    def by_contact(self, contact: str, value: str) -> list[_Profile]:
        return [p for p in self._profiles.values() if p.attributes.get(contact) == value]

    def charge(self, profile: _Profile, points: int) -> None:
        profile.data_points += points
        profile.updated_at = _now()
        self.data_points += points

    # -- /users/track identifier resolution (§2.2, §2.3) ------------------------------------------

    def resolve(self, obj: dict[str, Any], create_alias_profile: bool) -> _Profile | None:
        update_only = obj.get("_update_existing_only")
        if obj.get("external_id") is not None:
            found = self.by_external_id(obj["external_id"])
            if found is None and update_only is not True:  # created unless explicitly update-only
                found = self._create(external_id=obj["external_id"])
            return found
        if obj.get("user_alias") is not None:
            alias = obj["user_alias"]
            found = self.by_alias(alias["alias_name"], alias["alias_label"])
            # §2.3: alias objects only create a profile from attributes with the flag explicitly false.
            if found is None and create_alias_profile and update_only is False:
                found = self._create()
                self.add_alias(found, alias["alias_name"], alias["alias_label"])
            return found
        if obj.get("braze_id") is not None:
            return self._profiles.get(obj["braze_id"])  # braze_ids are Braze-assigned: never created
        if obj.get("push_token_import") is True:
            return self._create()  # §2.4: a temporary anonymous profile holding the token
        contact = "email" if obj.get("email") is not None else "phone"
        found = _preferred_contact_profile(self.by_contact(contact, obj[contact]))
        if found is None and update_only is not True:  # §2.2: Braze creates an email-only profile
            found = self._create()
            found.attributes[contact] = obj[contact]
        return found

    def _create(self, external_id: str | None = None) -> _Profile:
        now = _now()
        braze_id = f"{self._rng.getrandbits(96):024x}"
        profile = _Profile(braze_id=braze_id, random_bucket=self._rng.randrange(10000), created_at=now,
                           updated_at=now, external_id=external_id)  # fmt: skip
        self._profiles[braze_id] = profile
        if external_id is not None:
            self._by_external_id[external_id] = profile
        return profile

    def add_alias(self, profile: _Profile, name: str, label: str) -> None:
        profile.aliases[label] = name
        self._by_alias[(name, label)] = profile

    # -- /users/identify (§5) ---------------------------------------------------------------------

    def identify(self, array: str, entry: dict[str, Any]) -> None:
        external_id = entry["external_id"]
        if array == "aliases_to_identify":
            alias = entry["user_alias"]
            # §5: alias_name is case-sensitive; an unknown alias silently does nothing.
            orphan = self.by_alias(alias["alias_name"], alias["alias_label"])
        else:
            contact = "email" if array == "emails_to_identify" else "phone"
            candidates = _prioritized(self.by_contact(contact, entry[contact]), entry["prioritization"])
            # §5: if more than one user still matches, no merge happens.
            orphan = candidates[0] if len(candidates) == 1 else None
        if orphan is None or orphan.external_id is not None:
            return  # [inf] already identified profiles are left alone
        self._identify_profile(orphan, external_id)

    def _identify_profile(self, orphan: _Profile, external_id: str) -> None:
        target = self.by_external_id(external_id)
        if target is None:  # §5: the external_id is written onto the unidentified profile
            orphan.external_id = external_id
            orphan.updated_at = _now()
            self._by_external_id[external_id] = orphan
            return
        if set(orphan.aliases) & set(target.aliases):
            return  # §5: the target already holds an alias with the same label: not combined
        self._merge(orphan, target)

    def _merge(self, orphan: _Profile, target: _Profile) -> None:
        # §5: fields only on the orphan are copied; event/purchase data combined; orphan removed.
        for name, value in orphan.attributes.items():
            target.attributes.setdefault(name, value)
        for group, state in orphan.subscription_groups.items():
            target.subscription_groups.setdefault(group, state)
        known_tokens = {token.get("token") for token in target.push_tokens}
        target.push_tokens.extend(t for t in orphan.push_tokens if t.get("token") not in known_tokens)
        for mine, theirs in ((target.events, orphan.events), (target.purchases, orphan.purchases)):
            for name, tally in theirs.items():
                mine.setdefault(name, _Tally()).absorb(tally)
        target.total_revenue = round(target.total_revenue + orphan.total_revenue, 6)
        target.data_points += orphan.data_points
        target.updated_at = _now()
        for label, name in orphan.aliases.items():
            self.add_alias(target, name, label)
        del self._profiles[orphan.braze_id]


def _preferred_contact_profile(candidates: list[_Profile]) -> _Profile | None:
    # §2.2: several profiles share the email → the most recently updated one with an external_id,
    # else the most recently updated one.
    identified = [p for p in candidates if p.external_id is not None]
    pool = identified or candidates
    return max(pool, key=lambda p: p.updated_at) if pool else None


def _prioritized(candidates: list[_Profile], prioritization: list[str]) -> list[_Profile]:
    for rule in prioritization:
        if rule == "identified":
            candidates = [p for p in candidates if p.external_id is not None]
        elif rule == "unidentified":
            candidates = [p for p in candidates if p.external_id is None]
        elif rule == "most_recently_updated" and candidates:
            candidates = [max(candidates, key=lambda p: p.updated_at)]
        elif rule == "least_recently_updated" and candidates:
            candidates = [min(candidates, key=lambda p: p.updated_at)]
    return candidates


# --------------------------------------------------------------------------------------------------
# Applying /users/track objects
# --------------------------------------------------------------------------------------------------


def _apply_attributes(profile: _Profile, obj: dict[str, Any]) -> int:
    """Write one attributes object; return the data points it consumed (§10)."""
    merge_objects = obj.get("_merge_objects") is True
    points = 0
    for name, value in obj.items():
        if name in CONTROL_KEYS:
            continue
        if name == "subscription_groups":
            profile.subscription_groups.update({g["subscription_group_id"]: g["subscription_state"] for g in value})
        elif name == "push_tokens":
            _merge_push_tokens(profile.push_tokens, value)
        elif _apply_attribute(profile.attributes, name, value, merge_objects):
            points += _attribute_data_points(name, value)
    return points


def _apply_attribute(attributes: dict[str, Any], name: str, value: Any, merge_objects: bool) -> bool:
    """Apply one attribute write; False when Braze would drop it (then it costs nothing)."""
    if value is None:  # §2.4: null removes the attribute
        attributes.pop(name, None)
        return True
    if isinstance(value, list):
        # §2.5: scalar arrays hold unique values; arrays of objects are stored as given.
        attributes[name] = copy.deepcopy(value) if any(isinstance(v, dict | list) for v in value) else _unique(value)
        return True
    if not isinstance(value, dict):
        attributes[name] = value
        return True
    kind = _operation_kind(value)
    if kind == "inc":
        return _increment(attributes, name, value["inc"])
    if kind == "scalar_array":
        return _scalar_array_update(attributes, name, value)
    if kind == "object_array":
        return _object_array_update(attributes, name, value, merge_objects)
    if _contains_null(value):
        return False  # §2.5 FAQ: an invalid (e.g. null) nested value drops the whole nested update
    current = attributes.get(name)
    if merge_objects and isinstance(current, dict):
        attributes[name] = _deep_merge(current, value)
    else:  # §2.5: a nested object replaces the stored one unless _merge_objects is true
        attributes[name] = copy.deepcopy(value)
    return True


def _operation_kind(value: dict[str, Any]) -> str:
    keys = set(value)
    if keys == {"inc"}:
        return "inc"
    if keys and keys <= {"add", "remove"}:
        return "scalar_array"
    if keys and keys <= {"$add", "$remove", "$update"}:
        return "object_array"
    return "nested"


def _increment(attributes: dict[str, Any], name: str, amount: Any) -> bool:
    current = attributes.get(name)
    if not _is_number(amount) or (current is not None and not _is_number(current)):
        return False  # [inf] incrementing a non-number is not applied
    attributes[name] = amount if current is None else current + amount
    return True


def _scalar_array_update(attributes: dict[str, Any], name: str, operations: dict[str, Any]) -> bool:
    if not all(isinstance(items, list) for items in operations.values()):
        return False
    current = attributes.get(name)
    values = list(current) if isinstance(current, list) else []
    for operation, items in operations.items():
        if operation == "add":
            for item in items:  # §2.5: unique values; re-adding moves an item to the end
                if item in values:
                    values.remove(item)
                values.append(item)
        else:
            values = [v for v in values if v not in items]
    attributes[name] = values
    return True


def _object_array_update(
    attributes: dict[str, Any], name: str, operations: dict[str, Any], merge_objects: bool
) -> bool:
    if not all(isinstance(items, list) and all(isinstance(i, dict) for i in items) for items in operations.values()):
        return False
    current = attributes.get(name)
    items = copy.deepcopy(current) if isinstance(current, list) else []
    for operation, arguments in operations.items():
        if operation == "$add":
            items.extend(copy.deepcopy(arguments))
        elif operation == "$remove":  # §2.5: removes every match
            for criterion in arguments:
                items = [item for item in items if not _matches(item, criterion)]
        else:  # $update: merged with _merge_objects, otherwise overwritten (§2.5)
            for update in arguments:
                new_object = update.get("$new_object")
                if not isinstance(new_object, dict):
                    continue
                items = [
                    (_deep_merge(item, new_object) if merge_objects else copy.deepcopy(new_object))
                    if _matches(item, update) else item
                    for item in items
                ]  # fmt: skip
    attributes[name] = items
    return True


def _matches(item: Any, criterion: dict[str, Any]) -> bool:
    key = criterion.get("$identifier_key")
    return (
        isinstance(key, str)
        and isinstance(item, dict)
        and key in item
        and item[key] == criterion.get("$identifier_value")
    )


def _merge_push_tokens(tokens: list[dict[str, Any]], new_tokens: list[dict[str, Any]]) -> None:
    known = {token.get("token") for token in tokens}
    tokens.extend(copy.deepcopy(t) for t in new_tokens if t.get("token") not in known)


def _attribute_data_points(name: str, value: Any) -> int:
    """§10: 1 per attribute set; add/remove 1 per value; nested objects and arrays of objects 1 per key;
    subscription states are free."""
    if name in FREE_ATTRIBUTES:
        return 0
    if isinstance(value, list):
        objects = [v for v in value if isinstance(v, dict)]
        return max(1, sum(_count_keys(o) for o in objects)) if objects else 1
    if not isinstance(value, dict):
        return 1
    kind = _operation_kind(value)
    if kind == "inc":
        return 1
    if kind == "scalar_array":
        return max(1, sum(len(items) for items in value.values()))
    if kind == "object_array":
        added = sum(_count_keys(o) for o in value.get("$add", []))
        updated = sum(_count_keys(u.get("$new_object")) for u in value.get("$update", []))
        return max(1, added + updated + len(value.get("$remove", [])))
    return max(1, _count_keys(value))


def _apply_event(profile: _Profile, obj: dict[str, Any]) -> int:
    profile.events.setdefault(obj["name"], _Tally()).record(_event_time(obj["time"]))
    return 1  # §10: each custom event is one data point


def _apply_purchase(profile: _Profile, obj: dict[str, Any]) -> int:
    quantity = obj.get("quantity", 1)
    revenue = obj["price"] * quantity  # §2.7: revenue = price × quantity, recorded as X purchases of 1
    profile.purchases.setdefault(obj["product_id"], _Tally()).record(_event_time(obj["time"]), quantity, revenue)
    profile.total_revenue = round(profile.total_revenue + revenue, 6)
    return 1  # §10: each purchase object is one data point


def _event_time(value: str) -> datetime:
    parsed = _parse_time(value) or _now()
    return min(parsed, _now())  # §2.6: future times become "now"


def _count_keys(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 + _count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _contains_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_contains_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_null(v) for v in value)
    return False


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _unique(values: list[Any]) -> list[Any]:
    unique: list[Any] = []
    for value in values:
        if value not in unique:
            unique.append(value)
    return unique


def _alias_list(aliases: dict[str, str]) -> list[dict[str, str]]:
    return [{"alias_name": name, "alias_label": label} for label, name in aliases.items()]


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------------------------
# Export files
# --------------------------------------------------------------------------------------------------


def _chunks(users: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    # [inf] An empty control group yields no files: Braze writes files per ~5,000 users (§7) and
    # documents nothing for zero. The callback is still sent, so consumers must handle zero files.
    for start in range(0, len(users), size):
        yield users[start : start + size]


def _ndjson(users: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(user, ensure_ascii=False) + "\n" for user in users).encode("utf-8")


def _zip(members: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, payload in members:
            archive.writestr(name, payload)
    return buffer.getvalue()


def _upload_export(record: ExportRecord, chunks: list[list[dict[str, Any]]], config: SandboxConfig) -> list[str]:
    import boto3  # lazily: the sandbox runs without boto3 when it serves exports itself

    region = config.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # A session per export: boto3's default session is not safe to share across threads.
    s3 = boto3.session.Session().client("s3", endpoint_url=record.s3_endpoint_url, region_name=region)
    # §7: <bucket>/segment-export/<SEGMENT_ID>/<YYYY-MM-dd>/<object_prefix>/<random>.zip|.json.gz
    folder = f"segment-export/{config.gcg_segment_id}/{datetime.now(UTC):%Y-%m-%d}/{record.object_prefix}"
    keys = []
    for chunk in chunks:
        file_name, payload, content_type = _export_file(uuid.uuid4().hex, chunk, record.output_format)
        s3.put_object(Bucket=record.bucket, Key=f"{folder}/{file_name}", Body=payload, ContentType=content_type)
        keys.append(f"{folder}/{file_name}")
    return keys


def _export_file(name: str, users: list[dict[str, Any]], output_format: str) -> tuple[str, bytes, str]:
    """One own-bucket export file (§7): a .zip holding one .json, or a .json.gz."""
    if output_format == "gzip":
        return f"{name}.json.gz", gzip.compress(_ndjson(users), mtime=0), "application/gzip"
    return f"{name}.zip", _zip([(f"{name}.json", _ndjson(users))]), "application/zip"


# --------------------------------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    admitted: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds


class _FixedWindowLimiter:
    """A fixed window shared by all endpoints (§2.9: limits reset per window, not rolling).

    The window starts at the first request after the previous one ran out. Braze aligns its hourly
    windows to the clock; for a 3-second burst window the anchor is invisible to clients, and
    anchoring on the first request keeps tests free of boundary races.
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._start: float | None = None
        self._count = 0

    def acquire(self, config: SandboxConfig, force: bool = False) -> _Window:
        with self._lock:
            self._roll(config.rate_limit_window_seconds)
            admitted = force or self._count < config.rate_limit_requests
            if admitted:
                self._count += 1
            return self._state(config, admitted)

    def peek(self, config: SandboxConfig) -> _Window:
        with self._lock:
            self._roll(config.rate_limit_window_seconds)
            return self._state(config, True)

    def _roll(self, window_seconds: float) -> None:
        now = self._clock()
        if self._start is None or now >= self._start + window_seconds:
            self._start, self._count = now, 0

    def _state(self, config: SandboxConfig, admitted: bool) -> _Window:
        start = self._start if self._start is not None else self._clock()
        remaining = max(0, config.rate_limit_requests - self._count)
        return _Window(admitted, config.rate_limit_requests, remaining, start + config.rate_limit_window_seconds)


def _rate_headers(config: SandboxConfig, window: _Window) -> dict[str, str]:
    """§4: the headers on every non-429 answer."""
    if config.rate_limit_header_style == "reset_seconds":
        reset = max(1, math.ceil(window.reset_at - time.time()))  # MAU variant: seconds remaining
    else:
        reset = math.ceil(window.reset_at)  # general page: UTC epoch seconds
    return {
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(window.remaining),
        "X-RateLimit-Reset": str(reset),
    }


def _too_many_requests_headers(style: str, limit: int, wait_seconds: float) -> dict[str, str]:
    """§4: what a 429 carries in one of RATE_LIMIT_HEADER_STYLES."""
    wait = max(1, math.ceil(wait_seconds))
    if style == "retry_after":  # MAU section: only this header, integer seconds
        return {"X-Ratelimit-Retry-After": str(wait)}
    if style == "none":
        return {}
    reset = math.ceil(time.time() + wait_seconds) if style == "reset_epoch" else wait
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}


def _has_rate_headers(headers: dict[str, str]) -> bool:
    return any(name.lower().startswith("x-ratelimit-") for name in headers)


def _merge_headers(defaults: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """Header names are case-insensitive; an override replaces a default of any spelling."""
    replaced = {name.lower() for name in overrides}
    merged = {name: value for name, value in defaults.items() if name.lower() not in replaced}
    merged.update(overrides)
    return merged


# --------------------------------------------------------------------------------------------------
# Answers, defaults and bookkeeping
# --------------------------------------------------------------------------------------------------


@dataclass
class _Answer:
    status: int
    body: Any  # dict/list → JSON; str/bytes → sent verbatim
    headers: dict[str, str] = field(default_factory=dict)
    rate_limit_style: str | None = None  # a 429's header style (RATE_LIMIT_HEADER_STYLES)
    content_type: str = "application/json"


class _FaultDraw(NamedTuple):
    drop: float
    timeout: float
    error: float
    rate_limited: float
    drop_after: float


def _unauthorized(headers: dict[str, str]) -> _Answer:
    # Never echo the key: it may be a real one sent to the wrong place.
    if "authorization" not in headers:
        reason = "no 'Authorization: Bearer <REST API key>' header"
    else:
        reason = "the key is unknown here (check the key, the instance's REST host, and unquoted Bearer value)"
    return _Answer(401, {"message": f"Invalid API key: {reason}"})


def _default_body(status: int, path: str, body: Any) -> Any:
    """Braze's usual body for a status, used by scripted answers that give none."""
    if 200 <= status < 300:
        answer: dict[str, Any] = {"message": "success"}
        if path == TRACK_PATH and isinstance(body, dict):
            for array in TRACK_ARRAYS:
                if isinstance(body.get(array), list) and body[array]:
                    answer[f"{array}_processed"] = len(body[array])
        elif path == IDENTIFY_PATH and isinstance(body, dict):
            answer["aliases_processed"] = sum(len(v) for a in IDENTIFY_ARRAYS if isinstance(v := body.get(a), list))
        elif path == GCG_EXPORT_PATH:
            answer["object_prefix"] = f"{uuid.uuid4()}-{int(time.time())}"
        return answer
    if status == 429:
        return {"message": "Rate limit exceeded"}
    if status == 401:
        return {"message": "Invalid API key"}
    try:
        return {"message": HTTPStatus(status).phrase}
    except ValueError:
        return {"message": "Error"}


def _call_errors_for(script: ScriptedResponse, body: Any) -> list[dict[str, Any]]:
    if script.errors_for is None:
        return []
    errors = script.errors_for(body)  # a failure here is a test bug: let it surface as a 500
    return list(errors or [])


def _error_positions(errors: list[dict[str, Any]]) -> frozenset[tuple[Any, Any]]:
    return frozenset(
        (e.get("input_array"), e.get("index"))
        for e in errors
        if isinstance(e, dict) and isinstance(e.get("input_array"), str) and _is_integer(e.get("index"))
    )


def _object_count(path: str, body: Any) -> int | None:
    if not isinstance(body, dict):
        return None
    arrays = TRACK_ARRAYS if path == TRACK_PATH else IDENTIFY_ARRAYS if path == IDENTIFY_PATH else ()
    if not arrays:
        return None
    return sum(len(body[a]) for a in arrays if isinstance(body.get(a), list))


@dataclass
class _Stats:
    calls: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    objects: dict[str, Counter[int]] = field(default_factory=dict)  # path → {objects in call: calls}
    faults: Counter[str] = field(default_factory=Counter)
    rate_limit_styles: Counter[str] = field(default_factory=Counter)  # 429 answers by header style
    scripted: int = 0
    exports_done: int = 0
    exports_failed: int = 0

    def count_call(self, path: str, objects: int | None) -> None:
        self.calls[path] += 1
        if objects is not None:
            self.objects.setdefault(path, Counter())[objects] += 1

    def count_status(self, path: str, status: int | None) -> None:
        self.statuses.setdefault(path, Counter())["dropped" if status is None else str(status)] += 1

    def to_json(self, profiles: int, data_points: int) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "statuses": {path: dict(counts) for path, counts in self.statuses.items()},
            "objects_per_call": {path: _histogram_summary(h) for path, h in self.objects.items()},
            "rate_limited": self.faults["rate_limited_real"],
            "faults_injected": {k: v for k, v in self.faults.items() if k != "rate_limited_real"},
            "rate_limit_styles": dict(self.rate_limit_styles),
            "scripted": self.scripted,
            "data_points": data_points,
            "profiles": profiles,
            "exports": {"done": self.exports_done, "failed": self.exports_failed},
        }


def _histogram_summary(histogram: Counter[int]) -> dict[str, Any]:
    calls = sum(histogram.values())
    total = sum(size * count for size, count in histogram.items())
    return {
        "calls": calls,
        "objects": total,
        "min": min(histogram) if histogram else 0,
        "max": max(histogram) if histogram else 0,
        "mean": round(total / calls, 2) if calls else 0,
        "histogram": {str(size): histogram[size] for size in sorted(histogram)},
    }


# --------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------


@dataclass
class _Incoming:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    json_error: str | None = None
    too_large: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # the soak test opens many connections at once

    def __init__(self, address: tuple[str, int], sandbox: BrazeSandbox):
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("sandbox: connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections to Braze
    # http.server treats an unparsable request line as HTTP/0.9 and answers without a status line or
    # headers; assuming 1.0 gives garbage a proper JSON 400.
    default_request_version = "HTTP/1.0"
    server_version = "BrazeSandbox/1.0"
    timeout = 30  # idle keep-alive connections are closed after this
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed
    # ACK (~40 ms a call), which would make the sandbox look far slower than Braze.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.sandbox._register_connection(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sandbox._register_connection(self.connection, False)

    def do_GET(self) -> None:
        self.server.sandbox._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed request lines and unknown methods get JSON too, never the default HTML page.
        self.close_connection = True
        _write_answer(self, _Answer(code, {"message": message or _default_body(code, "", None)["message"]}))

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def _read_incoming(handler: BaseHTTPRequestHandler, max_bytes: int) -> _Incoming:
    parts = urlsplit(handler.path)
    incoming = _Incoming(
        method=handler.command,
        path=_normalize_path(parts.path),
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers={name.lower(): value for name, value in handler.headers.items()},
    )
    raw, incoming.too_large = _read_body(handler, max_bytes)
    if not incoming.too_large:
        incoming.json, incoming.json_error = _parse_json(raw)
    return incoming


def _read_body(handler: BaseHTTPRequestHandler, max_bytes: int) -> tuple[bytes, bool]:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        return _read_chunked(handler, max_bytes)
    text = handler.headers.get("Content-Length") or "0"
    if not text.strip().isdigit():
        raise ValueError("Content-Length is not a number")
    length = int(text)
    if length <= max_bytes:
        return handler.rfile.read(length), False
    if length <= _DRAIN_LIMIT_BYTES:
        _discard(handler.rfile, length)  # read it so the client can read our 413
    else:
        handler.close_connection = True
    return b"", True


def _read_chunked(handler: BaseHTTPRequestHandler, max_bytes: int) -> tuple[bytes, bool]:
    body = bytearray()
    too_large = False
    while True:
        size = int(handler.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while handler.rfile.readline(1024).strip():  # trailers
                pass
            return bytes(body), too_large
        chunk = handler.rfile.read(size)
        handler.rfile.readline(8)  # CRLF after the chunk
        too_large = too_large or len(body) + len(chunk) > max_bytes
        if not too_large:
            body.extend(chunk)


def _discard(stream: Any, length: int) -> None:
    while length > 0:
        chunk = stream.read(min(length, 1024 * 1024))
        if not chunk:
            return
        length -= len(chunk)


def _parse_json(raw: bytes) -> tuple[Any, str | None]:
    if not raw.strip():
        return None, None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant), None
    except UnicodeDecodeError:
        return None, "the body is not UTF-8"
    except (ValueError, RecursionError) as exc:
        return None, f"the body is not valid JSON ({type(exc).__name__})"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _normalize_path(path: str) -> str:
    return path.rstrip("/") or "/"


def _write_answer(handler: BaseHTTPRequestHandler, answer: _Answer) -> None:
    payload, content_type = _encode_body(answer)
    try:
        handler.send_response(answer.status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
    except OSError as exc:  # the client went away (e.g. it timed out): nothing to tell it
        logger.debug("sandbox: could not write the answer: %s", exc)
        handler.close_connection = True


def _encode_body(answer: _Answer) -> tuple[bytes, str]:
    if answer.status in (204, 304) or answer.status < 200:
        return b"", answer.content_type
    if isinstance(answer.body, bytes):
        return answer.body, answer.content_type
    if isinstance(answer.body, str):
        return answer.body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(answer.body).encode("utf-8"), "application/json"


def _client_hung_up(connection: socket.socket) -> bool:
    """True when the client has closed its end; a peek never consumes a pipelined next request."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset by the peer, or already closed
        return True


def _drop_connection(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    with contextlib.suppress(OSError):  # already closed by the client
        handler.connection.shutdown(socket.SHUT_RDWR)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a rate is a fraction between 0 and 1")
    return value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(
        prog="python -m local.braze_sandbox",
        description="Run the Braze sandbox (a local Braze REST API stand-in) on 127.0.0.1 until interrupted.",
    )
    add = parser.add_argument
    add("--port", type=int, default=0, help="port to listen on (0 = any free port; the URL is printed)")
    add("--api-key", default=defaults.api_key, help="REST API key expected as 'Authorization: Bearer <key>'")
    add(
        "--track-batch-mode",
        choices=TRACK_BATCH_MODES,
        default=defaults.track_batch_mode,
        help="count the /users/track limit across the three arrays (total) or per array",
    )
    add(
        "--track-batch-limit",
        type=int,
        default=defaults.track_batch_limit,
        help="objects per /users/track call",
    )
    add(
        "--identify-batch-limit",
        type=int,
        default=defaults.identify_batch_limit,
        help="entries per /users/identify call",
    )
    add(
        "--rate-limit-requests",
        type=int,
        default=defaults.rate_limit_requests,
        help="requests per window, then 429",
    )
    add(
        "--rate-limit-window",
        type=float,
        default=defaults.rate_limit_window_seconds,
        help="window length in seconds",
    )
    add(
        "--rate-limit-header-style",
        choices=RATE_LIMIT_HEADER_CHOICES,
        default=defaults.rate_limit_header_style,
        help="headers on a 429 (rotate: each 429 the next style)",
    )
    add("--error-rate", type=_rate, default=0.0, help="fraction of calls answered 500 (nothing processed)")
    add(
        "--rate-limited-rate",
        type=_rate,
        default=0.0,
        help="fraction of calls answered 429 (nothing processed)",
    )
    add("--latency", type=float, default=0.0, help="seconds added before every answer")
    add(
        "--drop-rate",
        type=_rate,
        default=0.0,
        help="fraction of connections closed without an answer, unprocessed",
    )
    add(
        "--drop-after-processing-rate",
        type=_rate,
        default=0.0,
        help="fraction processed and then closed without an answer",
    )
    add(
        "--timeout-rate",
        type=_rate,
        default=0.0,
        help="fraction processed and then answered only after --timeout-sleep",
    )
    add(
        "--timeout-sleep",
        type=float,
        default=defaults.timeout_sleep_seconds,
        help="seconds a timeout fault stalls",
    )
    add(
        "--blocked-external-id",
        action="append",
        default=[],
        metavar="ID",
        help="external_id answered with BLACKLISTED_EXTERNAL_USER_ID (repeatable)",
    )
    add("--export-bucket", default=None, help="S3 bucket for export files (default: served by the sandbox)")
    add("--s3-endpoint-url", default=None, help="S3 endpoint for the export bucket, e.g. a moto server")
    add(
        "--export-users-per-file",
        type=int,
        default=defaults.export_users_per_file,
        help="users per export file",
    )
    add("--seed", type=int, default=None, help="random seed for reproducible faults")
    add("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="logging level")
    return parser.parse_args(argv)  # fmt: skip


def _config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        api_key=args.api_key,
        track_batch_mode=args.track_batch_mode,
        track_batch_limit=args.track_batch_limit,
        identify_batch_limit=args.identify_batch_limit,
        rate_limit_requests=args.rate_limit_requests,
        rate_limit_window_seconds=args.rate_limit_window,
        rate_limit_header_style=args.rate_limit_header_style,
        error_rate=args.error_rate,
        rate_limited_rate=args.rate_limited_rate,
        latency_seconds=args.latency,
        drop_rate=args.drop_rate,
        drop_after_processing_rate=args.drop_after_processing_rate,
        timeout_rate=args.timeout_rate,
        timeout_sleep_seconds=args.timeout_sleep,
        blocked_external_ids=set(args.blocked_external_id),
        export_bucket=args.export_bucket,
        s3_endpoint_url=args.s3_endpoint_url,
        export_users_per_file=args.export_users_per_file,
        seed=args.seed,
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = _config_from_args(args)
    except ValueError as exc:
        print(f"braze_sandbox: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # `make run` stops its children with SIGTERM
    with BrazeSandbox(config, port=args.port) as sandbox:
        print(f"Braze sandbox listening on {sandbox.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, or SIGTERM via _interrupt
            threading.Event().wait()
    print("Braze sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Calling Braze: one pooled HTTP connection pool, timeouts, and what each answer means.

The pool is urllib3's, which botocore has already loaded: `requests` on top of it (with
charset_normalizer and idna) cost the sender's cold start about 27 ms of CPU on Python 3.12 and
added nothing these JSON POSTs to one host use (`make bench`, cold-start table). Like requests, it
verifies certificates and host names (against the system's CA store, which Lambda's runtime has);
unlike requests it ignores HTTP(S)_PROXY variables, which a Lambda function does not have.

Braze's answers (BRAZE_API.md §3–§4) sort into a few verdicts that the sender acts on:
2xx success (possibly with per-object `errors`), 429 wait and retry, 5xx / timeouts / dropped
connections back off and retry, 400 and 413 split the call, 401 the key is wrong or rotated,
403 / 404 the deployment is misconfigured.
"""

from __future__ import annotations

import enum
import functools
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3 import exceptions as http_errors

_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_CAP_SECONDS = 20.0
# X-RateLimit-Reset is epoch seconds on most plans and seconds-remaining on MAU plans (§4).
_EPOCH_THRESHOLD = 1_000_000_000
_RNG = random.Random()


class Verdict(enum.Enum):
    SUCCESS = "success"
    RATE_LIMITED = "rate_limited"
    RETRY = "retry"
    SPLIT = "split"
    UNAUTHORIZED = "unauthorized"
    MISCONFIGURED = "misconfigured"


@dataclass(frozen=True, slots=True)
class BrazeResponse:
    status: int  # 0 when no answer arrived (timeout, dropped connection)
    body: dict[str, Any] | None
    headers: Mapping[str, str]  # case-insensitive: HTTP/2 lower-cases Braze's header names
    failure: str | None = None  # "timeout" or "connection" when status is 0

    @property
    def verdict(self) -> Verdict:
        if 200 <= self.status < 300:
            return Verdict.SUCCESS
        if self.status == 429:
            return Verdict.RATE_LIMITED
        if self.status == 0 or self.status >= 500:
            return Verdict.RETRY
        if self.status == 401:
            return Verdict.UNAUTHORIZED
        if self.status in (403, 404):
            return Verdict.MISCONFIGURED
        return Verdict.SPLIT  # 400, 413 and any other client error: narrow down to the object at fault

    @property
    def message(self) -> str:
        """Braze's own message, or what happened on the wire."""
        if self.failure:
            return f"no answer from Braze ({self.failure})"
        message = (self.body or {}).get("message")
        return str(message)[:500] if message else f"HTTP {self.status}"

    def errors(self) -> list[dict[str, Any]]:
        errors = (self.body or {}).get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []

    def wait_seconds(self, now_epoch: float | None = None) -> float | None:
        """How long Braze asks us to wait, from X-Ratelimit-Retry-After or X-RateLimit-Reset."""
        retry_after = _number(self.headers.get("x-ratelimit-retry-after"))
        if retry_after is not None:
            return max(0.0, retry_after)
        reset = _number(self.headers.get("x-ratelimit-reset"))
        if reset is None:
            return None
        if reset > _EPOCH_THRESHOLD:
            return max(0.0, reset - (time.time() if now_epoch is None else now_epoch))
        return max(0.0, reset)

    def window_exhausted(self) -> bool:
        """A success that used the window's last request: waiting now avoids a certain 429."""
        return _number(self.headers.get("x-ratelimit-remaining")) == 0


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (attempt 0 → up to 0.5 s, then 1, 2, 4 … capped at 20 s)."""
    return (rng or _RNG).uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt))


def retry_delay_seconds(response: BrazeResponse, attempt: int) -> float:
    """How long to wait before retrying a RATE_LIMITED or RETRY answer.

    A 429 waits what Braze's rate-limit headers say; without them, and for 5xx, timeouts and
    dropped connections, exponential backoff. The sender and the export starter both wait this.
    """
    if response.verdict is Verdict.RATE_LIMITED:
        wait_seconds = response.wait_seconds()
        if wait_seconds is not None:
            return wait_seconds
    return backoff_seconds(attempt)


class BrazeClient:
    """POSTs JSON to one Braze REST endpoint over a keep-alive connection pool."""

    def __init__(self, endpoint: str, *, pool_size: int, connect_timeout_seconds: float, read_timeout_seconds: float):
        self.endpoint = endpoint.rstrip("/")
        # No retries here (the sender decides, from the verdict); up to pool_size connections kept.
        self.pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=pool_size,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout_seconds, read=read_timeout_seconds),
        )

    def post(self, path: str, body: Mapping[str, Any], api_key: str) -> BrazeResponse:
        data = json.dumps(body, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        try:
            response = self.pool.request("POST", self.endpoint + path, body=data, headers=headers)
        # NewConnectionError (refused, unreachable) is a ConnectTimeoutError too, for compatibility:
        # it is a connection failure, as requests reported it.
        except http_errors.NewConnectionError:
            return BrazeResponse(0, None, urllib3.HTTPHeaderDict(), failure="connection")
        except http_errors.TimeoutError:
            return BrazeResponse(0, None, urllib3.HTTPHeaderDict(), failure="timeout")
        except http_errors.HTTPError:  # dropped connection, protocol error, TLS failure
            return BrazeResponse(0, None, urllib3.HTTPHeaderDict(), failure="connection")
        return BrazeResponse(response.status, _json_object(response.data), response.headers)


@functools.cache
def client_for(
    endpoint: str, pool_size: int, connect_timeout_seconds: float, read_timeout_seconds: float
) -> BrazeClient:
    """One client per execution environment, so connections are reused across invocations."""
    return BrazeClient(
        endpoint,
        pool_size=pool_size,
        connect_timeout_seconds=connect_timeout_seconds,
        read_timeout_seconds=read_timeout_seconds,
    )


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        return None
    return body if isinstance(body, dict) else None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None

"""Braze's rate limits (§2.9) and their headers (§4): a fixed window per family of endpoints.

Two families: /users/identify, /users/alias/new, /users/merge and /users/delete share one budget
(20,000 a minute, USER_DATA_FAMILY_PATHS); /users/track and every other route share the other.
"""

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from local.braze_sandbox.config import SandboxConfig


@dataclass(frozen=True)
class _Window:
    admitted: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds


def _default_limits(config: SandboxConfig) -> tuple[int, float]:
    return config.rate_limit_requests, config.rate_limit_window_seconds


def _user_data_limits(config: SandboxConfig) -> tuple[int, float]:
    return config.user_data_rate_limit_requests, config.user_data_rate_limit_window_seconds


class _FixedWindowLimiter:
    """A fixed window shared by a family of endpoints (§2.9: limits reset per window, not rolling).

    The window starts at the first request after the previous one ran out. Braze aligns its hourly
    windows to the clock; for a 3-second burst window the anchor is invisible to clients, and
    anchoring on the first request keeps tests free of boundary races.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        limits: Callable[[SandboxConfig], tuple[int, float]] = _default_limits,
    ):
        self._clock = clock
        self._limits = limits  # (requests, window seconds), read from the config at each call
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._start: float | None = None
        self._count = 0

    def acquire(self, config: SandboxConfig, force: bool = False) -> _Window:
        requests, window_seconds = self._limits(config)
        with self._lock:
            self._roll(window_seconds)
            admitted = force or self._count < requests
            if admitted:
                self._count += 1
            return self._state(requests, window_seconds, admitted)

    def peek(self, config: SandboxConfig) -> _Window:
        requests, window_seconds = self._limits(config)
        with self._lock:
            self._roll(window_seconds)
            return self._state(requests, window_seconds, True)

    def _roll(self, window_seconds: float) -> None:
        now = self._clock()
        if self._start is None or now >= self._start + window_seconds:
            self._start, self._count = now, 0

    def _state(self, requests: int, window_seconds: float, admitted: bool) -> _Window:
        start = self._start if self._start is not None else self._clock()
        remaining = max(0, requests - self._count)
        return _Window(admitted, requests, remaining, start + window_seconds)


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

"""Scripted answers: what a test queues to answer the next matching call instead of the model."""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.braze_sandbox.answers import _Answer, _default_body
from local.braze_sandbox.checks import _is_integer
from local.braze_sandbox.config import RecordedRequest, SandboxConfig
from local.braze_sandbox.rate_limit import _FixedWindowLimiter, _merge_headers, _rate_headers
from local.braze_sandbox.server import _Incoming, _normalize_path
from local.braze_sandbox.stats import _Stats


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


class _Scripts:
    """Scripted answers, mixed into `BrazeSandbox` (core.py)."""

    # BrazeSandbox's state that this mixin uses (core.py sets it).
    config: SandboxConfig
    _lock: threading.RLock
    _stats: _Stats
    _limiter_for: Callable[[str], _FixedWindowLimiter]
    _scripts: list[ScriptedResponse]

    def script(self, *responses: ScriptedResponse) -> None:
        """Queue answers for the next calls, FIFO; a response with `path` waits for that path."""
        with self._lock:
            self._scripts.extend(responses)

    def _take_script(self, path: str) -> ScriptedResponse | None:
        with self._lock:
            for position, script in enumerate(self._scripts):
                if script.path is None or _normalize_path(script.path) == path:
                    return self._scripts.pop(position)
        return None

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
        window = self._limiter_for(incoming.path).acquire(self.config, force=True)
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

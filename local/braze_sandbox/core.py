"""`BrazeSandbox`: the server and the order in which a Braze route answers; each area is a mixin beside it."""

import contextlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from local.braze_sandbox.answers import _Answer, _unauthorized
from local.braze_sandbox.config import RecordedRequest, SandboxConfig
from local.braze_sandbox.exports import CallbackRecord, ExportRecord, _ExportRoute
from local.braze_sandbox.faults import _Faults
from local.braze_sandbox.inspection import _Inspection, _object_count
from local.braze_sandbox.profiles import _ProfileStore
from local.braze_sandbox.rate_limit import (
    _FixedWindowLimiter,
    _has_rate_headers,
    _merge_headers,
    _rate_headers,
    _too_many_requests_headers,
    _user_data_limits,
    _Window,
)
from local.braze_sandbox.rules import (
    ALIAS_NEW_PATH,
    DELETE_PATH,
    GCG_EXPORT_PATH,
    IDENTIFY_PATH,
    MERGE_PATH,
    RATE_LIMIT_HEADER_ROTATION,
    RATE_LIMIT_HEADER_STYLES,
    TRACK_PATH,
    USER_DATA_FAMILY_PATHS,
)
from local.braze_sandbox.scripts import ScriptedResponse, _Scripts
from local.braze_sandbox.server import (
    _client_hung_up,
    _drop_connection,
    _Handler,
    _Incoming,
    _is_loopback,
    _read_incoming,
    _Server,
    _write_answer,
)
from local.braze_sandbox.stats import _Stats
from local.braze_sandbox.users_alias import _AliasNewRoute
from local.braze_sandbox.users_delete import _DeleteRoute
from local.braze_sandbox.users_identify import _IdentifyRoute
from local.braze_sandbox.users_merge import _MergeRoute
from local.braze_sandbox.users_track import _TrackRoute

logger = logging.getLogger("braze_sandbox")


class BrazeSandbox(
    _TrackRoute,
    _IdentifyRoute,
    _DeleteRoute,
    _AliasNewRoute,
    _MergeRoute,
    _ExportRoute,
    _Faults,
    _Scripts,
    _Inspection,
):
    """The HTTP server plus the profile state behind it. Use `start()`/`stop()` or `with`.

    A Braze route answers in this order: a queued script, if one matches; unknown route 404 / wrong
    method 405; latency; drop (unprocessed); auth 401; the rate-limit window (429); injected 500 or
    429 (unprocessed); 413 / 400 / processing; timeout stall (after processing); drop after
    processing. Every non-429 answer carries X-RateLimit-Limit/-Remaining/-Reset.

    Control routes, without auth and not recorded: GET /sandbox/users, GET /sandbox/users/{external_id},
    GET /sandbox/users/{external_id}/history, GET /sandbox/deletions, GET /sandbox/merges,
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
        self._limiter = _FixedWindowLimiter()  # /users/track and every route not in the family below
        self._user_data_limiter = _FixedWindowLimiter(limits=_user_data_limits)  # USER_DATA_FAMILY_PATHS
        self._stats = _Stats()
        self._export_files: dict[tuple[str, str], bytes] = {}
        self._seed_random()
        self._store = _ProfileStore(self._data_rng)
        self._routes: dict[str, Callable[[Any, frozenset[tuple[Any, Any]]], _Answer]] = {
            TRACK_PATH: self._track,
            IDENTIFY_PATH: self._identify,
            DELETE_PATH: self._delete,
            ALIAS_NEW_PATH: self._alias_new,
            MERGE_PATH: self._merge_users,
            GCG_EXPORT_PATH: self._export_control_group,
        }
        self.url = ""

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
            self._with_rate_headers(answer, self._limiter_for(incoming.path).peek(self.config))
        with self._lock:
            # Set before the answer is written, so a client that has its answer sees the status.
            record.status = answer.status if answer else None
            self._stats.count_status(incoming.path, record.status)
            if answer is not None and answer.rate_limit_style is not None:
                record.rate_limit_style = answer.rate_limit_style
                self._stats.rate_limit_styles[answer.rate_limit_style] += 1
        return answer

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
        window = self._limiter_for(incoming.path).acquire(config)
        if not window.admitted:
            return self._fault(record, "rate_limited_real", self._rate_limited(window))
        if draw.error < config.error_rate:
            answer = _Answer(500, {"message": "Internal Server Error"})
            return self._fault(record, "error", self._with_rate_headers(answer, window))
        if draw.rate_limited < config.rate_limited_rate:
            return self._fault(record, "rate_limited", self._injected_rate_limited(window.limit))

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

    def _limiter_for(self, path: str) -> _FixedWindowLimiter:
        """§2.9: the window of the family the route belongs to."""
        return self._user_data_limiter if path in USER_DATA_FAMILY_PATHS else self._limiter

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        # §1/§3: a quoted key ("Bearer \"key\"") is a 401, so the key is compared as sent.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            key.strip().encode("utf-8"), self.config.api_key.encode("utf-8")
        )

    def _rate_limited(self, window: "_Window") -> "_Answer":
        wait = max(0.0, window.reset_at - time.time())
        return self._too_many_requests(window.limit, wait)

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

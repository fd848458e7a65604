"""HTTP plumbing: the threaded server, its handler, reading requests and writing answers."""

import contextlib
import json
import logging
import select
import socket
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from local.braze_sandbox.answers import _Answer, _default_body


class _Served(Protocol):
    """What the server needs of the sandbox it serves (BrazeSandbox), so the arrow points one way."""

    def _register_connection(self, connection: socket.socket, is_open: bool) -> None: ...

    def _serve(self, handler: "_Handler") -> None: ...


logger = logging.getLogger("braze_sandbox")


_DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # read and discard oversize bodies up to this, then just close


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

    def __init__(self, address: tuple[str, int], sandbox: _Served):
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

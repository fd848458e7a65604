"""API Gateway's HTTP API on loopback in front of a function's handler, in-process: each request
becomes the payload-format-2.0 event the function gets, its answer the HTTP response. For tests
that drive the API with real HTTP clients (a Braze client library, schemathesis)."""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import LambdaContextStub

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class _ApiGateway(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    handler: Handler

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        split = urlsplit(self.path)
        try:
            body, encoded = data.decode("utf-8"), False
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(data).decode(), True  # as API Gateway passes binary bodies
        route = f"{self.command} {split.path}"
        event = {
            "version": "2.0",
            "routeKey": route,
            "rawPath": split.path,
            "rawQueryString": split.query,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "requestContext": {
                "http": {"method": self.command, "path": split.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
                "requestId": "loopback",
                "routeKey": route,
                "stage": "$default",
            },
            "body": body,
            "isBase64Encoded": encoded,
        }
        result = type(self).handler(event, LambdaContextStub())
        payload = result["body"].encode()
        self.send_response(result["statusCode"])
        for name, value in (result.get("headers") or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def __getattr__(self, name: str) -> Any:
        # Every other method: API Gateway's own JSON 404, as for a route it does not have.
        if name.startswith("do_"):
            return self._not_found
        raise AttributeError(name)

    def _not_found(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = b'{"message":"Not Found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(handler: Handler) -> Iterator[str]:
    """Serve `handler` on a free loopback port; yield the base URL."""
    gateway = type("Gateway", (_ApiGateway,), {"handler": staticmethod(handler)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), gateway)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

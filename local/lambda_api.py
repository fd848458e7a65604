"""Lambda's Invoke API, as `sam local start-lambda` offers it, for the template's functions.

    POST /2015-03-31/functions/{FunctionName}/invocations

FunctionName is the logical id (as with sam local), the function's name, or its ARN. The body is
the event; the answer is the handler's return value as JSON, or — when the handler raised or timed
out — Lambda's error payload with `X-Amz-Function-Error: Unhandled`. X-Amz-Invocation-Type `Event`
runs it in the background (202), `DryRun` only checks the name (204). So the AWS CLI and SDKs work:

    aws lambda invoke --endpoint-url http://127.0.0.1:3001 --function-name ExportStarterFunction out.json
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from local.runtime import MAX_PAYLOAD_BYTES, LocalFunction

logger = logging.getLogger("local.lambda")

_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
_ARN_NAME = re.compile(r"^(?:arn:[^:]+:lambda:[^:]+:)?(?:\d{12}:)?(?:function:)?([^:]+)(?::[^:]+)?$")


class LambdaApiServer(ThreadingHTTPServer):
    """Binds at construction (so a port in use is reported before anything else starts)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _LambdaHandler)
        self.functions: dict[str, LocalFunction] = {}
        self.region = "us-east-1"
        self.account_id = "123456789012"

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def configure(self, functions: dict[str, LocalFunction], region: str, account_id: str) -> None:
        self.functions = functions
        self.region, self.account_id = region, account_id

    def find(self, name: str) -> LocalFunction | None:
        match = _ARN_NAME.match(name)
        wanted = match.group(1) if match else name
        for function in self.functions.values():
            if wanted in (function.logical_id, function.name):
                return function
        return None

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("Lambda API: error while serving a request")


class _LambdaHandler(BaseHTTPRequestHandler):
    server: LambdaApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("Lambda API: " + format, *args)

    def do_GET(self) -> None:
        self._discard_body()
        self._error(404, "UnknownOperationException", "only Invoke is offered locally")

    do_PUT = do_DELETE = do_PATCH = do_GET

    def do_POST(self) -> None:
        match = _INVOKE_PATH.match(urlsplit(self.path).path)
        if match is None:
            self.do_GET()
            return
        name = unquote(match.group(1))
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_PAYLOAD_BYTES:
            self.close_connection = True  # the body stays unread
            self._error(
                413,
                "RequestTooLargeException",
                f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation",
            )
            return
        body = self.rfile.read(length) if length else b""
        function = self.server.find(name)
        if function is None:
            arn = f"arn:aws:lambda:{self.server.region}:{self.server.account_id}:function:{name}"
            known = ", ".join(sorted(self.server.functions))
            self._error(404, "ResourceNotFoundException", f"Function not found: {arn} (local functions: {known})")
            return
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            self._error(400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}")
            return
        invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type == "DryRun":
            self._send(204, b"", {})
            return
        if invocation_type == "Event":
            worker = threading.Thread(target=function.invoke, args=(event,), name=f"event-{function.logical_id}")
            worker.daemon = True
            worker.start()
            self._send(202, b"", {})
            return
        if invocation_type != "RequestResponse":
            self._error(400, "InvalidParameterValueException", f"unknown X-Amz-Invocation-Type {invocation_type}")
            return
        invocation = function.invoke(event)
        headers = {
            "X-Amz-Executed-Version": "$LATEST",
            "Content-Type": "application/json",
            "x-amzn-RequestId": invocation.request_id,
        }
        if invocation.failed:
            headers["X-Amz-Function-Error"] = "Unhandled"
            payload = invocation.error
        else:
            payload = invocation.value
        self._send(200, json.dumps(payload).encode("utf-8"), headers)

    def _discard_body(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            length = int(self.headers.get("Content-Length") or 0)
            if 0 < length <= MAX_PAYLOAD_BYTES:
                self.rfile.read(length)
            elif length:
                self.close_connection = True

    def _error(self, status: int, error_type: str, message: str) -> None:
        body = json.dumps({"Type": "User", "message": message}).encode("utf-8")
        self._send(status, body, {"Content-Type": "application/json", "x-amzn-ErrorType": error_type})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        with contextlib.suppress(OSError):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

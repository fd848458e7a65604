"""The template's HTTP API routes, served as API Gateway's HTTP API would call the functions.

Routes come from every `AWS::Serverless::Function` event of Type HttpApi (Path, Method, path
variables `{name}` and greedy `{name+}`, Method ANY). A request becomes a payload-format-2.0 event
(lower-cased headers with duplicates joined by commas, cookies in `cookies`, rawPath,
rawQueryString, queryStringParameters, pathParameters, requestContext with a fresh requestId, the
body base64-encoded when it is not UTF-8 text) and the function's answer is written back as
API Gateway writes it (statusCode, headers, cookies, a base64 body decoded; anything else is a
200 JSON body). API Gateway's own answers are kept: unknown route 404 `{"message":"Not Found"}`,
body over 10 MB 413, function error 500, integration timeout (30 s) 503.

A function with FunctionUrlConfig (FrontDoor=FunctionUrl: IngestUrlFunction) is served as its
Lambda function URL on the same port: every request no HttpApi route takes goes to it, as a
payload-format-2.0 event with routeKey and stage "$default", no pathParameters (the function routes
by rawPath) and accountId "anonymous" (AuthType NONE); its answers are Lambda's: an event over
6 MB 413, a function error or timeout 502.

Not emulated: authorizers, CORS, throttling (and reserved concurrency), custom domains — a route with an authorizer is
reported at start, because locally its requests reach the function unauthenticated.

Local only, never deployed: when given a document builder, GET /openapi.json answers the API's
OpenAPI document (generated from the running code, built on first request) and GET /docs a
browsable page of it. A route of the template with the same path wins over them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.resources import LocalStack
from local.runtime import MAX_PAYLOAD_BYTES, LocalFunction, LocalRuntimeError

logger = logging.getLogger("local.api")

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit
INTEGRATION_TIMEOUT_SECONDS = 30.0  # HTTP API's maximum integration timeout
_VARIABLE = re.compile(r"^\{([^{}+]+)(\+?)\}$")
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or "ANY"
    path: str  # as in the template, e.g. /webhooks/{provider}
    function: LocalFunction
    api: str  # logical id of the HttpApi
    stage: str  # "$default", or a stage name that prefixes the path

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when this route takes the request, else None."""
        if self.method not in ("ANY", method):
            return None
        wanted = [unquote(part) for part in path.strip("/").split("/")] if path.strip("/") else []
        pattern = self.path.strip("/").split("/") if self.path.strip("/") else []
        parameters: dict[str, str] = {}
        for position, part in enumerate(pattern):
            variable = _VARIABLE.match(part)
            if variable and variable.group(2):  # greedy: the rest of the path, at least one segment
                rest = wanted[position:]
                if not rest:
                    return None
                parameters[variable.group(1)] = "/".join(rest)
                return parameters
            if position >= len(wanted):
                return None
            if variable:
                if not wanted[position]:
                    return None
                parameters[variable.group(1)] = wanted[position]
            elif part != wanted[position]:
                return None
        return parameters if len(wanted) == len(pattern) else None

    def specificity(self) -> tuple[int, int, int]:
        # API Gateway prefers the most specific route: literal segments over variables, variables
        # over a greedy variable, a named method over ANY.
        parts = self.path.strip("/").split("/")
        greedy = any(_VARIABLE.match(part) and part.endswith("+}") for part in parts)
        literals = sum(1 for part in parts if not _VARIABLE.match(part))
        return (int(greedy), -literals, int(self.method == "ANY"))


def http_api_routes(stack: LocalStack, functions: dict[str, LocalFunction]) -> list[Route]:
    """Every HttpApi event of the template as a route; refuse what cannot be served faithfully."""
    routes: list[Route] = []
    for logical_id, function in functions.items():
        for event_name, properties in function.events("HttpApi"):
            api = _api_logical_id(properties)
            api_properties = stack.template["Resources"].get(api, {}).get("Properties", {}) or {}
            version = str(properties.get("PayloadFormatVersion", "2.0"))
            if version != "2.0":
                raise LocalRuntimeError(
                    f"{logical_id}.{event_name}: payload format {version} is not served locally (only 2.0)"
                )
            if "DefinitionBody" in api_properties or "DefinitionUri" in api_properties:
                raise LocalRuntimeError(f"{api}: OpenAPI definitions are not served locally; use events")
            if "Auth" in properties or "Auth" in api_properties:
                logger.warning(
                    "%s.%s: the route's authorizer is not emulated; locally requests reach %s unauthenticated",
                    logical_id,
                    event_name,
                    logical_id,
                )
            path = str(properties.get("Path", "$default"))
            method = str(properties.get("Method", "ANY")).upper()
            stage = str(stack.resolve(api_properties.get("StageName", "$default")))
            routes.append(Route(method=method, path=path, function=function, api=api, stage=stage))
    seen: dict[str, Route] = {}
    for route in routes:
        key = f"{route.stage} {route.key}"
        if key in seen:
            raise LocalRuntimeError(
                f"route {route.key} is defined twice ({seen[key].function.logical_id} and "
                f"{route.function.logical_id}); the local stack serves all HTTP APIs on one port"
            )
        seen[key] = route
    return routes


def function_url_target(functions: dict[str, LocalFunction]) -> LocalFunction | None:
    """The function the template gives a function URL (FunctionUrlConfig), if any; one at most locally."""
    targets = [function for function in functions.values() if function.properties.get("FunctionUrlConfig")]
    if len(targets) > 1:
        names = ", ".join(function.logical_id for function in targets)
        raise LocalRuntimeError(f"{names}: the local stack serves one function URL on its API port, not {len(targets)}")
    if targets and targets[0].properties["FunctionUrlConfig"].get("AuthType", "AWS_IAM") != "NONE":
        raise LocalRuntimeError(f"{targets[0].logical_id}: only function URLs with AuthType NONE are served locally")
    return targets[0] if targets else None


def _api_logical_id(properties: dict[str, Any]) -> str:
    api = properties.get("ApiId")
    if isinstance(api, dict) and "Ref" in api:
        return str(api["Ref"])
    return "ServerlessHttpApi"


class ApiGatewayServer(ThreadingHTTPServer):
    """Binds at construction (so a port in use is reported before anything else starts)."""

    daemon_threads = True
    allow_reuse_address = True  # a restarted stack can take its port while old sockets linger

    def __init__(self, port: int, stack_account: str = "123456789012") -> None:
        super().__init__(("127.0.0.1", port), _ApiHandler)
        self.routes: list[Route] = []
        self.account_id = stack_account
        self.api_ids: dict[str, str] = {}
        self.api_docs: Callable[[], dict[str, Any]] | None = None
        self.function_url: LocalFunction | None = None  # takes what no route takes (function_url_target)
        self.function_url_id = ""
        self._docs: tuple[bytes, bytes] | None = None
        self._docs_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def configure(
        self, routes: list[Route], api_ids: dict[str, str], api_docs: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.routes = sorted(routes, key=Route.specificity)
        self.api_ids = api_ids
        self.api_docs = api_docs
        self._docs = None

    def docs(self) -> tuple[bytes, bytes]:
        """The OpenAPI document and its page (JSON, HTML), built once from api_docs."""
        assert self.api_docs is not None
        with self._docs_lock:
            if self._docs is None:
                from apidoc.document import dumps
                from apidoc.page import html

                document = dumps(self.api_docs())
                self._docs = document.encode("utf-8"), html(document).encode("utf-8")
            return self._docs

    def find(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            path = raw_path
            if route.stage != "$default":
                prefix = f"/{route.stage}"
                if not (raw_path == prefix or raw_path.startswith(prefix + "/")):
                    continue
                path = raw_path[len(prefix) :] or "/"
            if route.path == "$default":
                return route, {}
            parameters = route.match(method, path)
            if parameters is not None:
                return route, parameters
        return None

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("API: error while serving a request")


class _ApiHandler(BaseHTTPRequestHandler):
    server: ApiGatewayServer
    protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway offers

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, PROPFIND…) is routed like the others, so it gets API
        # Gateway's JSON 404 rather than http.server's HTML 501 page.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # the functions' logs tell the story
        logger.debug("API: " + format, *args)

    def _serve(self) -> None:
        request_id = str(uuid.uuid4())
        received = time.time()
        body = self._read_body()
        if body is None:
            return
        split = urlsplit(self.path)
        found = self.server.find(self.command, split.path)
        if found is None and self._serve_docs(split.path, split.query, request_id):
            return
        if found is None and self.server.function_url is not None:
            self._serve_function_url(self.server.function_url, split.path, split.query, body, request_id, received)
            return
        if found is None:
            self._message(404, "Not Found", request_id)
            return
        route, parameters = found
        event = self._event(route, parameters, split.path, split.query, body, request_id, received)
        if len(json.dumps(event).encode("utf-8")) > MAX_PAYLOAD_BYTES:
            # [inf] The body fits the API but not Lambda's 6 MB invocation payload.
            self._message(413, "Request Entity Too Large", request_id)
            return
        invocation = route.function.invoke(event, wait_seconds=INTEGRATION_TIMEOUT_SECONDS)
        if invocation.abandoned:  # the integration timed out before the function did
            self._message(503, "Service Unavailable", request_id)
            return
        if invocation.failed:
            self._message(500, "Internal Server Error", request_id)
            return
        try:
            status, headers, payload = _http_response(invocation.value)
        except (TypeError, ValueError) as exc:
            logger.warning("API: %s answered a malformed response: %s", route.function.logical_id, exc)
            self._message(500, "Internal Server Error", request_id)
            return
        self._answer(status, headers, payload, request_id)

    def _serve_function_url(
        self, function: LocalFunction, raw_path: str, raw_query: str, body: bytes, request_id: str, received: float
    ) -> None:
        """As Lambda serves a function URL: the whole request to the function, which routes it itself."""
        url_route = Route(method="ANY", path="$default", function=function, api="", stage="$default")
        event = self._event(url_route, {}, raw_path, raw_query, body, request_id, received)
        url_id = self.server.function_url_id or "local"
        event["requestContext"]["apiId"] = url_id
        event["requestContext"]["accountId"] = "anonymous"  # AuthType NONE: no caller identity
        if len(json.dumps(event).encode("utf-8")) > MAX_PAYLOAD_BYTES:
            self._message(413, "Request Entity Too Large", request_id)
            return
        invocation = function.invoke(event)  # no integration timeout: the function's own
        if invocation.abandoned or invocation.failed:
            self._message(502, "Internal Server Error", request_id)
            return
        try:
            status, headers, payload = _http_response(invocation.value)
        except (TypeError, ValueError) as exc:
            logger.warning("API: %s answered a malformed response: %s", function.logical_id, exc)
            self._message(502, "Internal Server Error", request_id)
            return
        # Lambda's request id header, not API Gateway's apigw-requestid.
        self._answer(status, [*headers, ("x-amzn-requestid", request_id)], payload, "")

    def _serve_docs(self, path: str, query: str, request_id: str) -> bool:
        """GET /openapi.json and /docs (local only); False when the request is not for them."""
        if self.server.api_docs is None or self.command not in ("GET", "HEAD") or path not in (OPENAPI_PATH, DOCS_PATH):
            return False
        try:
            document, page = self.server.docs()
        except Exception as exc:  # a broken document must not take the API down with it
            logger.exception("API: the OpenAPI document could not be built")
            body = json.dumps({"message": f"the OpenAPI document could not be built: {exc}"}).encode()
            self._answer(500, {"content-type": "application/json"}, body, request_id)
            return True
        # /docs?format=json is where Powertools' Swagger UI page says its document is.
        if path == OPENAPI_PATH or ("format", "json") in parse_qsl(query):
            self._answer(200, {"content-type": "application/json"}, document, request_id)
        else:
            self._answer(200, {"content-type": "text/html; charset=utf-8"}, page, request_id)
        return True

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering (too large, malformed framing)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            self._message(400, "Bad Request", "")
            return None
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True  # the body stays unread, so the connection cannot be reused
            self._message(413, "Request Entity Too Large", "")
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        chunks, total = [], 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self.close_connection = True
                self._message(400, "Bad Request", "")
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_REQUEST_BYTES:
                self.close_connection = True
                self._message(413, "Request Entity Too Large", "")
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _event(
        self,
        route: Route,
        parameters: dict[str, str],
        raw_path: str,
        raw_query: str,
        body: bytes,
        request_id: str,
        received: float,
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in self.headers.items():
            lowered = name.lower()
            if lowered == "cookie":
                cookies.extend(part.strip() for part in value.split(";") if part.strip())
                continue
            headers[lowered] = f"{headers[lowered]},{value}" if lowered in headers else value
        client_ip = self.client_address[0]
        host, port = self.server.server_address[:2]
        # What API Gateway adds on its way to the function.
        headers.setdefault("x-forwarded-for", client_ip)
        headers.setdefault("x-forwarded-port", str(port))
        headers.setdefault("x-forwarded-proto", "http")
        headers.setdefault("x-amzn-trace-id", f"Root=1-{int(received):08x}-{uuid.uuid4().hex[:24]}")
        if body and "content-length" not in headers:
            headers["content-length"] = str(len(body))
        api_id = self.server.api_ids.get(route.api, "local")
        domain = headers.get("host", f"{host}:{port}")
        route_key = "$default" if route.path == "$default" else route.key
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": raw_path,
            "rawQueryString": raw_query,
        }
        if cookies:
            event["cookies"] = cookies
        event["headers"] = headers
        if raw_query:
            query: dict[str, str] = {}
            for name, value in parse_qsl(raw_query, keep_blank_values=True):
                query[name] = f"{query[name]},{value}" if name in query else value
            event["queryStringParameters"] = query
        event["requestContext"] = {
            "accountId": self.server.account_id,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": self.command,
                "path": raw_path,
                "protocol": self.request_version,
                "sourceIp": client_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": route.stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(received)),
            "timeEpoch": int(received * 1000),
        }
        if parameters:
            event["pathParameters"] = parameters
        if body:
            try:
                event["body"], event["isBase64Encoded"] = body.decode("utf-8"), False
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        else:
            event["isBase64Encoded"] = False
        return event

    def _message(self, status: int, text: str, request_id: str) -> None:
        """One of API Gateway's own answers."""
        body = json.dumps({"message": text}, separators=(",", ":")).encode()
        self._answer(status, {"content-type": "application/json"}, body, request_id)

    def _answer(
        self, status: int, headers: dict[str, str] | list[tuple[str, str]], body: bytes, request_id: str
    ) -> None:
        pairs = list(headers.items()) if isinstance(headers, dict) else headers
        with contextlib.suppress(OSError):  # the client hung up: nothing to tell it
            self.send_response(status, _phrase(status))
            for name, value in pairs:
                if name.lower() in ("content-length", "connection", "transfer-encoding"):
                    continue  # framing is this server's business
                self.send_header(name, value)
            if request_id:
                self.send_header("apigw-requestid", request_id)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _http_response(value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """The HTTP answer API Gateway makes of a format-2.0 function response."""
    if isinstance(value, dict) and "statusCode" in value:
        status = int(value["statusCode"])
        if not 100 <= status <= 599:
            raise ValueError(f"statusCode {status} is not an HTTP status")
        headers = {str(name): str(header) for name, header in (value.get("headers") or {}).items()}
        for name, values in (value.get("multiValueHeaders") or {}).items():
            headers.setdefault(str(name), ",".join(str(item) for item in values))
        raw = value.get("body")
        if raw is None:
            payload = b""
        elif value.get("isBase64Encoded"):
            payload = base64.b64decode(str(raw))
        else:
            payload = str(raw).encode("utf-8")
        pairs = list(headers.items())
        # Set-Cookie cannot be comma-joined: each cookie is its own header line.
        pairs.extend(("set-cookie", str(cookie)) for cookie in value.get("cookies") or [])
        return status, pairs, payload
    # API Gateway's reading of any other answer: 200, application/json, the value as the body.
    return 200, [("content-type", "application/json")], json.dumps(value).encode("utf-8")

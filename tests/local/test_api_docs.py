"""The local stack's API docs: GET /openapi.json and GET /docs, and the page rendered by a real browser.

The browser test drives Debian's `chromium` headless (no Python dependency): it loads /docs with
every request that would leave 127.0.0.1 sent to a local sink that refuses it, and reads the DOM
after the page's JavaScript ran. Swagger UI builds the operations from the document in the browser,
so routes in that DOM prove the page rendered, offline. Skipped where chromium is not installed
(`apt-get install chromium`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
import requests

from apidoc.document import OPENAPI_JSON, build, template_routes
from local.api_gateway import ApiGatewayServer, Route
from local.stack import Stack, StackOptions
from tests.local.test_api_gateway import Recorder

pytestmark = pytest.mark.local

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack(StackOptions(api_port=0, lambda_port=0, aws_port=0, sandbox_port=0)) as running:
        yield running


def serve(server: ApiGatewayServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


def test_the_stack_serves_the_document_of_the_code_it_runs_with_itself_as_server(stack: Stack) -> None:
    assert stack.api is not None
    response = requests.get(stack.api.url + "/openapi.json", timeout=60)

    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["servers"][0]["url"] == stack.api.url
    committed = json.loads(OPENAPI_JSON.read_text(encoding="utf-8"))
    assert {key: value for key, value in document.items() if key != "servers"} == {
        key: value for key, value in committed.items() if key != "servers"
    }
    assert any(line.strip().startswith("API docs") and "/docs" in line for line in stack.describe())


def test_the_page_needs_nothing_from_the_network(stack: Stack) -> None:
    assert stack.api is not None
    page = requests.get(stack.api.url + "/docs", timeout=60)

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    remote = re.findall(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", page.text)
    assert not remote, "the page loads something from elsewhere"
    assert "SwaggerUIBundle" in page.text and '"/users/track"' in page.text
    as_json = requests.get(stack.api.url + "/docs?format=json", timeout=60)  # where Swagger UI says it is
    assert as_json.json() == requests.get(stack.api.url + "/openapi.json", timeout=60).json()


def test_a_route_of_the_template_wins_over_the_docs_and_other_methods_are_not_served() -> None:
    function = Recorder("DocsFunction")
    server = ApiGatewayServer(0)
    server.configure([Route("GET", "/docs", function, "Api", "$default")], {}, api_docs=build)  # type: ignore[arg-type]
    serve(server)
    try:
        assert requests.get(server.url + "/docs", timeout=10).text == "ok" and len(function.events) == 1
        assert requests.post(server.url + "/openapi.json", timeout=10).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_a_document_that_cannot_be_built_is_a_500_not_a_broken_api() -> None:
    def broken() -> dict[str, Any]:
        raise ValueError("template.yaml routes POST /x to a function whose resolver has no such route")

    server = ApiGatewayServer(0)
    server.configure([], {}, api_docs=broken)
    serve(server)
    try:
        response = requests.get(server.url + "/openapi.json", timeout=10)
        assert response.status_code == 500 and "POST /x" in response.json()["message"]
    finally:
        server.shutdown()
        server.server_close()


class _Operations(HTMLParser):
    """The operations Swagger UI rendered: (method, path) of each `.opblock` summary, and the answer
    codes of the expanded one."""

    def __init__(self) -> None:
        super().__init__()
        self.methods: list[str] = []
        self.paths: list[str] = []
        self.codes: list[str] = []
        self._in_method = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        self._in_method = "opblock-summary-method" in classes
        if "opblock-summary-path" in classes and attributes.get("data-path"):
            self.paths.append(str(attributes["data-path"]))
        if tag == "tr" and "response" in classes and attributes.get("data-code"):
            self.codes.append(str(attributes["data-code"]))

    def handle_data(self, data: str) -> None:
        if self._in_method and data.strip():
            self.methods.append(data.strip())
            self._in_method = False


class _Sink(socketserver.StreamRequestHandler):
    """Where the browser's proxy points: every request that would leave 127.0.0.1 is refused here."""

    def handle(self) -> None:
        self.server.requests.append(self.rfile.readline(2048).decode("latin-1").strip())  # type: ignore[attr-defined]
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def rendered_dom(url: str, timeout: float = 120) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the requests the browser tried to send elsewhere."""
    sink = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Sink)
    sink.daemon_threads = True
    sink.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=sink.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            command = [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",  # root in a container has no user namespace for the sandbox
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-sync",
                "--disable-quic",
                # Nothing leaves the machine: names resolve to nothing but 127.0.0.1, and every
                # request that is not to loopback goes to the sink (Chromium's own background
                # traffic included), which refuses it.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--proxy-server=http://127.0.0.1:{sink.server_address[1]}",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                url,
            ]
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
            )
            try:
                out, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the browser and its helpers: this test started them
                process.communicate()
                raise
            assert process.returncode == 0, err[-2000:]
            return out, list(sink.requests)  # type: ignore[attr-defined]
    finally:
        sink.shutdown()
        sink.server_close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_headless_chromium_renders_every_route_and_the_answers_of_an_operation(stack: Stack) -> None:
    assert stack.api is not None
    # The deep link expands one operation, so its parameters and answers are rendered too.
    dom, elsewhere = rendered_dom(stack.api.url + "/docs#/ingest/usersTrack")

    found = _Operations()
    found.feed(dom)
    rendered = set(zip(found.methods, found.paths, strict=False))
    expected = {(route.method, route.path) for route in template_routes()}
    assert rendered == expected, f"rendered {sorted(rendered)}; the browser tried to reach {elsewhere}"
    track = json.loads(OPENAPI_JSON.read_text(encoding="utf-8"))["paths"]["/users/track"]["post"]
    assert found.codes == list(track["responses"])
    assert "Idempotency-Key" in dom and "BAD_EVENT_NAME" in dom  # a parameter and an answer example

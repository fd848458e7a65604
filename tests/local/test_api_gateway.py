"""The local HTTP API over real HTTP: the payload-format-2.0 event it builds, and how it answers.

A recording stand-in takes the function's place, so these tests need no stack and no moto.
"""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.api_gateway import ApiGatewayServer, Route
from local.runtime import Invocation

pytestmark = pytest.mark.local


class Recorder:
    """Looks like a LocalFunction to the API: keeps the events, answers what it is told."""

    def __init__(self, logical_id: str) -> None:
        self.logical_id = logical_id
        self.events: list[dict[str, Any]] = []
        self.answer: Any = {"statusCode": 200, "body": "ok"}
        self.error: dict[str, Any] | None = None

    def invoke(self, event: dict[str, Any], *, wait_seconds: float | None = None) -> Invocation:
        self.events.append(event)
        if self.error is not None:
            return Invocation(request_id="r", error=self.error)
        return Invocation(request_id="r", value=self.answer)


@pytest.fixture
def api() -> Iterator[tuple[str, Recorder, Recorder]]:
    ingest, callback = Recorder("IngestApiFunction"), Recorder("ExportCallbackFunction")
    server = ApiGatewayServer(0)
    server.configure(
        [
            Route("POST", "/users/track", ingest, "IngestHttpApi", "$default"),  # type: ignore[arg-type]
            Route("POST", "/webhooks/{provider}", ingest, "IngestHttpApi", "$default"),  # type: ignore[arg-type]
            Route("POST", "/exports/{job_id}/callback", callback, "IngestHttpApi", "$default"),  # type: ignore[arg-type]
        ],
        {"IngestHttpApi": "a1b2c3d4e5"},
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.url, ingest, callback
    server.shutdown()
    server.server_close()


def test_the_event_is_payload_format_2_0_as_api_gateway_builds_it(api: tuple[str, Recorder, Recorder]) -> None:
    url, _, callback = api

    response = requests.post(
        f"{url}/exports/job%201/callback?token=abc&x=1&x=2",
        data=b'{"success":true}',
        headers={"Content-Type": "application/json", "X-Custom": "A", "Cookie": "a=1; b=2"},
        timeout=5,
    )

    assert response.status_code == 200 and response.text == "ok"
    [event] = callback.events
    assert event["version"] == "2.0"
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "POST /exports/{job_id}/callback"
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == "/exports/job%201/callback"
    assert event["rawQueryString"] == "token=abc&x=1&x=2"
    assert event["queryStringParameters"] == {"token": "abc", "x": "1,2"}
    assert event["pathParameters"] == {"job_id": "job 1"}
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["x-custom"] == "A"
    assert "cookie" not in event["headers"] and event["cookies"] == ["a=1", "b=2"]
    assert all(name == name.lower() for name in event["headers"])
    context = event["requestContext"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["apiId"] == "a1b2c3d4e5" and context["stage"] == "$default"
    assert len(context["requestId"]) == 36
    assert isinstance(context["timeEpoch"], int)
    assert event["body"] == '{"success":true}' and event["isBase64Encoded"] is False
    assert response.headers["apigw-requestid"] == context["requestId"]


def test_a_body_that_is_not_utf8_text_arrives_base64_encoded(api: tuple[str, Recorder, Recorder]) -> None:
    url, ingest, _ = api
    raw = b"\x1f\x8b\x08\x00\xff\xfe"

    requests.post(f"{url}/webhooks/stripe", data=raw, timeout=5)

    [event] = ingest.events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw
    assert event["pathParameters"] == {"provider": "stripe"}


def test_unknown_routes_and_methods_get_api_gateways_404(api: tuple[str, Recorder, Recorder]) -> None:
    url, ingest, _ = api

    for method, path in (("POST", "/users/delete"), ("GET", "/users/track"), ("POST", "/webhooks/a/b")):
        response = requests.request(method, url + path, timeout=5)
        assert response.status_code == 404, path
        assert response.json() == {"message": "Not Found"}
    assert ingest.events == []


def test_any_other_method_gets_the_same_json_404_not_an_html_page(api: tuple[str, Recorder, Recorder]) -> None:
    url, ingest, _ = api

    for method in ("TRACE", "QUERY", "PROPFIND", "CONNECT", "BREW"):
        for path in ("/users/track", "/nowhere"):
            response = requests.request(method, url + path, timeout=5)
            assert response.status_code == 404, (method, path)
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {"message": "Not Found"}
    assert ingest.events == []


def test_the_functions_answer_is_written_back_as_api_gateway_writes_it(api: tuple[str, Recorder, Recorder]) -> None:
    url, ingest, _ = api
    ingest.answer = {
        "statusCode": 202,
        "headers": {"Content-Type": "application/json", "X-Correlation-Id": "c1"},
        "cookies": ["s=1; Path=/", "t=2"],
        "body": base64.b64encode(b'{"queued":1}').decode(),
        "isBase64Encoded": True,
    }

    response = requests.post(f"{url}/users/track", data=b"{}", timeout=5)

    assert response.status_code == 202
    assert response.content == b'{"queued":1}'
    assert response.headers["x-correlation-id"] == "c1"
    assert response.raw.headers.getlist("set-cookie") == ["s=1; Path=/", "t=2"]


def test_an_answer_without_status_code_is_a_200_json_body(api: tuple[str, Recorder, Recorder]) -> None:
    url, ingest, _ = api
    ingest.answer = {"queued": 3}

    response = requests.post(f"{url}/users/track", data=b"{}", timeout=5)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"queued": 3}


def test_a_function_error_is_api_gateways_500(api: tuple[str, Recorder, Recorder]) -> None:
    url, ingest, _ = api
    ingest.error = {"errorType": "KeyError", "errorMessage": "'x'"}

    response = requests.post(f"{url}/users/track", data=b"{}", timeout=5)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_a_body_over_10_mb_is_a_413_and_never_reaches_the_function(api: tuple[str, Recorder, Recorder]) -> None:
    url, ingest, _ = api
    host, port = url.removeprefix("http://").split(":")

    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(b"POST /users/track HTTP/1.1\r\nHost: x\r\nContent-Length: 10485761\r\n\r\n")
        answer = connection.makefile("rb").read()

    assert answer.split(b" ", 2)[1] == b"413"
    assert answer.endswith(b'{"message":"Request Entity Too Large"}')
    assert ingest.events == []

"""A real third-party Braze client, pointed at our API by its base URL only, works on every answer.

The client is braze-client-p311 (the `braze.client` module of PyPI's braze-client 2.3.3, whose own
pin tenacity<6 does not import on Python 3.11, re-released with tenacity 8): it decides success by
the answer's `message` alone and raises BrazeClientError(message, errors) on anything else, so an
answer without `message` made it crash with KeyError('message'). It is driven over loopback HTTP
against the real ingest handler (moto behind it), exactly as it would call Braze.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from braze.client import BrazeClient, BrazeClientError

from braze_forwarder.ingest.auth import hash_key
from tests.conftest import use_function_environment
from tests.loopback_api import serve

KEY = "k_client_0123456789abcdef0123456789abcdef"
EVENT = {"external_id": "user-1", "name": "signed_up", "time": "2026-11-22T07:39:12Z"}
ATTRIBUTES = {"external_id": "user-1", "first_name": "Ada"}
MAX_BODY_BYTES = 4096


@pytest.fixture
def api_url(aws_stack, monkeypatch) -> Iterator[str]:
    use_function_environment(monkeypatch, aws_stack, "IngestApiFunction")
    monkeypatch.setenv("MAX_BODY_BYTES", str(MAX_BODY_BYTES))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws_stack.refs["IngestKeysSecret"],
        SecretString=json.dumps({"clients": [{"name": "braze-client", "key_sha256": hash_key(KEY)}]}),
    )
    from functions.ingest_api import app

    with serve(app.lambda_handler) as url:
        yield url


def client(api_url: str, key: str = KEY, **options: Any) -> BrazeClient:
    return BrazeClient(api_key=key, api_url=api_url, **options)


def identify(braze: BrazeClient, payload: dict[str, Any]) -> dict[str, Any]:
    """The client has no /users/identify method: its own request and answer handling, on that path."""
    return post(braze, "/users/identify", payload)


def post(braze: BrazeClient, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A path the client has no method for (identify, alias/new, merge), through its own request handling."""
    braze.request_url = braze.api_url + path
    return braze._BrazeClient__create_request(payload)  # type: ignore[attr-defined]


def refusal(call: Callable[[], Any]) -> tuple[str, list[Any]]:
    """The client's BrazeClientError(message, errors) for a refused request."""
    with pytest.raises(BrazeClientError) as raised:
        call()
    assert type(raised.value) is BrazeClientError  # not its rate-limit or 5xx subclasses
    message, errors = raised.value.args
    return message, errors


def test_track_succeeds_as_on_braze(api_url):
    answer = client(api_url).user_track(attributes=[ATTRIBUTES], events=[EVENT])
    assert answer["success"] is True
    assert answer["message"] == "success" and answer["errors"] == []
    assert answer["status_code"] == 202
    assert (answer["attributes_queued"], answer["events_queued"], answer["purchases_queued"]) == (1, 1, 0)


def test_identify_succeeds_as_on_braze(api_url):
    alias = {"external_id": "user-2", "user_alias": {"alias_name": "device-1", "alias_label": "device_id"}}
    answer = identify(client(api_url), {"aliases_to_identify": [alias]})
    assert answer["success"] is True and answer["message"] == "success" and answer["aliases_queued"] == 1


def test_the_clients_user_delete_succeeds_as_on_braze(api_url):
    answer = client(api_url).user_delete(["user-1", "user-2"])
    assert answer["success"] is True and answer["message"] == "success"
    assert answer["status_code"] == 202 and answer["deleted"] == 2


def test_a_delete_of_more_than_50_users_is_a_bad_request(api_url):
    message, errors = refusal(lambda: client(api_url).user_delete([f"user-{i}" for i in range(51)]))
    assert (message, errors) == ("Bad Request", [])


def test_alias_new_and_merge_succeed_as_on_braze(api_url):
    braze = client(api_url)
    alias = {"alias_name": "device-1", "alias_label": "device_id", "external_id": "user-1"}
    answer = post(braze, "/users/alias/new", {"user_aliases": [alias]})
    assert answer["success"] is True and answer["aliases_queued"] == 1
    update = {"identifier_to_merge": {"external_id": "old-1"}, "identifier_to_keep": {"external_id": "user-1"}}
    answer = post(braze, "/users/merge", {"merge_updates": [update]})
    assert answer["success"] is True and answer["merge_updates_queued"] == 1


def test_a_merge_into_itself_is_listed_and_refused(api_url):
    update = {"identifier_to_merge": {"external_id": "user-1"}, "identifier_to_keep": {"external_id": "user-1"}}
    message, errors = refusal(lambda: post(client(api_url), "/users/merge", {"merge_updates": [update]}))
    assert message == "Bad Request"
    assert [(error["index"], error["type"]) for error in errors] == [(0, "MERGE_INTO_ITSELF")]


def test_some_invalid_objects_are_listed_and_the_rest_accepted(api_url):
    answer = client(api_url).user_track(events=[EVENT, {"external_id": "user-1", "name": "$bad", "time": "x"}])
    assert answer["message"] == "success" and answer["success"] is False  # the client's own verdict
    assert answer["events_queued"] == 1
    assert [(error["input_array"], error["index"]) for error in answer["errors"]] == [("events", 1)]


def test_a_wrong_key_is_braze_s_unauthorized(api_url):
    message, errors = refusal(lambda: client(api_url, key="k_wrong").user_track(events=[EVENT]))
    assert (message, errors) == ("Unauthorized", [])


def test_the_key_in_the_body_instead_of_the_header_is_unauthorized(api_url):
    braze = client(api_url, use_auth_header=False)  # Braze's legacy api_key body field, no header
    message, errors = refusal(lambda: braze.user_track(events=[EVENT]))
    assert (message, errors) == ("Unauthorized", [])


def test_an_empty_request_is_a_bad_request(api_url):
    message, errors = refusal(lambda: client(api_url).user_track(attributes=[]))  # sends three empty arrays
    assert (message, errors) == ("Bad Request", [])
    message, errors = refusal(lambda: identify(client(api_url), {"aliases_to_identify": []}))
    assert (message, errors) == ("Bad Request", [])


def test_only_invalid_objects_is_a_bad_request_with_the_errors(api_url):
    message, errors = refusal(lambda: client(api_url).user_track(events=[{"name": "no_user"}]))
    assert message == "Bad Request"
    assert [(error["input_array"], error["index"]) for error in errors] == [("events", 0)]


def test_an_oversized_body_is_refused_with_a_message(api_url):
    events = [{**EVENT, "properties": {"text": "x" * 200}} for _ in range(30)]
    message, errors = refusal(lambda: client(api_url).user_track(events=events))
    assert (message, errors) == ("Request Entity Too Large", [])


def test_bad_json_is_a_bad_request(api_url):
    braze = client(api_url)
    post = braze.session.post

    def post_bad_json(url: str, json: Any = None, **options: Any) -> Any:  # the client always sends valid JSON
        return post(url, data=b'{"events": [', **options)

    braze.session.post = post_bad_json  # type: ignore[method-assign]
    message, errors = refusal(lambda: braze.user_track(events=[EVENT]))
    assert (message, errors) == ("Bad Request", [])

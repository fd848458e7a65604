"""The Braze sandbox over real HTTP: Braze's documented behaviour, scripting, faults and exports."""

import contextlib
import gzip
import io
import json
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from local.braze_sandbox import (
    DEFAULT_GCG_SEGMENT_ID,
    BrazeSandbox,
    SandboxConfig,
    ScriptedResponse,
    main,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-02T10:00:00+00:00"
T2 = "2024-05-03T10:00:00.000Z"
GROUP_ID = "0f9b2f84-2b1e-4a8e-9a52-5f3f8e0c1a77"


class Braze:
    """A tiny authenticated client for the sandbox."""

    def __init__(self, sandbox: BrazeSandbox):
        self.sandbox = sandbox
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {sandbox.config.api_key}"

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.post(self.sandbox.url + path, json=body, **kwargs)

    def track(self, **arrays: Any) -> requests.Response:
        return self.post("/users/track", arrays)

    def identify(self, **arrays: Any) -> requests.Response:
        return self.post("/users/identify", arrays)

    def export(self, **body: Any) -> requests.Response:
        return self.post("/users/export/global_control_group", body)


@pytest.fixture
def sandbox() -> Iterator[BrazeSandbox]:
    with BrazeSandbox(SandboxConfig(seed=7, export_delay_seconds=0.0)) as running:
        yield running


@pytest.fixture
def braze(sandbox: BrazeSandbox) -> Iterator[Braze]:
    client = Braze(sandbox)
    yield client
    client.session.close()


@pytest.fixture
def callback_receiver() -> Iterator[tuple[str, "queue.Queue[dict[str, Any]]"]]:
    """A local HTTP server standing in for the forwarder's export-callback route."""
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.put({"path": self.path, "body": json.loads(self.rfile.read(length))})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/exports/job-1/callback?token=t0k", received
    server.shutdown()
    server.server_close()


def attrs(external_id: str, **values: Any) -> dict[str, Any]:
    return {"external_id": external_id, **values}


def event(external_id: str, name: str = "played", when: str = T0, **extra: Any) -> dict[str, Any]:
    return {"external_id": external_id, "name": name, "time": when, **extra}


def purchase(external_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "product_id": "plan",
        "currency": "USD",
        "price": 9.5,
        "time": T0,
        **overrides,
    }


def alias(name: str, label: str = "device") -> dict[str, str]:
    return {"alias_name": name, "alias_label": label}


# --------------------------------------------------------------------------------------------------
# Authentication, routing, fatal errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", 'Bearer "sandbox-rest-key"', "Basic sandbox-rest-key", "sandbox-rest-key"],
)
def test_a_bad_or_missing_key_is_a_401_that_never_echoes_the_key(sandbox: BrazeSandbox, authorization: Any) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.post(
        sandbox.url + "/users/track", json={"attributes": [attrs("u1")]}, headers=headers, timeout=5
    )
    assert response.status_code == 401
    assert response.json()["message"].startswith("Invalid API key")
    assert "wrong-key" not in response.text and "sandbox-rest-key" not in response.text
    assert "x-ratelimit-limit" in response.headers  # §4: every non-429 answer carries the headers
    assert sandbox.profiles() == {}


def test_the_configured_key_is_accepted(braze: Braze) -> None:
    braze.sandbox.config.api_key = "rotated"
    braze.session.headers["Authorization"] = "Bearer rotated"
    assert braze.track(attributes=[attrs("u1")]).status_code == 201


def test_unknown_routes_and_methods_answer_json(sandbox: BrazeSandbox, braze: Braze) -> None:
    missing = braze.post("/users/nope", {})
    wrong_method = braze.session.get(sandbox.url + "/users/track", timeout=5)
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    assert wrong_method.status_code == 405 and "message" in wrong_method.json()


@pytest.mark.parametrize(
    "raw_body",
    [
        b"[]",
        b'"x"',
        b"{}",
        b'{"attributes": []}',
        b'{"attributes": "x"}',
        b'{"events": [1]}',
        b"{not json",
        b'{"attributes": [{"external_id": "u", "n": NaN}]}',
        b"\xff\xfe",
        b"",
    ],
)
def test_malformed_or_empty_track_bodies_are_a_json_400(braze: Braze, raw_body: bytes) -> None:
    response = braze.session.post(
        braze.sandbox.url + "/users/track",
        data=raw_body,
        timeout=5,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert isinstance(response.json()["message"], str)
    assert braze.sandbox.profiles() == {}


def test_a_chunked_body_is_read(braze: Braze) -> None:
    parts = [b'{"events": [', json.dumps(event("u1")).encode(), b"]}"]
    response = braze.session.post(braze.sandbox.url + "/users/track", data=iter(parts), timeout=5,
                                  headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.json() == {"message": "success", "events_processed": 1}
    assert braze.sandbox.requests[-1].headers["transfer-encoding"] == "chunked"


def test_a_payload_over_4_mb_is_a_413_and_nothing_is_processed(braze: Braze) -> None:
    big = attrs("u1", blob="x" * (4 * 1024 * 1024))
    response = braze.track(attributes=[big])
    assert response.status_code == 413
    assert "Payload Too Large" in response.json()["message"]
    assert braze.sandbox.profile("u1") is None
    assert braze.track(attributes=[attrs("u1")]).status_code == 201  # the connection is still usable


def test_a_garbled_request_line_or_length_still_gets_json(sandbox: BrazeSandbox) -> None:
    host, port = sandbox.url.removeprefix("http://").split(":")
    for raw in (b"NONSENSE\r\n\r\n", b"POST /users/track HTTP/1.1\r\nContent-Length: abc\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(raw)
            answer = b"".join(iter(lambda: connection.recv(65536), b"")).decode()  # until the server closes
        head, _, body = answer.partition("\r\n\r\n")
        assert head.split()[1] == "400"
        assert "message" in json.loads(body)


# --------------------------------------------------------------------------------------------------
# Batch limits (§2.8, §5)
# --------------------------------------------------------------------------------------------------


def _batch(attributes: int, events: int, purchases: int) -> dict[str, list[dict[str, Any]]]:
    return {
        "attributes": [attrs(f"a{i}", n=i) for i in range(attributes)],
        "events": [event(f"e{i}") for i in range(events)],
        "purchases": [purchase(f"p{i}") for i in range(purchases)],
    }


@pytest.mark.parametrize(
    ("mode", "sizes", "status"),
    [
        ("total", (25, 25, 25), 201),
        ("total", (25, 25, 26), 400),
        ("total", (76, 0, 0), 400),
        ("per_array", (75, 75, 75), 201),
        ("per_array", (75, 76, 0), 400),
    ],
)
def test_track_batch_limit_per_mode(braze: Braze, mode: str, sizes: tuple[int, int, int], status: int) -> None:
    braze.sandbox.config.track_batch_mode = mode
    response = braze.post("/users/track", _batch(*sizes))
    assert response.status_code == status
    if status == 400:
        body = response.json()
        assert body["message"].startswith("Max Input Length Exceeded")
        assert body["errors"][0]["type"] == "MAX_INPUT_LENGTH_EXCEEDED"
        assert braze.sandbox.profiles() == {}  # fatal: nothing processed
    else:
        assert response.json() == {
            "message": "success",
            "attributes_processed": sizes[0],
            "events_processed": sizes[1],
            "purchases_processed": sizes[2],
        }


def test_a_custom_track_limit_is_honoured(braze: Braze) -> None:
    braze.sandbox.config.track_batch_limit = 50  # the MAU-contract figure (§2.8)
    assert braze.post("/users/track", _batch(20, 20, 10)).status_code == 201
    assert braze.post("/users/track", _batch(20, 20, 11)).status_code == 400


def test_counts_appear_only_for_arrays_that_were_sent(braze: Braze) -> None:
    assert braze.track(events=[event("u1")]).json() == {"message": "success", "events_processed": 1}


def test_identify_takes_at_most_50_entries(braze: Braze) -> None:
    entries = [{"external_id": f"x{i}", "user_alias": alias(f"d{i}")} for i in range(51)]
    too_many = braze.identify(aliases_to_identify=entries)
    assert too_many.status_code == 400
    assert "max number of external_ids and aliases" in too_many.json()["message"]
    assert braze.identify(aliases_to_identify=entries[:50]).json() == {
        "aliases_processed": 50,
        "message": "success",
    }
    assert braze.identify().status_code == 400


# --------------------------------------------------------------------------------------------------
# Per-object validation: non-fatal errors with indices (§2.2, §2.10)
# --------------------------------------------------------------------------------------------------


def test_invalid_objects_are_listed_with_their_index_and_the_rest_is_applied(braze: Braze) -> None:
    # Given a blocklisted id and one valid object per array among many invalid ones
    braze.sandbox.config.blocked_external_ids = {"dummy-user"}
    body = {
        "attributes": [
            attrs("ok", first_name="Jon"),
            attrs("é" * 494),  # 494 characters but 988 UTF-8 bytes
            {"external_id": "b", "user_alias": alias("n")},
            {"first_name": "nobody"},
            attrs("c", email="not-an-email"),
            attrs("d", email_subscribe="yes"),
            attrs("e", push_subscribe=["opted_in"]),
            attrs("dummy-user"),
            attrs(
                "f",
                subscription_groups=[{"subscription_group_id": "nope", "subscription_state": "subscribed"}],
            ),
            attrs("g", current_location={"latitude": 1}),
        ],
        "events": [
            {"external_id": "ok", "time": T0},
            event("ok", name="$reserved"),
            {"external_id": "ok", "name": "x"},
            event("ok", properties={"time": 1}),
            event("ok", name="opened"),
        ],
        "purchases": [
            purchase("ok", currency="US"),
            purchase("ok", quantity=101),
            purchase("ok", price="1"),
            purchase("ok", quantity=3),
            {k: v for k, v in purchase("ok").items() if k != "product_id"},
        ],
    }
    # When it is tracked
    response = braze.post("/users/track", body)
    # Then the answer is a 201 naming each bad object, and the good ones are applied
    assert response.status_code == 201
    answer = response.json()
    assert [(e["input_array"], e["index"], e["type"]) for e in answer["errors"]] == [
        ("attributes", 1, "EXTERNAL_USER_ID_TOO_LARGE"),
        ("attributes", 2, "MULTIPLE_PRIMARY_IDENTIFIERS"),
        ("attributes", 3, "NO_USER_IDENTIFIER"),
        ("attributes", 4, "EMAIL_BAD_FORMAT"),
        ("attributes", 5, "BAD_EMAIL_SUBSCRIPTION_STATE"),
        ("attributes", 6, "BAD_PUSH_SUBSCRIPTION_STATE"),
        ("attributes", 7, "BLACKLISTED_EXTERNAL_USER_ID"),
        ("attributes", 8, "BAD_SUBSCRIPTION_GROUP_ID"),
        ("attributes", 9, "BAD_LOCATION_UPDATE"),
        ("events", 0, "BAD_EVENT_NAME"),
        ("events", 1, "BAD_EVENT_NAME"),
        ("events", 2, "BAD_EVENT_TIME"),
        ("events", 3, "BAD_EVENT_PROPERTIES"),
        ("purchases", 0, "BAD_CURRENCY"),
        ("purchases", 1, "BAD_QUANTITY"),
        ("purchases", 2, "BAD_PRICE"),
        ("purchases", 4, "BAD_PRODUCT_ID"),
    ]
    assert (answer["attributes_processed"], answer["events_processed"], answer["purchases_processed"]) == (
        1,
        1,
        1,
    )
    assert set(braze.sandbox.profiles()) == {"ok"}
    profile = braze.sandbox.profile("ok")
    assert profile is not None
    assert profile["custom_events"]["opened"]["count"] == 1
    assert profile["purchases"]["plan"]["count"] == 3


def test_an_external_id_of_exactly_987_bytes_is_accepted(braze: Braze) -> None:
    external_id = "é" * 493 + "a"  # 987 bytes
    assert "errors" not in braze.track(attributes=[attrs(external_id)]).json()
    assert braze.sandbox.profile(external_id) is not None


def test_a_request_whose_objects_are_all_invalid_is_still_a_201(braze: Braze) -> None:
    response = braze.track(attributes=[{"first_name": "x"}], events=[{"external_id": "u"}])
    assert response.status_code == 201
    answer = response.json()
    assert (answer["attributes_processed"], answer["events_processed"]) == (0, 0)
    assert len(answer["errors"]) == 2


# --------------------------------------------------------------------------------------------------
# Profiles (§2.3–§2.7, §10)
# --------------------------------------------------------------------------------------------------


def _profile(braze: Braze, external_id: str) -> dict[str, Any]:
    profile = braze.sandbox.profile(external_id)
    assert profile is not None, f"no profile {external_id}"
    return profile


def test_attribute_operations_are_applied_like_braze(braze: Braze) -> None:
    pets = [{"id": 1, "breed": "beagle"}, {"id": 2, "breed": "pug", "age": 3}]
    braze.track(
        attributes=[
            attrs(
                "u1",
                first_name="Jon",
                visits={"inc": 2},
                tags=["a", "b", "a"],
                nickname="j",
                pet={"name": "rex", "age": 3},
                pets=pets,
            )
        ]
    )
    braze.track(
        attributes=[
            attrs(
                "u1",
                visits={"inc": -1},
                tags={"add": ["c", "a"]},
                nickname=None,
                pet={"age": 4},
                _merge_objects=True,
            )
        ]
    )
    after_merge = _profile(braze, "u1")["attributes"]
    assert after_merge["visits"] == 1
    assert after_merge["tags"] == ["b", "c", "a"]  # unique values; re-adding moves to the end
    assert "nickname" not in after_merge  # null unsets
    assert after_merge["pet"] == {"name": "rex", "age": 4}  # _merge_objects: deep merge

    braze.track(attributes=[attrs("u1", tags={"remove": ["b"]}, pet={"color": "brown"})])
    braze.track(
        attributes=[
            attrs(
                "u1",
                _merge_objects=True,
                pets={
                    "$update": [{"$identifier_key": "id", "$identifier_value": 2, "$new_object": {"breed": "corgi"}}]
                },
            )
        ]
    )
    braze.track(attributes=[attrs("u1", pets={"$remove": [{"$identifier_key": "id", "$identifier_value": 1}]})])
    braze.track(attributes=[attrs("u1", pets={"$add": [{"id": 5, "breed": "lab"}]})])
    final = _profile(braze, "u1")["attributes"]
    assert final["tags"] == ["c", "a"]
    assert final["pet"] == {"color": "brown"}  # without _merge_objects the object is replaced
    assert final["pets"] == [{"id": 2, "breed": "corgi", "age": 3}, {"id": 5, "breed": "lab"}]
    assert final["first_name"] == "Jon"


def test_invalid_attribute_operations_are_dropped_not_crashed_on(braze: Braze) -> None:
    braze.track(attributes=[attrs("u1", visits=1, label="x", pet={"a": 1})])
    response = braze.track(
        attributes=[
            attrs(
                "u1",
                visits={"inc": "2"},
                label={"inc": 1},
                tags={"add": 5},
                pets={"$add": [1]},
                pet={"a": None},
            )
        ]
    )
    assert response.status_code == 201
    assert _profile(braze, "u1")["attributes"] == {"visits": 1, "label": "x", "pet": {"a": 1}}


def test_events_and_purchases_are_tallied(braze: Braze) -> None:
    future = "2999-01-01T00:00:00Z"
    braze.track(
        events=[
            event("u1", when=T1),
            event("u1", when=T2),
            event("u1", when=T0),
            event("u1", name="opened", when=future),
        ],
        purchases=[purchase("u1", quantity=3, price=2.0), purchase("u1", price=5, time=T2)],
    )
    profile = _profile(braze, "u1")
    assert profile["custom_events"]["played"] == {
        "count": 3,
        "first": "2024-05-01T10:00:00.000Z",
        "last": "2024-05-03T10:00:00.000Z",
    }
    opened_at = datetime.fromisoformat(profile["custom_events"]["opened"]["last"].replace("Z", "+00:00"))
    assert opened_at <= datetime.now(UTC)  # §2.6: future times become "now"
    assert profile["purchases"]["plan"]["count"] == 4  # quantity 3 counts as three purchases
    assert profile["purchases"]["plan"]["revenue"] == 11.0
    assert profile["total_revenue"] == 11.0


def test_data_points_follow_section_10(braze: Braze) -> None:
    groups = [{"subscription_group_id": GROUP_ID, "subscription_state": "subscribed"}]
    braze.track(
        attributes=[
            attrs(
                "u1",
                first_name="A",
                email_subscribe="opted_in",
                subscription_groups=groups,
                tags={"add": ["x", "y"]},
                pet={"a": 1, "b": {"c": 2}},
            )
        ],
        events=[event("u1")],
        purchases=[purchase("u1", quantity=2)],
    )
    # first_name 1 + subscriptions 0 + add 2 values + nested keys a, b, c 3 + event 1 + purchase 1
    assert _profile(braze, "u1")["data_points"] == 8
    assert braze.sandbox.stats()["data_points"] == 8
    assert _profile(braze, "u1")["subscription_groups"] == {GROUP_ID: "subscribed"}


def test_update_existing_only_and_alias_creation(braze: Braze) -> None:
    braze.track(
        attributes=[
            attrs("ghost", _update_existing_only=True, x=1),
            {"user_alias": alias("implicit"), "x": 1},
            {"user_alias": alias("explicit"), "_update_existing_only": False, "x": 1},
        ],
        events=[
            {"user_alias": alias("explicit"), "name": "seen", "time": T0},
            {"user_alias": alias("unknown"), "name": "seen", "time": T0},
            event("fresh"),
        ],
    )
    profiles = braze.sandbox.profiles()
    assert set(profiles) == {"alias:explicit:device", "fresh"}  # unknown ids create unless update-only
    assert profiles["alias:explicit:device"]["custom_events"]["seen"]["count"] == 1
    assert braze.sandbox.alias_profile("implicit", "device") is None


def test_email_only_profiles_are_created_and_found_by_email(braze: Braze) -> None:
    braze.track(attributes=[{"email": "ann@example.com", "first_name": "Ann"}])
    braze.track(events=[{"email": "ann@example.com", "name": "opened", "time": T0}])
    profiles = braze.sandbox.profiles()
    assert list(profiles) == ["email:ann@example.com"]
    assert profiles["email:ann@example.com"]["custom_events"]["opened"]["count"] == 1


def test_concurrent_increments_are_not_lost(sandbox: BrazeSandbox) -> None:
    def hammer() -> None:
        client = Braze(sandbox)
        for _ in range(25):
            assert client.track(attributes=[attrs("hot", visits={"inc": 1})]).status_code == 201
        client.session.close()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    profile = sandbox.profile("hot")
    assert profile is not None and profile["attributes"]["visits"] == 200


# --------------------------------------------------------------------------------------------------
# /users/identify (§5)
# --------------------------------------------------------------------------------------------------


def test_identify_merges_the_alias_profile_into_the_known_user(braze: Braze) -> None:
    # Given an alias-only profile and an identified one, both with "opened" events
    braze.track(
        attributes=[
            {
                "user_alias": alias("dev-1"),
                "_update_existing_only": False,
                "first_name": "Anon",
                "city": "Oslo",
            },
            attrs("u9", first_name="Known"),
        ],
        events=[
            {"user_alias": alias("dev-1"), "name": "opened", "time": T0},
            {"user_alias": alias("dev-1"), "name": "opened", "time": T1},
            event("u9", name="opened", when=T2),
        ],
    )
    # When the alias is identified as u9
    response = braze.identify(aliases_to_identify=[{"external_id": "u9", "user_alias": alias("dev-1")}])
    # Then missing fields are copied, counts summed, the alias moves over and the orphan is gone
    assert (response.status_code, response.json()) == (201, {"aliases_processed": 1, "message": "success"})
    profile = _profile(braze, "u9")
    assert profile["attributes"] == {"first_name": "Known", "city": "Oslo"}
    assert profile["custom_events"]["opened"] == {
        "count": 3,
        "first": "2024-05-01T10:00:00.000Z",
        "last": "2024-05-03T10:00:00.000Z",
    }
    assert profile["user_aliases"] == [alias("dev-1")]
    assert set(braze.sandbox.profiles()) == {"u9"}
    assert braze.sandbox.alias_profile("dev-1", "device") == profile


def test_identify_attaches_the_external_id_when_nobody_has_it(braze: Braze) -> None:
    braze.track(attributes=[{"user_alias": alias("dev-2"), "_update_existing_only": False, "plan": "free"}])
    braze.identify(aliases_to_identify=[{"external_id": "new-user", "user_alias": alias("dev-2")}])
    assert _profile(braze, "new-user")["attributes"] == {"plan": "free"}


def test_identify_with_an_unknown_or_miscased_alias_silently_does_nothing(braze: Braze) -> None:
    braze.track(attributes=[{"user_alias": alias("Dev-3"), "_update_existing_only": False, "x": 1}])
    response = braze.identify(aliases_to_identify=[{"external_id": "u", "user_alias": alias("dev-3")}])
    assert response.status_code == 201
    assert set(braze.sandbox.profiles()) == {"alias:Dev-3:device"}


def test_identify_by_email_uses_prioritization(braze: Braze) -> None:
    braze.track(attributes=[{"email": "e@example.com", "first_name": "E"}])
    entry = {
        "external_id": "e1",
        "email": "e@example.com",
        "prioritization": ["unidentified", "most_recently_updated"],
    }
    bad = {"external_id": "e2", "email": "e@example.com", "prioritization": ["sometimes"]}
    answer = braze.identify(emails_to_identify=[entry, bad]).json()
    assert answer["aliases_processed"] == 1
    assert answer["errors"] == [
        {
            "type": "BAD_PRIORITIZATION",
            "input_array": "emails_to_identify",
            "index": 1,
            "message": answer["errors"][0]["message"],
        }
    ]
    assert _profile(braze, "e1")["attributes"]["first_name"] == "E"


# --------------------------------------------------------------------------------------------------
# Rate limiting (§2.9, §4)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["retry_after", "reset_epoch", "reset_seconds", "none"])
def test_the_window_runs_out_into_a_429_with_the_configured_headers(braze: Braze, style: str) -> None:
    config = braze.sandbox.config
    config.rate_limit_requests, config.rate_limit_window_seconds, config.rate_limit_header_style = (
        2,
        60,
        style,
    )
    first, second, third = (braze.track(events=[event("u1")]) for _ in range(3))

    assert (first.status_code, second.status_code, third.status_code) == (201, 201, 429)
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("2", "1")
    assert second.headers["x-ratelimit-remaining"] == "0"
    reset = int(first.headers["X-RateLimit-Reset"])
    if style == "reset_seconds":
        assert 1 <= reset <= 60
    else:
        assert time.time() < reset <= time.time() + 61  # epoch seconds
    assert third.json() == {"message": "Rate limit exceeded"}
    limited = {name.lower(): value for name, value in third.headers.items() if name.lower().startswith("x-ratelimit")}
    if style == "retry_after":  # MAU variant: only the retry header, whole seconds
        assert list(limited) == ["x-ratelimit-retry-after"] and 1 <= int(limited["x-ratelimit-retry-after"]) <= 60
    elif style == "none":
        assert limited == {}
    else:
        assert limited["x-ratelimit-remaining"] == "0"
        wait = int(limited["x-ratelimit-reset"]) - (time.time() if style == "reset_epoch" else 0)
        assert 0 < wait <= 61
    assert _profile(braze, "u1")["custom_events"]["played"]["count"] == 2  # the 429 processed nothing
    assert braze.sandbox.stats()["rate_limited"] == 1


def test_the_window_opens_again_after_it_resets(braze: Braze) -> None:
    braze.sandbox.config.rate_limit_requests, braze.sandbox.config.rate_limit_window_seconds = 1, 0.2
    assert braze.track(events=[event("u1")]).status_code == 201
    assert braze.track(events=[event("u1")]).status_code == 429
    time.sleep(0.25)
    assert braze.track(events=[event("u1")]).status_code == 201


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("retry_after", {"x-ratelimit-retry-after": "1"}),
        ("reset_seconds", {"x-ratelimit-reset": "1"}),
        ("none", {}),
    ],
)
def test_injected_429s_announce_a_one_second_wait(braze: Braze, style: str, expected: dict[str, str]) -> None:
    braze.sandbox.config.rate_limited_rate, braze.sandbox.config.rate_limit_header_style = 1.0, style
    response = braze.track(events=[event("u1")])
    assert response.status_code == 429
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit")}
    assert {k: headers[k] for k in expected} == expected and (expected or headers == {})
    assert braze.sandbox.profile("u1") is None
    assert braze.sandbox.requests[-1].fault == "rate_limited"


def test_rotate_gives_each_429_the_next_header_style(braze: Braze) -> None:
    braze.sandbox.config.rate_limited_rate, braze.sandbox.config.rate_limit_header_style = 1.0, "rotate"

    answers = [braze.track(events=[event("u1")]) for _ in range(5)]

    def limited(response: requests.Response) -> set[str]:
        return {name.lower() for name in response.headers if name.lower().startswith("x-ratelimit")}

    assert [response.status_code for response in answers] == [429] * 5
    assert limited(answers[0]) == {"x-ratelimit-retry-after"}
    assert (
        limited(answers[1])
        == limited(answers[2])
        == {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
    )
    assert int(answers[1].headers["X-RateLimit-Reset"]) > time.time()  # epoch seconds
    assert int(answers[2].headers["X-RateLimit-Reset"]) == 1  # seconds remaining
    assert limited(answers[3]) == set()
    assert limited(answers[4]) == {"x-ratelimit-retry-after"}  # and round again
    styles = [request.rate_limit_style for request in braze.sandbox.requests]
    assert styles == ["retry_after", "reset_epoch", "reset_seconds", "none", "retry_after"]
    assert braze.sandbox.stats()["rate_limit_styles"] == {
        "retry_after": 2,
        "reset_epoch": 1,
        "reset_seconds": 1,
        "none": 1,
    }


def test_rotate_applies_to_the_windows_own_429s_too(braze: Braze) -> None:
    config = braze.sandbox.config
    config.rate_limit_requests, config.rate_limit_window_seconds, config.rate_limit_header_style = 1, 60, "rotate"
    assert braze.track(events=[event("u1")]).status_code == 201
    refused = braze.track(events=[event("u1")])
    assert (refused.status_code, refused.headers["X-Ratelimit-Retry-After"]) == (429, "60")
    assert braze.sandbox.requests[-1].rate_limit_style == "retry_after"


# --------------------------------------------------------------------------------------------------
# Processed or not: what reached Braze, whatever reached the client
# --------------------------------------------------------------------------------------------------


def test_a_processed_call_is_marked_with_the_objects_it_refused(braze: Braze) -> None:
    braze.sandbox.config.blocked_external_ids = {"blocked"}
    braze.track(events=[event("u1"), event("blocked")])

    [recorded] = braze.sandbox.requests
    assert recorded.processed and recorded.status == 201
    assert [(error["input_array"], error["index"]) for error in recorded.errors] == [("events", 1)]


@pytest.mark.parametrize("fault", ["error_rate", "rate_limited_rate", "drop_rate"])
def test_a_call_answered_before_processing_is_not_processed(braze: Braze, fault: str) -> None:
    setattr(braze.sandbox.config, fault, 1.0)
    with contextlib.suppress(requests.ConnectionError):
        braze.track(events=[event("u1")])
    assert not braze.sandbox.requests[-1].processed


def test_a_drop_after_processing_is_processed_without_an_answer(braze: Braze) -> None:
    braze.sandbox.config.drop_after_processing_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        braze.track(events=[event("u1")])
    recorded = braze.sandbox.requests[-1]
    assert (recorded.processed, recorded.status, recorded.fault) == (True, None, "drop_after_processing")


def test_a_timeout_the_client_gave_up_on_stays_a_processed_timeout(braze: Braze) -> None:
    braze.sandbox.config.timeout_rate, braze.sandbox.config.timeout_sleep_seconds = 1.0, 0.3
    with pytest.raises(requests.ReadTimeout):
        braze.post("/users/track", {"events": [event("u1")]}, timeout=0.1)
    recorded = braze.sandbox.requests[-1]
    deadline = time.monotonic() + 3
    while not braze.sandbox.stats()["statuses"].get("/users/track") and time.monotonic() < deadline:
        time.sleep(0.02)  # until the stalled answer is settled
    # The stall is why the client left: the record keeps that name, not "client_gone".
    assert (recorded.processed, recorded.status, recorded.fault) == (True, None, "timeout")


def test_a_scripted_call_that_processes_is_marked_with_its_extra_errors(braze: Braze) -> None:
    def reject_first(body: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "EXTERNAL_USER_ID_TOO_LARGE", "input_array": "events", "index": 0}]

    braze.sandbox.script(ScriptedResponse(201, process=True, errors_for=reject_first), ScriptedResponse(201))
    braze.track(events=[event("u1"), event("u2")])
    braze.track(events=[event("u3")])

    processed, unprocessed = braze.sandbox.requests
    assert processed.processed and [error["index"] for error in processed.errors] == [0]
    assert not unprocessed.processed  # a scripted answer without processing


# --------------------------------------------------------------------------------------------------
# Scripted answers
# --------------------------------------------------------------------------------------------------


def test_scripts_answer_fifo_across_endpoints_then_normal_behaviour_resumes(braze: Braze) -> None:
    braze.sandbox.script(
        ScriptedResponse(500),
        ScriptedResponse(429, headers={"X-Ratelimit-Retry-After": "7"}),
        ScriptedResponse(201, body={"message": "success", "custom": True}),
    )
    first = braze.track(events=[event("u1")])
    second = braze.identify(aliases_to_identify=[{"external_id": "u1", "user_alias": alias("d")}])
    third = braze.track(events=[event("u1")])
    fourth = braze.track(events=[event("u1")])

    assert (first.status_code, first.json()) == (500, {"message": "Internal Server Error"})
    assert (second.status_code, second.headers["X-Ratelimit-Retry-After"]) == (429, "7")
    assert "x-ratelimit-limit" not in second.headers  # retry_after style: no other rate headers
    assert third.json() == {"message": "success", "custom": True}
    assert fourth.json() == {"message": "success", "events_processed": 1}
    assert _profile(braze, "u1")["custom_events"]["played"]["count"] == 1  # scripts don't process
    assert [r.fault for r in braze.sandbox.requests] == ["scripted", "scripted", "scripted", None]


def test_a_script_for_a_path_waits_for_that_path(braze: Braze) -> None:
    braze.sandbox.script(ScriptedResponse(503, path="/users/identify"))
    assert braze.track(events=[event("u1")]).status_code == 201
    assert braze.identify(aliases_to_identify=[{"external_id": "u1", "user_alias": alias("d")}]).status_code == 503


def test_a_script_answers_even_a_call_without_a_key(sandbox: BrazeSandbox) -> None:
    sandbox.script(ScriptedResponse(503))
    assert requests.post(sandbox.url + "/users/track", json={}, timeout=5).status_code == 503


def test_a_scripted_drop_closes_the_connection_without_processing(braze: Braze) -> None:
    braze.sandbox.script(ScriptedResponse(drop_connection=True))
    with pytest.raises(requests.ConnectionError):
        braze.track(events=[event("u1")])
    assert braze.sandbox.profile("u1") is None
    assert braze.sandbox.requests[-1].status is None
    assert braze.track(events=[event("u1")]).status_code == 201  # the client reconnects


def test_a_scripted_process_then_drop_applies_the_request(braze: Braze) -> None:
    braze.sandbox.script(ScriptedResponse(process=True, drop_connection=True))
    with pytest.raises(requests.ConnectionError):
        braze.track(events=[event("u1")])
    assert _profile(braze, "u1")["custom_events"]["played"]["count"] == 1


def test_a_scripted_201_with_processing_answers_the_real_body(braze: Braze) -> None:
    braze.sandbox.script(ScriptedResponse(201, process=True, headers={"X-Extra": "1"}))
    response = braze.track(events=[event("u1")])
    assert response.json() == {"message": "success", "events_processed": 1}
    assert response.headers["X-Extra"] == "1" and "X-RateLimit-Remaining" in response.headers


def test_scripted_errors_for_reports_errors_and_skips_those_objects(braze: Braze) -> None:
    def reject_first_event(body: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "EXTERNAL_USER_ID_TOO_LARGE", "input_array": "events", "index": 0}]

    braze.sandbox.script(ScriptedResponse(201, process=True, errors_for=reject_first_event))
    answer = braze.track(events=[event("u1", name="rejected"), event("u1", name="kept")]).json()
    assert answer["errors"] == [{"type": "EXTERNAL_USER_ID_TOO_LARGE", "input_array": "events", "index": 0}]
    assert list(_profile(braze, "u1")["custom_events"]) == ["kept"]


def test_an_answer_the_client_gave_up_on_is_recorded_as_unanswered(braze: Braze) -> None:
    braze.sandbox.script(ScriptedResponse(201, delay_seconds=0.3))
    with pytest.raises(requests.ReadTimeout):
        braze.post("/users/track", {"events": [event("u1")]}, timeout=0.1)
    recorded = braze.sandbox.requests[-1]
    deadline = time.monotonic() + 3
    while recorded.fault != "client_gone" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (recorded.status, recorded.fault) == (None, "client_gone")


def test_scripted_delay_and_verbatim_body(braze: Braze) -> None:
    braze.sandbox.script(ScriptedResponse(502, body="<html>Bad Gateway</html>", delay_seconds=0.15))
    started = time.monotonic()
    response = braze.track(events=[event("u1")])
    assert time.monotonic() - started >= 0.15
    assert (response.status_code, response.text) == (502, "<html>Bad Gateway</html>")


# --------------------------------------------------------------------------------------------------
# Random faults
# --------------------------------------------------------------------------------------------------


def _statuses_with_seed(seed: int) -> list[int]:
    with BrazeSandbox(SandboxConfig(seed=seed, error_rate=0.5)) as running:
        client = Braze(running)
        statuses = [client.track(events=[event("u1")]).status_code for _ in range(20)]
        client.session.close()
        profile = running.profile("u1")
        processed = profile["custom_events"]["played"]["count"] if profile else 0
    assert processed == statuses.count(201)  # a 500 processed nothing
    return statuses


def test_seeded_faults_are_reproducible() -> None:
    first, second = _statuses_with_seed(42), _statuses_with_seed(42)
    assert first == second
    assert set(first) == {201, 500}


def test_a_drop_closes_the_connection_before_processing(braze: Braze) -> None:
    braze.sandbox.config.drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        braze.track(events=[event("u1")])
    assert braze.sandbox.profile("u1") is None
    assert (braze.sandbox.requests[-1].status, braze.sandbox.requests[-1].fault) == (None, "drop")


def test_a_drop_after_processing_applies_but_never_answers(braze: Braze) -> None:
    braze.sandbox.config.drop_after_processing_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        braze.track(events=[event("u1")])
    assert _profile(braze, "u1")["custom_events"]["played"]["count"] == 1
    assert braze.sandbox.stats()["faults_injected"] == {"drop_after_processing": 1}


def test_an_injected_500_processes_nothing(braze: Braze) -> None:
    braze.sandbox.config.error_rate = 1.0
    response = braze.track(events=[event("u1")])
    assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})
    assert "X-RateLimit-Remaining" in response.headers
    assert braze.sandbox.profile("u1") is None


def test_a_timeout_fault_stalls_past_the_client_timeout(braze: Braze) -> None:
    braze.sandbox.config.timeout_rate, braze.sandbox.config.timeout_sleep_seconds = 1.0, 5.0
    with pytest.raises(requests.ReadTimeout):
        braze.post("/users/track", {"events": [event("u1")]}, timeout=0.2)
    # Processed before the stall, as an overloaded API that did the work
    assert _profile(braze, "u1")["custom_events"]["played"]["count"] == 1
    assert braze.sandbox.requests[-1].fault == "timeout"
    # stop() (fixture teardown) wakes the stalled handler instead of waiting 5 s


def test_latency_is_added_before_answering(braze: Braze) -> None:
    braze.sandbox.config.latency_seconds = 0.15
    started = time.monotonic()
    assert braze.track(events=[event("u1")]).status_code == 201
    assert time.monotonic() - started >= 0.15


# --------------------------------------------------------------------------------------------------
# Recording and the /sandbox routes
# --------------------------------------------------------------------------------------------------


def test_requests_are_recorded(braze: Braze) -> None:
    braze.session.post(
        braze.sandbox.url + "/users/track?trace=1",
        json={"events": [event("u1")]},
        headers={"X-Braze-Bulk": "true"},
        timeout=5,
    )
    requests.get(braze.sandbox.url + "/sandbox/stats", timeout=5)  # control routes are not recorded
    [recorded] = braze.sandbox.requests
    assert (recorded.method, recorded.path, recorded.query, recorded.status) == (
        "POST",
        "/users/track",
        {"trace": "1"},
        201,
    )
    assert recorded.headers["x-braze-bulk"] == "true"
    assert recorded.headers["authorization"] == "Bearer sandbox-rest-key"
    assert recorded.json == {"events": [event("u1")]}
    assert abs(recorded.time - time.time()) < 5


def test_sandbox_routes_show_profiles_and_stats_and_reset_without_auth(braze: Braze) -> None:
    url = braze.sandbox.url
    braze.track(attributes=[attrs("u/1", a=1)], events=[event("u/1")])
    braze.track(events=[event("u2")])
    assert requests.get(f"{url}/sandbox/users/u%2F1", timeout=5).json()["attributes"] == {"a": 1}
    assert requests.get(f"{url}/sandbox/users/nobody", timeout=5).status_code == 404
    assert set(requests.get(f"{url}/sandbox/users", timeout=5).json()) == {"u/1", "u2"}
    stats = requests.get(f"{url}/sandbox/stats", timeout=5).json()
    assert stats["calls"] == {"/users/track": 2}
    assert stats["statuses"] == {"/users/track": {"201": 2}}
    assert stats["objects_per_call"]["/users/track"]["histogram"] == {"1": 1, "2": 1}
    assert stats["data_points"] == 3

    assert requests.post(f"{url}/sandbox/reset", timeout=5).status_code == 200
    assert braze.sandbox.profiles() == {} and braze.sandbox.requests == []
    assert requests.get(f"{url}/sandbox/stats", timeout=5).json()["calls"] == {}


def test_reset_also_reseeds_the_faults(braze: Braze) -> None:
    braze.sandbox.config.error_rate = 0.5
    first = [braze.track(events=[event("u1")]).status_code for _ in range(10)]
    braze.sandbox.reset()
    assert [braze.track(events=[event("u1")]).status_code for _ in range(10)] == first


# --------------------------------------------------------------------------------------------------
# Global control group export (§7)
# --------------------------------------------------------------------------------------------------

PREFIX_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-\d{10}"


def _seed_control_group(braze: Braze) -> None:
    braze.sandbox.config.control_group_users = [{"external_id": "cfg-1", "email": "c@example.com", "dob": "1990-01-01"}]
    braze.track(
        attributes=[attrs(f"u{i}", email=f"u{i}@example.com", global_control_group=True, plan="pro") for i in range(3)]
        + [attrs("outsider", global_control_group=False)],
        events=[event("u0")],
    )


def _lines(payload: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in payload.decode().splitlines()]


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="braze-exports")
        yield s3


@pytest.mark.parametrize("output_format", ["zip", "gzip"])
def test_export_to_the_own_bucket_writes_files_and_calls_back(
    braze: Braze, s3_bucket: Any, callback_receiver: tuple[str, Any], output_format: str
) -> None:
    # Given four control-group users, two per file, and an own bucket
    callback_url, received = callback_receiver
    braze.sandbox.config.export_bucket, braze.sandbox.config.export_users_per_file = "braze-exports", 2
    _seed_control_group(braze)
    # When the export is requested
    response = braze.export(
        fields_to_export=["external_id", "email", "custom_attributes", "custom_events"],
        callback_endpoint=callback_url,
        output_format=output_format,
    )
    # Then Braze answers at once with the prefix (no url), and files land under the documented key
    assert response.status_code == 201
    answer = response.json()
    assert set(answer) == {"message", "object_prefix"} and re.fullmatch(PREFIX_RE, answer["object_prefix"])
    assert received.get(timeout=5) == {"path": "/exports/job-1/callback?token=t0k", "body": {"success": True}}
    assert braze.sandbox.wait_for_exports(5)
    keys = [o["Key"] for o in s3_bucket.list_objects_v2(Bucket="braze-exports")["Contents"]]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    suffix = r"\.json\.gz" if output_format == "gzip" else r"\.zip"
    folder = f"segment-export/{DEFAULT_GCG_SEGMENT_ID}/{today}/{answer['object_prefix']}"
    assert len(keys) == 2 and all(re.fullmatch(rf"{re.escape(folder)}/[0-9a-f]{{32}}{suffix}", k) for k in keys)
    users = []
    for key in keys:
        payload = s3_bucket.get_object(Bucket="braze-exports", Key=key)["Body"].read()
        if output_format == "gzip":
            users += _lines(gzip.decompress(payload))
        else:
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                [member] = archive.namelist()
                assert member.endswith(".json")
                users += _lines(archive.read(member))
    by_id = {user["external_id"]: user for user in users}
    assert set(by_id) == {"u0", "u1", "u2", "cfg-1"}
    assert by_id["u0"] == {
        "external_id": "u0",
        "email": "u0@example.com",
        "custom_attributes": {"global_control_group": True, "plan": "pro"},
        "custom_events": [
            {
                "name": "played",
                "count": 1,
                "first": "2024-05-01T10:00:00.000Z",
                "last": "2024-05-01T10:00:00.000Z",
            }
        ],
    }
    assert by_id["cfg-1"] == {"external_id": "cfg-1", "email": "c@example.com"}  # only requested fields
    assert braze.sandbox.callbacks[0].status == 200


def test_export_without_a_bucket_serves_a_url_and_calls_back_with_it(
    braze: Braze, callback_receiver: tuple[str, Any]
) -> None:
    callback_url, received = callback_receiver
    _seed_control_group(braze)
    answer = braze.export(fields_to_export=["external_id", "dob", "braze_id"], callback_endpoint=callback_url).json()
    assert answer["url"].startswith(braze.sandbox.url + "/sandbox/exports/" + answer["object_prefix"])
    assert received.get(timeout=5)["body"] == {"success": True, "url": answer["url"]}
    download = requests.get(answer["url"], timeout=5)
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        users = [user for name in archive.namelist() for user in _lines(archive.read(name))]
    assert {user["external_id"] for user in users} == {"u0", "u1", "u2", "cfg-1"}
    assert all(set(user) <= {"external_id", "dob", "braze_id"} for user in users)
    assert {"external_id": "cfg-1", "dob": "1990-01-01"} in users


def test_an_empty_control_group_still_calls_back_with_no_files(
    braze: Braze, callback_receiver: tuple[str, Any]
) -> None:
    callback_url, received = callback_receiver
    answer = braze.export(fields_to_export=["external_id"], callback_endpoint=callback_url).json()
    assert received.get(timeout=5)["body"]["success"] is True
    with zipfile.ZipFile(io.BytesIO(requests.get(answer["url"], timeout=5).content)) as archive:
        assert archive.namelist() == []
    assert braze.sandbox.exports[0].users == 0


def test_a_failing_callback_is_recorded_and_the_sandbox_keeps_going(braze: Braze) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    braze.export(fields_to_export=["external_id"], callback_endpoint=f"http://127.0.0.1:{closed_port}/cb")
    assert braze.sandbox.wait_for_exports(5)
    [callback] = braze.sandbox.callbacks
    assert callback.status is None and "ConnectionError" in (callback.error or "")
    assert braze.track(events=[event("u1")]).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"fields_to_export": []},
        {"fields_to_export": ["email", "shoe_size"]},
        {"fields_to_export": [["email"]]},
        {"fields_to_export": ["email"], "output_format": "csv"},
        {"fields_to_export": ["email"], "callback_endpoint": "http://example.com/cb"},
    ],
)
def test_invalid_export_requests_are_a_400(braze: Braze, body: dict[str, Any]) -> None:
    response = braze.export(**body)
    assert response.status_code == 400 and response.json()["message"]
    assert braze.sandbox.exports == []


# --------------------------------------------------------------------------------------------------
# Robustness, configuration, command line
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/users/track", {"attributes": [attrs("u", email_subscribe={"x": 1}, subscription_groups="x")]}),
        (
            "/users/track",
            {"attributes": [attrs("u", subscription_groups=[["x"]], push_tokens=[{"token": 1}])]},
        ),
        (
            "/users/track",
            {"events": [event("u", properties={"": 1})], "purchases": [purchase("u", quantity=True)]},
        ),
        ("/users/track", {"attributes": [{"external_id": ["u"]}, {"user_alias": "u"}, {"braze_id": 5}]}),
        ("/users/track", {"attributes": [attrs("u", pets={"$remove": [{"$identifier_key": ["id"]}]})]}),
        ("/users/identify", {"aliases_to_identify": [{"external_id": 1}], "emails_to_identify": "x"}),
        (
            "/users/identify",
            {"emails_to_identify": [{"external_id": "u", "email": "a@b.co", "prioritization": [{}]}]},
        ),
        ("/users/export/global_control_group", {"fields_to_export": "email", "callback_endpoint": 5}),
    ],
)
def test_hostile_input_gets_a_json_answer_and_the_server_survives(braze: Braze, path: str, body: Any) -> None:
    response = braze.post(path, body)
    assert response.status_code in (201, 400)
    assert isinstance(response.json(), dict)
    assert braze.track(events=[event("alive")]).status_code == 201


def test_config_is_validated_and_binding_is_loopback_only() -> None:
    with pytest.raises(ValueError, match="track_batch_mode"):
        SandboxConfig(track_batch_mode="sometimes")
    with pytest.raises(ValueError, match="error_rate"):
        SandboxConfig(error_rate=1.5)
    with pytest.raises(ValueError, match="rate_limit_header_style"):
        SandboxConfig(rate_limit_header_style="sometimes")
    assert SandboxConfig(rate_limit_header_style="rotate").rate_limit_header_style == "rotate"
    with pytest.raises(ValueError, match="loopback"):
        BrazeSandbox(host="0.0.0.0")  # noqa: S104 - the point of the test


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--port",
        "--error-rate",
        "--rate-limited-rate",
        "--latency",
        "--drop-rate",
        "--timeout-rate",
        "--track-batch-mode",
        "--export-bucket",
        "--s3-endpoint-url",
        "--seed",
    ):
        assert flag in text


def test_the_module_runs_in_the_foreground_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "local.braze_sandbox", "--port", "0", "--error-rate", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert requests.get(url + "/sandbox/stats", timeout=5).status_code == 200
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()

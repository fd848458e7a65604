"""The Braze sandbox's /users/delete, /users/alias/new and /users/merge over real HTTP (§6), and
the rate-limit budget they share with /users/identify (§2.9)."""

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.braze_sandbox import BrazeSandbox, SandboxConfig, ScriptedResponse

T0 = "2024-05-01T10:00:00Z"
EMAIL_ORDER = ["unidentified", "most_recently_updated"]


class Braze:
    """A tiny authenticated client for the sandbox."""

    def __init__(self, sandbox: BrazeSandbox):
        self.sandbox = sandbox
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {sandbox.config.api_key}"

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(self.sandbox.url + path, json=body, timeout=5)

    def track(self, **arrays: Any) -> requests.Response:
        return self.post("/users/track", arrays)

    def delete(self, **arrays: Any) -> requests.Response:
        return self.post("/users/delete", arrays)

    def alias_new(self, *aliases: dict[str, Any]) -> requests.Response:
        return self.post("/users/alias/new", {"user_aliases": list(aliases)})

    def merge(self, *updates: tuple[dict[str, Any], dict[str, Any]]) -> requests.Response:
        body = [{"identifier_to_merge": merge, "identifier_to_keep": keep} for merge, keep in updates]
        return self.post("/users/merge", {"merge_updates": body})


@pytest.fixture
def braze() -> Iterator[Braze]:
    with BrazeSandbox(SandboxConfig(seed=7)) as sandbox:
        client = Braze(sandbox)
        yield client
        client.session.close()


def attrs(external_id: str, **values: Any) -> dict[str, Any]:
    return {"external_id": external_id, **values}


def event(external_id: str, name: str = "played") -> dict[str, Any]:
    return {"external_id": external_id, "name": name, "time": T0}


def alias(name: str, label: str = "device") -> dict[str, str]:
    return {"alias_name": name, "alias_label": label}


def _profile(braze: Braze, external_id: str) -> dict[str, Any]:
    profile = braze.sandbox.profile(external_id)
    assert profile is not None, f"no profile {external_id}"
    return profile


# --------------------------------------------------------------------------------------------------
# POST /users/delete
# --------------------------------------------------------------------------------------------------


def test_delete_by_external_id_removes_the_profile_and_records_it(braze: Braze) -> None:
    braze.track(attributes=[attrs("u1", first_name="Ann"), attrs("u2")], events=[event("u1")])

    response = braze.delete(external_ids=["u1", "nobody"])

    assert response.status_code == 200
    assert response.json() == {"deleted": 2, "message": "success"}  # queued: found or not
    assert braze.sandbox.profile("u1") is None and braze.sandbox.profile("u2") is not None
    first, second = braze.sandbox.deletions
    assert (first["identifier_type"], first["identifier"], first["found"], first["external_id"]) == (
        "external_id",
        "u1",
        1,
        "u1",
    )
    assert [entry["op"] for entry in first["history"]] == ["created", "attributes", "event"]
    assert (second["identifier"], second["found"]) == ("nobody", 0)
    assert braze.sandbox.stats()["profiles"] == 1


def test_a_track_after_the_delete_creates_a_fresh_empty_profile(braze: Braze) -> None:
    braze.track(attributes=[attrs("u1", first_name="Ann", tier="gold")], events=[event("u1")])
    before = _profile(braze, "u1")
    assert braze.sandbox.since_deletion("u1") is None  # never deleted

    braze.delete(external_ids=["u1"])
    assert braze.sandbox.since_deletion("u1") == []
    braze.track(events=[event("u1", "late")])

    after = _profile(braze, "u1")
    assert after["braze_id"] != before["braze_id"]
    assert after["attributes"] == {} and list(after["custom_events"]) == ["late"]
    arrived = braze.sandbox.since_deletion("u1")
    assert [(entry["op"], entry.get("name")) for entry in arrived or []] == [("created", None), ("event", "late")]
    assert all(entry["seq"] > braze.sandbox.deletions[-1]["seq"] for entry in arrived or [])


def test_delete_by_alias_and_by_braze_id(braze: Braze) -> None:
    braze.alias_new(alias("dev-1"))
    braze.track(attributes=[attrs("u2")])
    braze_id = _profile(braze, "u2")["braze_id"]

    assert braze.delete(user_aliases=[alias("dev-1")]).json()["deleted"] == 1
    assert braze.delete(braze_ids=[braze_id]).json()["deleted"] == 1

    assert braze.sandbox.alias_profile("dev-1", "device") is None and braze.sandbox.profile("u2") is None
    assert [d["found"] for d in braze.sandbox.deletions] == [1, 1]


def test_delete_by_email_deletes_only_when_the_prioritization_leaves_one_user(braze: Braze) -> None:
    braze.alias_new(alias("anon-a"), alias("anon-b1"), alias("anon-b2"))  # unidentified profiles
    braze.track(
        attributes=[
            attrs("known", email="a@example.com"),
            {"user_alias": alias("anon-a"), "email": "a@example.com"},
            {"user_alias": alias("anon-b1"), "email": "b@example.com"},
            {"user_alias": alias("anon-b2"), "email": "b@example.com"},
        ]
    )
    profiles = len(braze.sandbox.profiles())

    braze.delete(email_addresses=[{"email": "a@example.com", "prioritization": ["unidentified"]}])
    # Two unidentified profiles share b@: "deleting users will not occur if more than one user matches".
    braze.delete(email_addresses=[{"email": "b@example.com", "prioritization": ["unidentified"]}])

    one, none = braze.sandbox.deletions
    assert (one["found"], one["external_id"], none["found"]) == (1, None, 2)  # found 2: none deleted
    assert "braze_id" not in none
    assert braze.sandbox.profile("known") is not None and braze.sandbox.alias_profile("anon-a", "device") is None
    assert len(braze.sandbox.profiles()) == profiles - 1


def test_delete_by_phone(braze: Braze) -> None:
    braze.track(attributes=[attrs("p1", phone="+15555550100")])

    answer = braze.delete(phone_numbers=[{"phone": "+15555550100", "prioritization": ["identified"]}])

    assert answer.json() == {"deleted": 1, "message": "success"}
    assert braze.sandbox.profile("p1") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "No Recipients"),
        ([], "JSON object"),
        ({"external_ids": ["u1"], "braze_ids": ["b1"]}, "only one of external_ids"),  # mixed types
        ({"external_ids": "u1"}, "non-empty array"),
        ({"external_ids": []}, "non-empty array"),
        ({"external_ids": ["u1", 7]}, "'external_ids'[1]: must be a non-empty string"),
        ({"user_aliases": [{"alias_name": "n"}]}, "alias_name and alias_label"),
        ({"email_addresses": ["a@example.com"]}, "'prioritization' array"),
        ({"email_addresses": [{"email": "a@example.com"}]}, "prioritization must be"),
        ({"email_addresses": [{"email": "a@example.com", "prioritization": ["least_recently_updated"]}]}, "prior"),
        ({"phone_numbers": [{"phone": "+1555", "prioritization": ["identified", "unidentified"]}]}, "prior"),
        ({"email_addresses": [{"email": "not-an-email", "prioritization": ["identified"]}]}, "valid address"),
    ],
)
def test_delete_rejects_malformed_requests_and_deletes_nothing(braze: Braze, body: Any, message: str) -> None:
    braze.track(attributes=[attrs("u1")])

    response = braze.post("/users/delete", body)

    assert response.status_code == 400 and message in response.json()["message"]
    assert braze.sandbox.profile("u1") is not None and braze.sandbox.deletions == []


def test_delete_takes_at_most_50_identifiers(braze: Braze) -> None:
    braze.track(attributes=[attrs("u0")])
    too_many = braze.delete(external_ids=[f"u{i}" for i in range(51)])

    assert too_many.status_code == 400
    assert too_many.json()["message"].startswith("a single request may not contain more than 50 identifiers")
    assert braze.sandbox.profile("u0") is not None
    assert braze.delete(external_ids=[f"u{i}" for i in range(50)]).json() == {"deleted": 50, "message": "success"}


# --------------------------------------------------------------------------------------------------
# POST /users/alias/new
# --------------------------------------------------------------------------------------------------


def test_alias_new_creates_an_alias_only_profile_or_adds_to_an_identified_one(braze: Braze) -> None:
    braze.track(attributes=[attrs("u1")])

    response = braze.alias_new(alias("dev-1"), {"external_id": "u1", **alias("crm-1", "crm")})

    assert response.status_code == 201
    assert response.json() == {"aliases_processed": 2, "message": "success"}
    alias_only = braze.sandbox.alias_profile("dev-1", "device")
    assert alias_only is not None and alias_only["external_id"] is None
    assert _profile(braze, "u1")["user_aliases"] == [alias("crm-1", "crm")]
    assert [e["op"] for e in braze.sandbox.history("u1")] == ["created", "attributes", "alias"]


def test_alias_new_for_an_unknown_external_id_or_an_existing_pair_changes_nothing(braze: Braze) -> None:
    braze.track(attributes=[attrs("u1"), attrs("u2")])
    braze.alias_new({"external_id": "u1", **alias("dev-1")})
    profiles = braze.sandbox.profiles()

    answer = braze.alias_new(
        {"external_id": "ghost", **alias("dev-9")},  # "the alias will not be added to any users"
        {"external_id": "u2", **alias("dev-1")},  # the pair exists on u1: success, nothing changes
        alias("dev-1"),  # likewise without an external_id: no second profile
        {"external_id": "u1", **alias("dev-2")},  # u1 already has a "device" alias
    ).json()

    assert answer == {"aliases_processed": 4, "message": "success"}
    assert braze.sandbox.profiles() == profiles


def test_alias_then_track_then_identify(braze: Braze) -> None:
    braze.alias_new(alias("dev-1"))
    braze.track(attributes=[{"user_alias": alias("dev-1"), "first_name": "Pre"}], events=[event("u9")])

    braze.post("/users/identify", {"aliases_to_identify": [{"external_id": "u9", "user_alias": alias("dev-1")}]})

    profile = _profile(braze, "u9")
    assert profile["attributes"]["first_name"] == "Pre" and profile["user_aliases"] == [alias("dev-1")]
    assert braze.sandbox.alias_profile("dev-1", "device") == profile


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "No Recipients"),
        ({"user_aliases": "dev"}, "must be an array of objects"),
        ({"user_aliases": [alias("a"), {"alias_name": "b"}]}, "'user_aliases'[1] needs string alias_name"),
        ({"user_aliases": [{"external_id": 5, **alias("a")}]}, "external_id must be a non-empty string"),
        ({"user_aliases": [{"external_id": "x" * 988, **alias("a")}]}, "fewer than 988 bytes"),
    ],
)
def test_alias_new_rejects_malformed_requests(braze: Braze, body: Any, message: str) -> None:
    response = braze.post("/users/alias/new", body)

    assert response.status_code == 400 and message in response.json()["message"]
    assert braze.sandbox.profiles() == {}


def test_alias_new_takes_at_most_50(braze: Braze) -> None:
    too_many = braze.alias_new(*(alias(f"d{i}") for i in range(51)))

    assert too_many.status_code == 400 and "more than 50 user aliases" in too_many.json()["message"]
    assert braze.alias_new(*(alias(f"d{i}") for i in range(50))).json()["aliases_processed"] == 50


# --------------------------------------------------------------------------------------------------
# POST /users/merge
# --------------------------------------------------------------------------------------------------


def test_merge_copies_only_fields_missing_on_the_kept_profile(braze: Braze) -> None:
    braze.track(
        attributes=[
            attrs("old", first_name="Old", last_name="Smith", tier="gold", email="old@example.com"),
            attrs("new", first_name="New", tier="silver"),
        ],
        events=[event("old"), event("old"), event("new"), event("old", "quit")],
    )
    braze.alias_new({"external_id": "old", **alias("dev-old")})

    response = braze.merge(({"external_id": "old"}, {"external_id": "new"}))

    assert response.status_code == 202 and response.json() == {"message": "success"}
    kept = _profile(braze, "new")
    assert kept["attributes"] == {
        "first_name": "New",  # the kept profile's values win
        "tier": "silver",
        "last_name": "Smith",  # copied: missing on the kept profile
        "email": "old@example.com",
    }
    assert kept["custom_events"]["played"]["count"] == 3 and kept["custom_events"]["quit"]["count"] == 1
    # The merged profile is gone, its external_id and aliases with it (not in Braze's merged fields).
    assert braze.sandbox.profile("old") is None and braze.sandbox.alias_profile("dev-old", "device") is None
    (record,) = braze.sandbox.merges
    assert (record["outcome"], record["merged_external_id"], record["kept_external_id"]) == ("merged", "old", "new")
    assert sorted(record["copied"]) == ["email", "last_name"]
    assert braze.sandbox.history("new")[-1]["op"] == "merged_in"


def test_merge_by_alias_and_email_with_prioritization(braze: Braze) -> None:
    braze.alias_new(alias("dev-1"))
    braze.track(
        attributes=[
            {"user_alias": alias("dev-1"), "home_city": "Oslo", "_update_existing_only": False},
            {"email": "x@example.com", "language": "nb"},  # email-only
            attrs("keep", email="x@example.com"),
        ]
    )

    braze.merge(
        ({"user_alias": alias("dev-1")}, {"external_id": "keep"}),
        (
            {"email": "x@example.com", "prioritization": EMAIL_ORDER},
            {"email": "x@example.com", "prioritization": ["identified"]},
        ),
    )

    kept = _profile(braze, "keep")["attributes"]
    assert (kept["home_city"], kept["language"]) == ("Oslo", "nb")
    assert [m["outcome"] for m in braze.sandbox.merges] == ["merged", "merged"]
    assert len(braze.sandbox.profiles()) == 1


def test_merge_does_nothing_for_unknown_ambiguous_same_or_control_group_users(braze: Braze) -> None:
    braze.alias_new(alias("d1"), alias("d2"))
    braze.track(
        attributes=[
            attrs("a"),
            attrs("gcg", global_control_group=True),
            {"user_alias": alias("d1"), "email": "dup@example.com"},
            {"user_alias": alias("d2"), "email": "dup@example.com"},
        ]
    )
    profiles = braze.sandbox.profiles()

    braze.merge(
        ({"external_id": "ghost"}, {"external_id": "a"}),
        ({"email": "dup@example.com", "prioritization": ["unidentified"]}, {"external_id": "a"}),
        ({"external_id": "a"}, {"external_id": "a"}),
        ({"external_id": "gcg"}, {"external_id": "a"}),
    )

    assert [m["outcome"] for m in braze.sandbox.merges] == ["not_found", "ambiguous", "same_profile", "control_group"]
    assert braze.sandbox.profiles() == profiles


def test_merged_then_tracked_external_id_is_a_new_profile(braze: Braze) -> None:
    braze.track(attributes=[attrs("old", first_name="O"), attrs("new")])
    braze.merge(({"external_id": "old"}, {"external_id": "new"}))

    braze.track(events=[event("old", "late")])

    assert _profile(braze, "old")["attributes"] == {}
    assert "late" not in _profile(braze, "new")["custom_events"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'merge_updates' must be an array of objects"),
        ({"merge_updates": {"identifier_to_merge": {}}}, "'merge_updates' must be an array of objects"),
        ({"merge_updates": ["x"]}, "'merge_updates' must be an array of objects"),
        (
            {"merge_updates": [{"identifier_to_merge": {"external_id": "a"}}]},
            "'merge_updates' must only have 'identifier_to_merge' and 'identifier_to_keep'",
        ),
        (
            {
                "merge_updates": [
                    {"identifier_to_merge": {"external_id": "a"}, "identifier_to_keep": {"external_id": "b"}, "note": 1}
                ]
            },
            "'merge_updates' must only have",
        ),
        (
            {
                "merge_updates": [
                    {"identifier_to_merge": {"external_id": 1}, "identifier_to_keep": {"external_id": "b"}}
                ]
            },
            "identifiers must be objects with an 'external_id' property that is a string",
        ),
        (
            {"merge_updates": [{"identifier_to_merge": {"braze_id": "x"}, "identifier_to_keep": {"external_id": "b"}}]},
            "identifiers must be objects",
        ),
        (
            {
                "merge_updates": [
                    {
                        "identifier_to_merge": {"external_id": "a", "user_alias": alias("d")},
                        "identifier_to_keep": {"external_id": "b"},
                    }
                ]
            },
            "identifiers must be objects",
        ),
        (
            {
                "merge_updates": [
                    {"identifier_to_merge": {"email": "a@example.com"}, "identifier_to_keep": {"external_id": "b"}}
                ]
            },
            "'email' needs a 'prioritization'",
        ),
    ],
)
def test_merge_rejects_malformed_requests_with_brazes_messages(braze: Braze, body: Any, message: str) -> None:
    braze.track(attributes=[attrs("a", first_name="A"), attrs("b")])

    response = braze.post("/users/merge", body)

    assert response.status_code == 400 and message in response.json()["message"]
    assert braze.sandbox.profile("a") is not None and braze.sandbox.merges == []


def test_merge_takes_at_most_50_merge_updates(braze: Braze) -> None:
    updates = [({"external_id": f"m{i}"}, {"external_id": "k"}) for i in range(51)]

    too_many = braze.merge(*updates)

    assert too_many.status_code == 400
    assert too_many.json() == {"message": "a single request may not contain more than 50 merge updates"}
    assert braze.merge(*updates[:50]).status_code == 202


# --------------------------------------------------------------------------------------------------
# What these routes share with /users/track and /users/identify
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/users/delete", "/users/alias/new", "/users/merge"])
def test_the_routes_need_the_api_key_and_are_recorded(braze: Braze, path: str) -> None:
    response = requests.post(braze.sandbox.url + path, json={}, timeout=5)

    assert response.status_code == 401
    assert "X-RateLimit-Limit" in response.headers
    assert braze.sandbox.requests[-1].path == path and braze.sandbox.requests[-1].status == 401


def test_identify_alias_merge_and_delete_share_one_window_apart_from_track(braze: Braze) -> None:
    config = braze.sandbox.config
    config.user_data_rate_limit_requests, config.user_data_rate_limit_window_seconds = 3, 60
    config.rate_limit_requests = 1  # /users/track's window: used up, the family's is not

    assert braze.track(events=[event("u1")]).status_code == 201
    assert braze.track(events=[event("u1")]).status_code == 429
    answers = [
        braze.alias_new(alias("d1")),
        braze.post("/users/identify", {"aliases_to_identify": [{"external_id": "u1", "user_alias": alias("d1")}]}),
        braze.merge(({"external_id": "x"}, {"external_id": "u1"})),
        braze.delete(external_ids=["u1"]),
    ]

    assert [a.status_code for a in answers] == [201, 201, 202, 429]
    assert [a.headers.get("X-RateLimit-Limit") for a in answers[:3]] == ["3", "3", "3"]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert braze.sandbox.profile("u1") is not None  # the 429 deleted nothing
    assert braze.sandbox.stats()["rate_limited"] == 2


def test_an_injected_429_on_the_family_announces_the_familys_limit(braze: Braze) -> None:
    config = braze.sandbox.config
    config.rate_limited_rate, config.rate_limit_header_style = 1.0, "reset_epoch"

    limited = braze.delete(external_ids=["u1"])

    assert limited.status_code == 429 and limited.headers["X-RateLimit-Limit"] == "20000"
    assert braze.track(events=[event("u1")]).headers["X-RateLimit-Limit"] == "3000"


@pytest.mark.parametrize("fault", ["error_rate", "rate_limited_rate", "drop_rate"])
def test_injected_faults_apply_nothing(braze: Braze, fault: str) -> None:
    braze.track(attributes=[attrs("u1")])
    setattr(braze.sandbox.config, fault, 1.0)

    with pytest.raises(requests.ConnectionError) if fault == "drop_rate" else _nothing():
        status = braze.delete(external_ids=["u1"]).status_code
        assert status == (500 if fault == "error_rate" else 429)

    setattr(braze.sandbox.config, fault, 0.0)
    assert braze.sandbox.profile("u1") is not None and braze.sandbox.deletions == []
    assert braze.sandbox.requests[-1].processed is False


def test_a_delete_applied_but_whose_answer_was_lost_is_recorded_as_processed(braze: Braze) -> None:
    braze.track(attributes=[attrs("u1")])
    braze.sandbox.config.drop_after_processing_rate = 1.0

    with pytest.raises(requests.ConnectionError):
        braze.delete(external_ids=["u1"])

    assert braze.sandbox.requests[-1].processed is True and braze.sandbox.requests[-1].status is None
    assert braze.sandbox.profile("u1") is None  # a retry must be harmless: it deletes nothing more
    braze.sandbox.config.drop_after_processing_rate = 0.0
    assert braze.delete(external_ids=["u1"]).json() == {"deleted": 1, "message": "success"}
    assert [d["found"] for d in braze.sandbox.deletions] == [1, 0]


def test_scripted_answers_default_to_brazes_bodies(braze: Braze) -> None:
    braze.sandbox.script(
        ScriptedResponse(200, path="/users/delete"),
        ScriptedResponse(201, path="/users/alias/new"),
        ScriptedResponse(202, path="/users/merge"),
    )

    assert braze.delete(braze_ids=["b1", "b2"]).json() == {"message": "success", "deleted": 2}
    assert braze.alias_new(alias("d")).json() == {"message": "success", "aliases_processed": 1}
    assert braze.merge(({"external_id": "a"}, {"external_id": "b"})).json() == {"message": "success"}
    assert braze.sandbox.deletions == [] and braze.sandbox.merges == []  # not processed


def test_control_routes_show_deletions_merges_and_history(braze: Braze) -> None:
    braze.track(attributes=[attrs("a", first_name="A"), attrs("b"), attrs("c")])
    braze.merge(({"external_id": "a"}, {"external_id": "b"}))
    braze.delete(external_ids=["c"])
    base = braze.sandbox.url + "/sandbox"

    deletions = requests.get(base + "/deletions", timeout=5).json()
    merges = requests.get(base + "/merges", timeout=5).json()
    history = requests.get(base + "/users/b/history", timeout=5).json()

    assert [d["external_id"] for d in deletions] == ["c"]
    assert [m["outcome"] for m in merges] == ["merged"]
    assert [entry["op"] for entry in history] == ["created", "attributes", "merged_in"]
    stats = braze.sandbox.stats()
    assert stats["calls"]["/users/merge"] == 1 and stats["objects_per_call"]["/users/delete"]["objects"] == 1
    braze.sandbox.reset()
    assert braze.sandbox.deletions == [] and braze.sandbox.merges == []


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None

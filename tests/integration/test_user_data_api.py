"""/users/delete, /users/alias/new and /users/merge end to end in-process: API Gateway event →
handler → UserOrderTable and SQS (moto). docs/ordering.md, "At the API"."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from braze_forwarder import queue
from braze_forwarder.user_order import fence_seconds, user_digest
from local.braze_sandbox.users_alias import _alias_request
from local.braze_sandbox.users_delete import _delete_request
from local.braze_sandbox.users_merge import _merge_request
from tests.integration import test_ingest_api

# Records are keyed by the day of their accept time; make test runs these on other days too.
pytestmark = pytest.mark.clock

api = test_ingest_api.api  # the ingest API's fixture, found here by its name
FENCE = fence_seconds(3.05, 15.0)  # ORDER_FENCE_SECONDS' default: the sender's default timeouts


@pytest.fixture
def sent(monkeypatch) -> list[dict[str, Any]]:
    """Every entry SQS was sent, with its DelaySeconds: a delayed message cannot be received yet."""
    from braze_forwarder import aws

    sqs = aws.client("sqs")
    real_send = sqs.send_message_batch
    entries: list[dict[str, Any]] = []

    def recording(**kwargs: Any) -> Any:
        answer = real_send(**kwargs)
        ok = {entry["Id"] for entry in answer.get("Successful", [])}
        entries.extend(entry for entry in kwargs["Entries"] if entry["Id"] in ok)
        return answer

    monkeypatch.setattr(sqs, "send_message_batch", recording)
    return entries


def envelopes(sent: list[dict[str, Any]]) -> list[queue.Envelope]:
    return [queue.decode(entry["MessageBody"]) for entry in sent]


def order_records(stack) -> list[dict[str, str]]:
    items = boto3.client("dynamodb").scan(TableName=stack.refs["UserOrderTable"])["Items"]
    return sorted(({name: next(iter(value.values())) for name, value in item.items()} for item in items), key=str)


def receivable(stack) -> int:
    messages = boto3.client("sqs").receive_message(QueueUrl=stack.refs["EventsQueue"], MaxNumberOfMessages=10)
    return len(messages.get("Messages", []))


EMAIL = {"email": "gone@example.com", "prioritization": ["identified", "most_recently_updated"]}
PHONE = {"phone": "+15555550100", "prioritization": ["unidentified"]}
ALIAS = {"alias_name": "device-7", "alias_label": "device_id"}


# ---------------------------------------------------------------- /users/delete


@pytest.mark.parametrize(
    ("array", "identifiers", "users"),
    [
        ("external_ids", ["user-1", "user-2"], [("external_id", "user-1"), ("external_id", "user-2")]),
        ("braze_ids", ["5f0a1b"], [("braze_id", "5f0a1b")]),
        ("user_aliases", [ALIAS], [("user_alias", "device-7", "device_id")]),
        ("email_addresses", [EMAIL], [("email", "gone@example.com")]),
        ("phone_numbers", [PHONE], [("phone", "+15555550100")]),
    ],
)
def test_a_delete_writes_a_tombstone_per_identifier_then_queues_behind_the_fence(
    api, aws_stack, sent, array, identifiers, users
):
    reply = api("/users/delete", {array: identifiers})

    assert reply.status == 202
    assert reply.body == {"message": "success", "deleted": len(identifiers), "errors": []}
    [envelope] = envelopes(sent)
    assert envelope.kind == "delete"
    assert [(item.array, item.index, item.object) for item in envelope.items] == [
        (array, index, identifier) for index, identifier in enumerate(identifiers)
    ]
    assert [entry["DelaySeconds"] for entry in sent] == [FENCE]
    assert receivable(aws_stack) == 0  # SQS keeps it invisible for the fence
    records = order_records(aws_stack)
    assert sorted(r["user"] for r in records) == sorted(user_digest(u) for u in users)
    assert {(r["kind"], r["accepted_at"]) for r in records} == {("delete", envelope.accepted_at)}
    assert all(r["sk"] == f"{envelope.accepted_at}#D#{r['user']}" for r in records)
    assert not any(identifier in json.dumps(records) for identifier in ("user-1", "gone@example.com", "device-7"))


def test_invalid_identifiers_are_listed_and_get_no_tombstone(api, aws_stack, sent):
    body = {
        "email_addresses": [
            EMAIL,
            {"email": "not-an-address", "prioritization": ["identified"]},
            {"email": "x@example.com", "prioritization": ["least_recently_updated"]},  # not for deletes
            {"email": "y@example.com"},
            "z@example.com",
        ]
    }

    reply = api("/users/delete", body)

    assert reply.status == 202
    assert reply.body["deleted"] == 1
    assert [(e["input_array"], e["index"], e["type"]) for e in reply.body["errors"]] == [
        ("email_addresses", 1, "EMAIL_BAD_FORMAT"),
        ("email_addresses", 2, "BAD_PRIORITIZATION"),
        ("email_addresses", 3, "INVALID_OBJECT"),
        ("email_addresses", 4, "INVALID_OBJECT"),
    ]
    assert not any(value in json.dumps(reply.body["errors"]) for value in ("not-an-address", "x@", "y@", "z@"))
    assert [r["user"] for r in order_records(aws_stack)] == [user_digest(("email", "gone@example.com"))]
    assert [item.index for envelope in envelopes(sent) for item in envelope.items] == [0]


def test_a_delete_of_only_invalid_identifiers_is_400_and_writes_nothing(api, aws_stack, sent):
    reply = api("/users/delete", {"external_ids": ["", 7, {"external_id": "x"}]})

    assert reply.status == 400
    assert reply.body["type"] == "no_valid_objects"
    assert [e["type"] for e in reply.body["errors"]] == ["BAD_EXTERNAL_ID"] * 3
    assert sent == [] and order_records(aws_stack) == []


@pytest.mark.parametrize(
    "body",
    [
        {"external_ids": ["user-1"], "braze_ids": ["5f0a1b"]},
        {"external_ids": ["user-1"], "email_addresses": []},  # an empty second array is still a second type
        {"user_aliases": [ALIAS], "phone_numbers": [PHONE]},
    ],
)
def test_a_delete_naming_two_identifier_types_is_refused_whole(api, aws_stack, sent, body):
    reply = api("/users/delete", body)

    assert reply.status == 400
    assert reply.body["message"] == "Bad Request"
    assert reply.body["type"] == "mixed_identifier_types"
    assert "only one of external_ids, user_aliases, braze_ids, email_addresses or phone_numbers" in reply.body["reason"]
    assert sent == [] and order_records(aws_stack) == []


@pytest.mark.parametrize(
    ("path", "body", "what"),
    [
        ("/users/delete", {"external_ids": [f"user-{i}" for i in range(51)]}, "identifiers"),
        ("/users/alias/new", {"user_aliases": [{**ALIAS, "alias_name": f"d-{i}"} for i in range(51)]}, "user aliases"),
        (
            "/users/merge",
            {
                "merge_updates": [
                    {"identifier_to_merge": {"external_id": f"old-{i}"}, "identifier_to_keep": {"external_id": "new"}}
                    for i in range(51)
                ]
            },
            "merge updates",
        ),
    ],
)
def test_more_than_50_items_are_refused_whole(api, aws_stack, sent, path, body, what):
    reply = api(path, body)

    assert reply.status == 400
    assert reply.body["type"] == "too_many_objects"
    assert reply.body["reason"] == f"a single request may not contain more than 50 {what}; this one has 51"
    assert sent == [] and order_records(aws_stack) == []


def test_exactly_50_identifiers_are_accepted(api, aws_stack, sent):
    reply = api("/users/delete", {"external_ids": [f"user-{i}" for i in range(50)]})

    assert reply.status == 202 and reply.body["deleted"] == 50
    assert len(order_records(aws_stack)) == 50


def test_an_idempotent_replay_answers_the_same_and_writes_nothing_new(api, aws_stack, sent):
    body = {"external_ids": ["user-1"]}
    first = api("/users/delete", body, headers={"idempotency-key": "gdpr-1"})
    records = order_records(aws_stack)

    again = api("/users/delete", body, headers={"idempotency-key": "gdpr-1"})

    assert first.status == again.status == 202
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert order_records(aws_stack) == records and len(records) == 1
    assert len(sent) == 1


def test_when_the_order_store_cannot_be_written_the_answer_is_503_and_nothing_is_queued(api, aws_stack, sent):
    boto3.client("dynamodb").delete_table(TableName=aws_stack.refs["UserOrderTable"])

    reply = api("/users/delete", {"external_ids": ["user-1"]}, headers={"idempotency-key": "gdpr-2"})

    assert reply.status == 503
    assert reply.body["type"] == "order_store_unavailable"
    assert reply.body["message"] == "Service Unavailable"
    assert reply.headers.get("Retry-After") == "5"
    assert sent == [] and receivable(aws_stack) == 0


def test_a_store_slower_than_the_senders_look_back_is_503_and_nothing_is_queued(api, aws_stack, sent, monkeypatch):
    from braze_forwarder.ingest import user_data

    monkeypatch.setattr(user_data, "RECORD_WRITE_SECONDS", -1.0)  # every write is "too late"

    reply = api(
        "/users/merge",
        {"merge_updates": [{"identifier_to_merge": {"external_id": "a"}, "identifier_to_keep": {"external_id": "b"}}]},
    )

    assert reply.status == 503 and reply.body["type"] == "order_store_unavailable"
    assert sent == []


def test_a_retry_after_a_partial_queue_failure_records_what_it_queues_with_its_own_accept_time(
    api, aws_stack, sent, monkeypatch
):
    monkeypatch.setenv("MAX_MESSAGE_BYTES", str(16 * 1024))
    ids = [f"{i:03d}-" + "x" * 900 for i in range(50)]  # about 46 KB: four messages
    outage = test_ingest_api._queue_failing_after(monkeypatch, accepted_messages=1)

    first = api("/users/delete", {"external_ids": ids}, headers={"idempotency-key": "gdpr-3"})
    assert first.status == 503 and first.body["type"] == "queue_unavailable"
    assert len(sent) == 1
    outage["budget"] = 10**6  # SQS is back

    again = api("/users/delete", {"external_ids": ids}, headers={"idempotency-key": "gdpr-3"})

    assert again.status == 202 and again.body["deleted"] == 50
    queued = envelopes(sent)
    assert sorted(item.index for envelope in queued for item in envelope.items) == list(range(50))
    assert len({envelope.accepted_at for envelope in queued}) == 2  # the first attempt's, and the retry's
    tombstones = {(r["user"], r["accepted_at"]) for r in order_records(aws_stack)}
    for envelope in queued:  # every queued delete has its tombstone, at the accept time it carries
        for item in envelope.items:
            assert (user_digest(("external_id", item.object)), envelope.accepted_at) in tombstones


def test_the_fence_follows_order_fence_seconds(api, aws_stack, sent, monkeypatch):
    monkeypatch.setenv("ORDER_FENCE_SECONDS", "300")

    assert api("/users/delete", {"external_ids": ["user-1"]}).status == 202

    assert [entry["DelaySeconds"] for entry in sent] == [300]


# ---------------------------------------------------------------- /users/alias/new


def test_aliases_are_recorded_pending_and_queued_without_delay(api, aws_stack, sent):
    body = {"user_aliases": [ALIAS, {**ALIAS, "alias_name": "device-8", "external_id": "user-1"}]}

    reply = api("/users/alias/new", body)

    assert reply.status == 202
    assert reply.body == {"message": "success", "aliases_queued": 2, "errors": []}
    [envelope] = envelopes(sent)
    assert envelope.kind == "alias"
    assert [item.object for item in envelope.items] == body["user_aliases"]
    assert [entry.get("DelaySeconds", 0) for entry in sent] == [0]
    assert receivable(aws_stack) == 1
    records = order_records(aws_stack)
    assert sorted(r["user"] for r in records) == sorted(
        user_digest(("user_alias", name, "device_id")) for name in ("device-7", "device-8")
    )
    assert {(r["kind"], r["accepted_at"]) for r in records} == {("alias", envelope.accepted_at)}


def test_invalid_aliases_are_listed_and_not_recorded(api, aws_stack, sent):
    body = {
        "user_aliases": [
            ALIAS,
            {"alias_name": "d"},
            {**ALIAS, "external_id": ""},
            {**ALIAS, "user_alias": ALIAS},
            ["not", "an", "object"],
        ]
    }

    reply = api("/users/alias/new", body)

    assert reply.status == 202 and reply.body["aliases_queued"] == 1
    assert [(e["index"], e["type"]) for e in reply.body["errors"]] == [
        (1, "BAD_USER_ALIAS"),
        (2, "BAD_EXTERNAL_ID"),
        (3, "UNKNOWN_FIELD"),
        (4, "INVALID_OBJECT"),
    ]
    assert len(order_records(aws_stack)) == 1


def test_alias_new_takes_only_user_aliases(api, aws_stack, sent):
    reply = api("/users/alias/new", {"user_aliases": [ALIAS], "external_ids": ["user-1"]})

    assert reply.status == 400 and reply.body["type"] == "unknown_field"
    assert sent == []


# ---------------------------------------------------------------- /users/merge


def test_a_merge_records_both_users_and_waits_behind_the_fence(api, aws_stack, sent):
    update = {
        "identifier_to_merge": {
            "email": "old@example.com",
            "prioritization": ["unidentified", "most_recently_updated"],
        },
        "identifier_to_keep": {"user_alias": {"alias_name": "n", "alias_label": "l"}},
    }

    reply = api("/users/merge", {"merge_updates": [update]}, headers={"idempotency-key": "merge-1"})

    assert reply.status == 202
    assert reply.body == {"message": "success", "merge_updates_queued": 1, "errors": []}
    [envelope] = envelopes(sent)
    assert envelope.kind == "merge" and envelope.items[0].object == update
    assert [entry["DelaySeconds"] for entry in sent] == [FENCE]
    [record] = order_records(aws_stack)
    assert record["kind"] == "merge" and record["accepted_at"] == envelope.accepted_at
    assert record["user"] == user_digest(("email", "old@example.com"))
    assert record["keep"] == user_digest(("user_alias", "n", "l"))


def test_invalid_merge_updates_are_listed(api, aws_stack, sent):
    keep = {"external_id": "keep"}
    body = {
        "merge_updates": [
            {"identifier_to_merge": {"external_id": "old"}, "identifier_to_keep": keep},
            {"identifier_to_merge": {"external_id": "keep"}, "identifier_to_keep": keep},
            {"identifier_to_merge": {"external_id": "old"}, "identifier_to_keep": keep, "note": "x"},
            {"identifier_to_merge": {"email": "a@example.com"}, "identifier_to_keep": keep},  # no prioritization
            {"identifier_to_merge": {"external_id": "a", "braze_id": "b"}, "identifier_to_keep": keep},
            {"identifier_to_merge": {"braze_id": "b"}, "identifier_to_keep": keep},  # braze_id is not taken
            {"identifier_to_merge": {"external_id": "old"}, "identifier_to_keep": {"phone": "+15555550100"}},
        ]
    }

    reply = api("/users/merge", body)

    assert reply.status == 202 and reply.body["merge_updates_queued"] == 1
    assert [(e["index"], e["type"]) for e in reply.body["errors"]] == [
        (1, "MERGE_INTO_ITSELF"),
        (2, "INVALID_MERGE_UPDATE"),
        (3, "BAD_MERGE_IDENTIFIER"),
        (4, "BAD_MERGE_IDENTIFIER"),
        (5, "BAD_MERGE_IDENTIFIER"),
        (6, "BAD_MERGE_IDENTIFIER"),
    ]
    assert "identifier_to_keep" in reply.body["errors"][-1]["reason"]
    assert len(order_records(aws_stack)) == 1


# ---------------------------------------------------------------- the same bodies, Braze's sandbox


_SANDBOX = {
    "/users/delete": lambda body: _delete_request(body, 50)[2],
    "/users/alias/new": lambda body: _alias_request(body, 50, frozenset())[1],
    "/users/merge": lambda body: _merge_request(body, 50)[1],
}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/users/delete", {"external_ids": ["user-1", "user-2"]}),
        ("/users/delete", {"email_addresses": [EMAIL]}),
        ("/users/delete", {"phone_numbers": [PHONE]}),
        ("/users/delete", {"user_aliases": [ALIAS]}),
        ("/users/delete", {"external_ids": ["user-1"], "braze_ids": ["b"]}),
        ("/users/delete", {"external_ids": [f"u{i}" for i in range(51)]}),
        (
            "/users/delete",
            {"email_addresses": [{"email": "a@example.com", "prioritization": ["identified", "unidentified"]}]},
        ),
        ("/users/delete", {"external_ids": [""]}),
        ("/users/alias/new", {"user_aliases": [ALIAS, {**ALIAS, "external_id": "user-1"}]}),
        ("/users/alias/new", {"user_aliases": [{"alias_name": "n"}]}),
        ("/users/alias/new", {"user_aliases": [{**ALIAS, "alias_name": f"d{i}"} for i in range(51)]}),
        (
            "/users/merge",
            {
                "merge_updates": [
                    {"identifier_to_merge": {"external_id": "a"}, "identifier_to_keep": {"external_id": "b"}}
                ]
            },
        ),
        (
            "/users/merge",
            {
                "merge_updates": [
                    {
                        "identifier_to_merge": {"phone": "+1555", "prioritization": ["identified"]},
                        "identifier_to_keep": {"external_id": "b"},
                    }
                ]
            },
        ),
        ("/users/merge", {"merge_updates": [{"identifier_to_merge": {"external_id": "a"}}]}),
        (
            "/users/merge",
            {
                "merge_updates": [
                    {"identifier_to_merge": {"email": "a@example.com"}, "identifier_to_keep": {"external_id": "b"}}
                ]
            },
        ),
    ],
)
def test_the_api_accepts_what_brazes_sandbox_accepts_and_refuses_what_it_refuses(api, aws_stack, sent, path, body):
    """A body the sandbox (Braze's documented validation) takes whole is queued whole here; one it
    refuses is not queued whole (refused, or its bad items listed)."""
    braze_refusal = _SANDBOX[path](body)

    reply = api(path, body)

    if braze_refusal is None:
        assert reply.status == 202 and reply.body["errors"] == []
    else:
        assert braze_refusal.status == 400
        assert reply.status == 400 or reply.body["errors"]

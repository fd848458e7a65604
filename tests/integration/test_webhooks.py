"""POST /webhooks/{provider} end to end in-process: API Gateway event → handler → SQS, DynamoDB, S3 (moto)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import stripe as stripe_sdk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braze_forwarder import queue
from braze_forwarder.braze.validation import check_track_object
from tests.conftest import EVENTS, load_event, metric_values, use_function_environment
from tests.webhook_signing import (
    PADDLE_SAMPLE_SECRET,
    SIGNATURE_HEADERS,
    STRIPE_SAMPLE_SECRET,
    api_event,
    body_of,
    sign,
)

# Signature timestamps are checked against now, event and payment markers expire —
# make test runs these on other days (tests/clock.py).
pytestmark = pytest.mark.clock

SAMPLES = sorted(path.name for path in EVENTS.glob("webhook_*.json"))
STRIPE_OLD_SECRET = "whsec_rolledButStillActive0000000000000"


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def sample_body(name: str) -> dict[str, Any]:
    return json.loads(body_of(load_event(f"webhook_{name}.json")))


def put_secrets(stack, document: Any) -> None:
    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.refs["WebhookSecrets"], SecretString=json.dumps(document)
    )


@pytest.fixture
def hook(aws_stack, monkeypatch, lambda_context) -> Callable[..., Reply]:
    """POST a provider's event, signed as the provider signs it (now, with the sample secret)."""
    use_function_environment(monkeypatch, aws_stack, "IngestApiFunction")
    put_secrets(aws_stack, {"stripe": [STRIPE_SAMPLE_SECRET], "paddle": [PADDLE_SAMPLE_SECRET]})
    from functions.ingest_api import app

    def post(
        provider: str,
        body: str | dict[str, Any],
        *,
        signature: str | bool | None = True,
        secrets: list[str] | None = None,
        timestamp: int | None = None,
        base64_body: bool = False,
        headers: dict[str, str] | None = None,
        path_provider: str | None = None,
    ) -> Reply:
        text = body if isinstance(body, str) else json.dumps(body, indent=2)
        if signature is True:
            default = STRIPE_SAMPLE_SECRET if provider == "stripe" else PADDLE_SAMPLE_SECRET
            signature = sign(provider, text, secrets or [default], timestamp)
        event = api_event(path_provider or provider, text, signature or None, base64_body=base64_body)
        if path_provider:
            event["headers"][SIGNATURE_HEADERS.get(provider, "x")] = signature or ""
        event["headers"].update(headers or {})
        result = app.lambda_handler(event, lambda_context)
        return Reply(result["statusCode"], json.loads(result["body"]), result.get("headers", {}))

    return post


def queued(stack) -> list[queue.Envelope]:
    sqs = boto3.client("sqs")
    envelopes = []
    while True:
        messages = sqs.receive_message(QueueUrl=stack.refs["EventsQueue"], MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return envelopes
        for message in messages:
            envelopes.append(queue.decode(message["Body"]))
            sqs.delete_message(QueueUrl=stack.refs["EventsQueue"], ReceiptHandle=message["ReceiptHandle"])


def queued_objects(stack, array: str | None = None) -> list[dict[str, Any]]:
    return [i.object for e in queued(stack) for i in e.items if array is None or i.array == array]


def dedupe_records(stack) -> dict[str, dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=stack.refs["IdempotencyTable"])["Items"]
    return {item["id"]["S"]: item for item in items}


def kept(stack) -> list[tuple[str, dict[str, Any]]]:
    s3 = boto3.client("s3")
    bucket = stack.refs["RejectedObjectsBucket"]
    records = []
    for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        text = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode()
        records.extend((entry["Key"], json.loads(line)) for line in text.splitlines())
    return records


# ---------------------------------------------------------------- every sample, as the provider sends it


@pytest.mark.parametrize("name", SAMPLES)
def test_each_sample_event_is_verified_queued_once_and_valid_for_braze(hook, aws_stack, name):
    sample = load_event(name)
    provider = sample["pathParameters"]["provider"]
    body = body_of(sample)  # the exact bytes the provider signed
    before = queue.utc_now_iso()

    reply = hook(provider, body)

    assert reply.status == 200, reply.body
    assert reply.body["message"] == "queued"
    [envelope] = queued(aws_stack)
    assert envelope.source == provider and envelope.kind == "track"
    payload = json.loads(body)
    for item in envelope.items:
        assert check_track_object(item.array, item.object, len(queue.encode_object(item.object))) is None
        if item.array != "attributes":
            assert item.object["time"].startswith(("2026-11-22T07:38", "2026-11-22T07:39"))
    # The sender orders a user's values by the provider's event time, not by this (late) delivery.
    assert {i.object["time"] for i in envelope.items if i.array != "attributes"} == {envelope.received_at}
    # Deletes, aliases and merges are ordered against it by when the forwarder accepted it: now.
    assert before <= envelope.accepted_at <= queue.utc_now_iso()
    event_id = payload.get("id") or payload.get("event_id")
    assert dedupe_records(aws_stack)[f"webhook#{provider}#{event_id}"]["status"]["S"] == "COMPLETE"


def test_the_committed_samples_carry_a_valid_signature_for_the_sample_secret():
    # So that `sam local invoke` works once the sample is signed again for now (tests/webhook_signing.py).
    for name in SAMPLES:
        sample = load_event(name)
        provider = sample["pathParameters"]["provider"]
        header = sample["headers"][SIGNATURE_HEADERS[provider]]
        timestamp = int(header.split("=", 1)[1].split("," if provider == "stripe" else ";")[0])
        secret = STRIPE_SAMPLE_SECRET if provider == "stripe" else PADDLE_SAMPLE_SECRET
        assert sign(provider, body_of(sample), secret, timestamp) == header, name
    stripe_sample = load_event("webhook_stripe_invoice_paid.json")
    stripe_sdk.WebhookSignature.verify_header(
        body_of(stripe_sample), stripe_sample["headers"]["stripe-signature"], STRIPE_SAMPLE_SECRET
    )


def test_a_request_signed_by_the_official_stripe_library_is_accepted(hook, aws_stack):
    body = body_of(load_event("webhook_stripe_payment_intent_succeeded.json"))
    header = stripe_sdk.WebhookSignature.generate_signature_header(body, STRIPE_SAMPLE_SECRET)

    reply = hook("stripe", body, signature=header)

    assert reply.status == 200 and reply.body["message"] == "queued"
    [purchase] = queued_objects(aws_stack, "purchases")
    assert (purchase["external_id"], purchase["currency"], purchase["price"]) == ("user-1001", "EUR", 49.99)


@pytest.mark.parametrize(
    ("currency", "amount", "price"),
    [("jpy", 12000, 12000.0), ("krw", 55000, 55000.0), ("bhd", 12345, 12.345), ("kwd", 5120, 5.12)],
)
def test_zero_and_three_decimal_currencies_arrive_in_major_units(hook, aws_stack, currency, amount, price):
    body = sample_body("stripe_payment_intent_succeeded")
    body["data"]["object"].update(currency=currency, amount=amount, amount_received=amount)

    assert hook("stripe", body).status == 200

    [purchase] = queued_objects(aws_stack, "purchases")
    assert (purchase["currency"], purchase["price"]) == (currency.upper(), price)


def test_a_base64_body_is_decoded_before_the_signature_is_checked(hook, aws_stack):
    body = body_of(load_event("webhook_paddle_transaction_completed.json"))

    reply = hook("paddle", body, base64_body=True)

    assert reply.status == 200
    assert len(queued_objects(aws_stack, "purchases")) == 2


def test_the_signature_header_is_found_whatever_its_case(hook, aws_stack):
    body = body_of(load_event("webhook_stripe_payment_intent_succeeded.json"))
    header = sign("stripe", body, [STRIPE_SAMPLE_SECRET])

    reply = hook("stripe", body, signature=False, headers={"Stripe-Signature": header})

    assert reply.status == 200


# ---------------------------------------------------------------- once


def test_a_redelivery_answers_duplicate_and_queues_nothing(hook, aws_stack):
    body = body_of(load_event("webhook_stripe_invoice_paid.json"))
    first = hook("stripe", body)

    second = hook("stripe", body)  # Stripe's retry: same event id, new timestamp and signature

    assert first.status == second.status == 200
    assert second.body == {"message": "duplicate"}
    assert len(queued(aws_stack)) == 1
    record = dedupe_records(aws_stack)["webhook#stripe#evt_1QxSampleInvoice0003"]
    assert int(record["expiration"]["N"]) - time.time() > 6.9 * 24 * 3600  # kept 7 days by default


def test_checkout_and_its_payment_intent_count_the_money_once_whichever_comes_first(hook, aws_stack):
    checkout = sample_body("stripe_checkout_session_completed")
    intent = sample_body("stripe_payment_intent_succeeded")
    intent["id"] = "evt_3QxSamplePiOfCheckout"
    intent["data"]["object"]["id"] = checkout["data"]["object"]["payment_intent"]

    first = hook("stripe", intent)
    second = hook("stripe", checkout)

    assert first.body["message"] == "queued"
    assert second.status == 200 and second.body["message"] == "ignored"
    assert len(queued_objects(aws_stack, "purchases")) == 1


def test_an_async_checkout_counts_once_when_the_payment_succeeds(hook, aws_stack):
    completed = sample_body("stripe_checkout_session_completed")
    completed["data"]["object"]["payment_status"] = "unpaid"
    succeeded = sample_body("stripe_checkout_session_completed")
    succeeded.update(id="evt_1QxSampleAsyncOk0009", type="checkout.session.async_payment_succeeded")

    assert hook("stripe", completed).body["message"] == "ignored"
    assert hook("stripe", succeeded).body["message"] == "queued"

    assert [p["price"] for p in queued_objects(aws_stack, "purchases")] == [12000.0]


def test_an_invoice_and_its_payment_intent_count_once_on_older_api_versions(hook, aws_stack):
    invoice = sample_body("stripe_invoice_paid")
    invoice["data"]["object"]["payment_intent"] = "pi_3QxSampleInvoicePi"
    intent = sample_body("stripe_payment_intent_succeeded")
    intent["data"]["object"].update(id="pi_3QxSampleInvoicePi", invoice="in_1QxSampleInvoice0003")

    assert hook("stripe", intent).body["message"] == "ignored"
    assert hook("stripe", invoice).body["message"] == "queued"
    assert len(queued_objects(aws_stack, "purchases")) == 2  # one per invoice line, once


def _subscription_payment_on_a_new_api_version() -> tuple[dict[str, Any], dict[str, Any]]:
    """invoice.paid and the payment_intent.succeeded of the same money, as API versions from
    2025-03-31 send them: the PaymentIntent has no `invoice` field, the invoice no `payment_intent`."""
    invoice = sample_body("stripe_invoice_paid")
    bill = invoice["data"]["object"]
    assert "payment_intent" not in bill and "payments" not in bill
    intent = sample_body("stripe_payment_intent_succeeded")
    intent["id"] = "evt_3QxSampleInvoicePiBasil"
    intent["created"] = bill["status_transitions"]["paid_at"] + 1
    intent["data"]["object"].update(
        id="pi_3QxSampleInvoicePiBasil",
        customer=bill["customer"],
        currency=bill["currency"],
        amount=bill["amount_paid"],
        amount_received=bill["amount_paid"],
        description="Subscription update",
        metadata={},
    )
    assert "invoice" not in intent["data"]["object"]
    return invoice, intent


@pytest.mark.parametrize("intent_first", [True, False], ids=["intent-first", "invoice-first"])
def test_an_invoice_and_its_payment_intent_count_once_on_api_versions_from_2025_03_31(hook, aws_stack, intent_first):
    invoice, intent = _subscription_payment_on_a_new_api_version()
    first, second = (intent, invoice) if intent_first else (invoice, intent)

    assert hook("stripe", first).body["message"] == "queued"
    reply = hook("stripe", second)

    assert reply.status == 200 and reply.body["message"] == "ignored"
    purchases = queued_objects(aws_stack, "purchases")
    paid = invoice["data"]["object"]["amount_paid"] / 100
    assert round(sum(p["price"] * p.get("quantity", 1) for p in purchases), 2) in (paid, 30.0)  # once


def test_an_invoice_names_its_payment_intent_in_payments_when_stripe_includes_them(hook, aws_stack):
    invoice, intent = _subscription_payment_on_a_new_api_version()
    intent["created"] += 3600  # far apart: only the InvoicePayment links them
    invoice["data"]["object"]["payments"] = {
        "object": "list",
        "data": [
            {
                "object": "invoice_payment",
                "payment": {"type": "payment_intent", "payment_intent": "pi_3QxSampleInvoicePiBasil"},
            }
        ],
        "has_more": False,
    }

    assert hook("stripe", invoice).body["message"] == "queued"
    assert hook("stripe", intent).body["message"] == "ignored"


def test_the_same_amount_paid_by_one_customer_an_hour_apart_counts_twice(hook, aws_stack):
    invoice, intent = _subscription_payment_on_a_new_api_version()
    intent["created"] += 3600  # a one-off payment of the same amount, later: another payment

    assert hook("stripe", invoice).body["message"] == "queued"
    assert hook("stripe", intent).body["message"] == "queued"


def test_two_partial_refunds_each_carry_their_own_amount(hook, aws_stack):
    first = sample_body("stripe_charge_refunded")
    first["data"]["object"]["amount_refunded"] = 1000
    first["data"]["previous_attributes"]["amount_refunded"] = 0
    second = sample_body("stripe_charge_refunded")
    second["id"] = "evt_3QxSampleRefund0010"

    hook("stripe", first)
    hook("stripe", second)

    refunds = queued_objects(aws_stack, "events")
    assert [(r["properties"]["amount"], r["properties"]["total_refunded"]) for r in refunds] == [
        (10.0, 10.0),
        (19.99, 29.99),
    ]


def test_a_delivery_in_progress_elsewhere_is_409_and_an_abandoned_one_is_taken_over(hook, aws_stack):
    body = sample_body("stripe_payment_intent_succeeded")
    table, now = aws_stack.refs["IdempotencyTable"], int(time.time())
    marker = {
        "id": {"S": "webhook#stripe#evt_3QxSampleBrazeFwd0001"},
        "status": {"S": "IN_PROGRESS"},
        "owner": {"S": "another-invocation"},
        "expiration": {"N": str(now + 3600)},
    }
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=table, Item={**marker, "in_progress_until": {"N": str(now + 30)}})

    busy = hook("stripe", body)

    assert (busy.status, busy.body["type"], busy.headers.get("Retry-After")) == (409, "event_in_progress", "5")
    dynamodb.put_item(
        TableName=table, Item={**marker, "in_progress_until": {"N": str(now - 1)}}
    )  # that invocation died
    assert hook("stripe", body).body["message"] == "queued"
    assert len(queued(aws_stack)) == 1


def test_queue_down_is_503_and_leaves_no_marker_so_the_retry_succeeds(hook, aws_stack):
    sqs = boto3.client("sqs")
    url = aws_stack.refs["EventsQueue"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    sqs.delete_queue(QueueUrl=url)
    body = sample_body("stripe_checkout_session_completed")

    down = hook("stripe", body)

    assert down.status == 503
    assert (down.body["type"], down.headers.get("Retry-After")) == ("queue_unavailable", "5")
    assert dedupe_records(aws_stack) == {}  # neither the event marker nor the payment claim
    sqs.create_queue(QueueName=url.rsplit("/", 1)[1], Attributes=attributes)
    retry = hook("stripe", body)
    assert retry.status == 200 and retry.body["message"] == "queued"
    assert len(queued_objects(aws_stack, "purchases")) == 1


def test_when_marking_complete_fails_after_queueing_the_answer_is_still_200(hook, aws_stack, monkeypatch):
    from braze_forwarder.ingest.webhooks import once

    real = once.complete_event

    def broken(*args, **kwargs):
        monkeypatch.setattr(once.aws.client("dynamodb"), "update_item", _raise_client_error)
        return real(*args, **kwargs)

    monkeypatch.setattr(once, "complete_event", broken)

    reply = hook("stripe", sample_body("stripe_payment_intent_succeeded"))

    assert reply.status == 200 and reply.body["message"] == "queued"
    assert len(queued(aws_stack)) == 1


def test_two_events_of_one_payment_at_the_same_moment_is_409_and_nothing_stays_claimed(hook, aws_stack, monkeypatch):
    from botocore.exceptions import ClientError

    from braze_forwarder import aws

    def conflict(**_kwargs):
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                "CancellationReasons": [{"Code": "TransactionConflict"}],
            },
            "TransactWriteItems",
        )

    monkeypatch.setattr(aws.client("dynamodb"), "transact_write_items", conflict)

    reply = hook("stripe", sample_body("stripe_checkout_session_completed"))

    assert (reply.status, reply.body["type"], reply.headers.get("Retry-After")) == (409, "payment_in_progress", "5")
    assert dedupe_records(aws_stack) == {} and queued(aws_stack) == []


def test_the_dedupe_store_down_is_503_and_nothing_is_queued(hook, aws_stack, monkeypatch):
    from braze_forwarder import aws

    monkeypatch.setattr(aws.client("dynamodb"), "put_item", _raise_client_error)

    reply = hook("stripe", sample_body("stripe_payment_intent_succeeded"))

    assert (reply.status, reply.body["type"]) == (503, "dedupe_store_unavailable")
    assert queued(aws_stack) == []


def _raise_client_error(**_kwargs):
    from botocore.exceptions import ClientError

    raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "UpdateItem")


# ---------------------------------------------------------------- secrets


def test_a_rolled_secret_two_signatures_and_two_secrets(hook, aws_stack):
    put_secrets(aws_stack, {"stripe": [STRIPE_SAMPLE_SECRET, STRIPE_OLD_SECRET], "paddle": []})
    body = sample_body("stripe_payment_intent_succeeded")

    both = hook("stripe", body, secrets=[STRIPE_SAMPLE_SECRET, STRIPE_OLD_SECRET])
    body["id"] = "evt_3QxSampleSignedOld0011"
    body["data"]["object"]["id"] = "pi_3QxSampleAnotherPayment"
    old_only = hook("stripe", body, secrets=[STRIPE_OLD_SECRET])

    assert both.status == old_only.status == 200
    assert len(queued(aws_stack)) == 2


def test_a_secret_added_after_the_cache_was_filled_works_at_once(hook, aws_stack):
    assert hook("stripe", sample_body("stripe_invoice_paid")).status == 200  # the secret is now cached
    put_secrets(aws_stack, {"stripe": [STRIPE_SAMPLE_SECRET, "whsec_rolledJustNow"]})

    reply = hook("stripe", sample_body("stripe_payment_intent_succeeded"), secrets=["whsec_rolledJustNow"])

    assert reply.status == 200


def test_a_provider_without_secrets_refuses_as_unsigned(hook, aws_stack):
    put_secrets(aws_stack, {"stripe": [STRIPE_SAMPLE_SECRET]})  # no "paddle" key

    reply = hook("paddle", sample_body("paddle_subscription_created"))

    assert (reply.status, reply.body["type"]) == (401, "invalid_signature")


def test_an_unreadable_secret_is_503_so_the_provider_retries(hook, aws_stack):
    put_secrets(aws_stack, {"stripe": "whsec_not_a_list"})

    reply = hook("stripe", sample_body("stripe_payment_intent_succeeded"))

    assert (reply.status, reply.body["type"]) == (503, "webhook_secrets_unavailable")
    assert reply.headers.get("Retry-After")


# ---------------------------------------------------------------- refused


@pytest.mark.parametrize("provider", ["stripe", "paddle"])
@pytest.mark.parametrize(("skew", "expected"), [(-400, "stale_timestamp"), (400, "future_timestamp")])
def test_stale_and_future_timestamps_are_401(hook, aws_stack, provider, skew, expected):
    body = body_of(
        load_event(f"webhook_{provider}_{'invoice_paid' if provider == 'stripe' else 'subscription_created'}.json")
    )

    reply = hook(provider, body, timestamp=int(time.time()) + skew)

    assert (reply.status, reply.body["type"]) == (401, expected)
    assert queued(aws_stack) == []


@pytest.mark.parametrize(
    ("provider", "signature", "status", "expected"),
    [
        ("stripe", "t=1795333101,v1=" + "0" * 64, 401, "invalid_signature"),
        ("stripe", "sha256=deadbeef", 400, "malformed_signature_header"),
        ("stripe", None, 401, "missing_signature"),
        ("paddle", "ts=1795333101;h1=" + "0" * 64, 401, "invalid_signature"),
        ("paddle", "ts=1795333101,h1=00", 400, "malformed_signature_header"),
        ("paddle", None, 401, "missing_signature"),
    ],
)
def test_wrong_malformed_or_missing_signatures_are_refused_with_a_type_and_reason(
    hook, aws_stack, provider, signature, status, expected
):
    body = sample_body("stripe_payment_intent_succeeded" if provider == "stripe" else "paddle_transaction_completed")

    reply = hook(provider, body, signature=signature)

    assert (reply.status, reply.body["type"]) == (status, expected)
    assert reply.body["reason"]
    assert queued(aws_stack) == [] and dedupe_records(aws_stack) == {}


def test_a_non_ascii_signature_is_a_401_not_a_500(hook, aws_stack):
    body = body_of(load_event("webhook_stripe_payment_intent_succeeded.json"))

    reply = hook("stripe", body, signature=f"t={int(time.time())},v1=é")

    assert (reply.status, reply.body["type"]) == (401, "invalid_signature")


def test_unknown_provider_is_404_json(hook, aws_stack):
    reply = hook("stripe", sample_body("stripe_payment_intent_succeeded"), path_provider="paypal")

    assert (reply.status, reply.body["type"]) == (404, "unknown_provider")
    assert "/webhooks/" in reply.body["reason"]


def test_an_event_of_the_other_mode_is_400(hook, aws_stack, monkeypatch):
    monkeypatch.setenv("STRIPE_LIVE_MODE", "true")

    reply = hook("stripe", sample_body("stripe_payment_intent_succeeded"))  # a test-mode event

    assert (reply.status, reply.body["type"]) == (400, "livemode_mismatch")
    assert queued(aws_stack) == []


def test_no_bearer_key_is_needed_but_bearer_routes_still_want_one(hook, aws_stack):
    assert hook("stripe", sample_body("stripe_payment_intent_succeeded")).status == 200
    assert hook("stripe", {"events": []}, path_provider="../users/track").status == 404


# ---------------------------------------------------------------- kept, ignored


def test_an_unmapped_type_is_200_ignored_and_counted(hook, aws_stack, capsys):
    body = sample_body("stripe_payment_intent_succeeded")
    body["type"] = "payment_intent.created"

    reply = hook("stripe", body)

    assert reply.status == 200
    assert reply.body["message"] == "ignored" and "payment_intent.created" in reply.body["reason"]
    assert queued(aws_stack) == []
    printed = capsys.readouterr().out
    assert metric_values(printed, "WebhookEventsIgnored") == [1.0]
    [line] = [json.loads(x) for x in printed.splitlines() if '"WebhookEventsIgnored"' in x]
    assert line["provider"] == "stripe"


def test_an_event_without_a_user_is_kept_as_rejected_with_the_reason(hook, aws_stack):
    body = sample_body("stripe_payment_intent_succeeded")
    body["data"]["object"].update(metadata={}, customer=None)

    reply = hook("stripe", body)
    again = hook("stripe", body)

    assert reply.status == 200 and reply.body["message"] == "kept"
    assert again.body == {"message": "duplicate"}
    assert queued(aws_stack) == []
    [(key, record)] = kept(aws_stack)
    assert key.startswith("rejected/webhooks/")
    assert record["reason"]["type"] == "USER_NOT_FOUND"
    assert "braze_external_id" in record["reason"]["message"]
    assert record["origin"] == {
        "provider": "stripe",
        "event_id": "evt_3QxSampleBrazeFwd0001",
        "event_type": "payment_intent.succeeded",
        "array": "purchases",
    }
    assert record["object"]["price"] == 49.99 and "external_id" not in record["object"]


def test_a_verified_event_whose_shape_cannot_be_read_is_kept_not_refused(hook, aws_stack):
    body = sample_body("paddle_transaction_completed")
    body["data"]["details"]["line_items"] = "not a list"

    reply = hook("paddle", body)

    assert reply.status == 200 and reply.body["message"] == "kept"
    [(_key, record)] = kept(aws_stack)
    assert record["reason"]["type"] == "UNREADABLE_EVENT" and "line_items" in record["reason"]["message"]


def test_an_object_braze_would_refuse_is_kept_with_the_reason_and_not_sent(hook, aws_stack):
    body = sample_body("stripe_payment_intent_succeeded")
    body["data"]["object"]["currency"] = "xyz"  # three letters, but no ISO 4217 currency

    reply = hook("stripe", body)

    assert reply.status == 200 and reply.body["message"] == "kept"
    assert queued(aws_stack) == []
    [(_key, record)] = kept(aws_stack)
    assert record["reason"]["type"] == "BAD_CURRENCY"


def test_the_rejected_store_down_is_503_and_nothing_is_marked(hook, aws_stack, monkeypatch):
    from braze_forwarder import rejects

    def unavailable(*_args, **_kwargs):
        raise OSError("S3 is unreachable")

    monkeypatch.setattr(rejects, "keep", unavailable)
    body = sample_body("stripe_payment_intent_succeeded")
    body["data"]["object"].update(metadata={}, customer=None)

    reply = hook("stripe", body)

    assert (reply.status, reply.body["type"]) == (503, "rejected_store_unavailable")
    assert dedupe_records(aws_stack) == {}


# ---------------------------------------------------------------- logs


def test_no_secret_signature_email_phone_name_or_address_reaches_the_logs(hook, aws_stack, logs):
    private = [
        STRIPE_SAMPLE_SECRET,
        PADDLE_SAMPLE_SECRET,
        STRIPE_OLD_SECRET,
        "ada.lovelace@example.com",
        "grace.hopper@example.com",
        "linus@example.com",
        "+447700900123",
        "+15555550123",
        "Ada Lovelace",
        "Grace Hopper",
        "Joan Clarke",
        "Hedy Lamarr",
        "Linus Example",
        "St James",
        "SW1Y 4JH",
        "sampleClientSecret",
    ]
    signatures = []
    for name in SAMPLES:
        provider = name.split("_")[1]
        body = body_of(load_event(name))
        signature = sign(provider, body, STRIPE_SAMPLE_SECRET if provider == "stripe" else PADDLE_SAMPLE_SECRET)
        signatures.append(signature.split("1=", 1)[1][:64])
        hook(provider, body, signature=signature)
        hook(provider, body, signature=signature)  # duplicate
    hook("stripe", body_of(load_event(SAMPLES[-1])), secrets=[STRIPE_OLD_SECRET])  # refused, then re-read
    hook("stripe", body_of(load_event(SAMPLES[-1])), timestamp=int(time.time()) - 900)
    unknown_user = sample_body("stripe_charge_refunded")
    unknown_user["data"]["object"].update(customer=None, id="ch_unknown")
    unknown_user["id"] = "evt_unknownUser"
    hook("stripe", unknown_user)

    output = logs()
    assert "evt_3QxSampleBrazeFwd0001" in output  # event ids are logged…
    for value in [*private, *signatures]:
        assert value not in output, value  # …nothing secret or personal is


# ---------------------------------------------------------------- any input


_HEADER_NAMES = st.sampled_from(["stripe-signature", "Stripe-Signature", "paddle-signature", "content-type", "x-any"])


@given(
    provider=st.sampled_from(["stripe", "paddle", "STRIPE", "unknown", "stripe.", "%73tripe"]),
    body=st.binary(max_size=2000),
    headers=st.dictionaries(_HEADER_NAMES, st.text(max_size=200), max_size=4),
    base64_body=st.booleans(),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
def test_arbitrary_requests_get_a_4xx_and_queue_nothing(
    aws_stack, monkeypatch, lambda_context, provider, body, headers, base64_body
):
    import base64

    use_function_environment(monkeypatch, aws_stack, "IngestApiFunction")
    put_secrets(aws_stack, {"stripe": [STRIPE_SAMPLE_SECRET], "paddle": [PADDLE_SAMPLE_SECRET]})
    from functions.ingest_api import app

    text = base64.b64encode(body).decode() if base64_body else body.decode("utf-8", "replace")
    event = api_event(provider, text, None, base64_body=False)
    event["isBase64Encoded"] = base64_body
    event["headers"].update(headers)

    result = app.lambda_handler(event, lambda_context)

    assert 400 <= result["statusCode"] < 500, result
    assert json.loads(result["body"])["type"]
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=aws_stack.refs["EventsQueue"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_the_samples_directory_holds_one_sample_per_main_mapped_type():
    names = {Path(name).stem for name in SAMPLES}
    assert {
        "webhook_stripe_payment_intent_succeeded",
        "webhook_stripe_checkout_session_completed",
        "webhook_stripe_invoice_paid",
        "webhook_stripe_charge_refunded",
        "webhook_stripe_customer_subscription_updated",
        "webhook_stripe_payment_intent_payment_failed",
        "webhook_stripe_invoice_payment_failed",
        "webhook_paddle_transaction_completed",
        "webhook_paddle_subscription_created",
    } <= names

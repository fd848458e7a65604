"""What each Stripe and Paddle event becomes in Braze: purchases, events, users, or why nothing."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from braze_forwarder import queue
from braze_forwarder.braze.validation import check_track_object
from braze_forwarder.config import WebhookSettings
from braze_forwarder.ingest.webhooks import PROVIDERS
from braze_forwarder.ingest.webhooks.base import Ignored, Mapped, MappingError, ProviderEvent, UserNotFound
from braze_forwarder.ingest.webhooks.paddle import _event as paddle_event
from braze_forwarder.ingest.webhooks.stripe import _event as stripe_event
from tests.conftest import load_event
from tests.webhook_signing import body_of

SETTINGS = WebhookSettings(
    events_queue_url="q",
    ingest_keys_secret_arn="k",
    idempotency_table="t",
    user_order_table="order",
    webhook_secrets_arn="w",
    rejected_bucket="b",
)
STRIPE_ALIAS = {"user_alias": {"alias_name": "cus_SampleAda0001", "alias_label": "stripe_customer_id"}}


def sample(name: str) -> dict[str, Any]:
    return json.loads(body_of(load_event(f"webhook_{name}.json")))


def event_of(provider: str, payload: dict[str, Any]) -> ProviderEvent:
    return (stripe_event if provider == "stripe" else paddle_event)(payload)


def mapped(provider: str, payload: dict[str, Any], settings: WebhookSettings = SETTINGS):
    return PROVIDERS[provider].map(event_of(provider, payload), settings)


def stripe_object(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = sample(f"stripe_{name}")
    return payload, payload["data"]["object"]


def only(outcome, array: str) -> dict[str, Any]:
    assert isinstance(outcome, Mapped), outcome
    [found] = [o.object for o in outcome.objects if o.array == array]
    return found


def assert_valid_for_braze(outcome) -> None:
    for braze_object in outcome.objects:
        encoded = queue.encode_object(braze_object.object)
        assert check_track_object(braze_object.array, braze_object.object, len(encoded)) is None, braze_object


# ---------------------------------------------------------------- Stripe purchases


def test_payment_intent_succeeded_is_one_purchase_in_major_units_for_the_metadata_user():
    outcome = mapped("stripe", sample("stripe_payment_intent_succeeded"))

    purchase = only(outcome, "purchases")
    assert purchase == {
        "external_id": "user-1001",
        "product_id": "annual_pass",
        "currency": "EUR",
        "price": 49.99,
        "quantity": 1,
        "time": "2026-11-22T07:38:20Z",
        "properties": {"provider": "stripe", "payment_intent": "pi_3QxSampleBrazeFwd0001"},
    }
    assert outcome.payment_keys == ("pi_3QxSampleBrazeFwd0001",)
    assert_valid_for_braze(outcome)


@pytest.mark.parametrize(
    ("currency", "amount", "price"),
    [
        ("jpy", 12000, 12000.0),
        ("krw", 55000, 55000.0),
        ("bhd", 12345, 12.345),
        ("kwd", 5120, 5.12),
        ("usd", 1999, 19.99),
    ],
)
def test_zero_and_three_decimal_currencies(currency, amount, price):
    payload, intent = stripe_object("payment_intent_succeeded")
    intent.update(currency=currency, amount=amount, amount_received=amount)

    purchase = only(mapped("stripe", payload), "purchases")

    assert (purchase["currency"], purchase["price"]) == (currency.upper(), price)


def test_a_payment_intent_that_pays_an_invoice_is_left_to_invoice_paid():
    payload, intent = stripe_object("payment_intent_succeeded")
    intent["invoice"] = "in_1QxSampleInvoice0003"  # API versions before 2025-03-31

    assert isinstance(mapped("stripe", payload), Ignored)


def test_user_precedence_metadata_key_then_client_reference_id_then_customer_alias():
    payload, session = stripe_object("checkout_session_completed")
    session["metadata"]["braze_external_id"] = "from-metadata"
    assert only(mapped("stripe", payload), "purchases")["external_id"] == "from-metadata"

    del session["metadata"]["braze_external_id"]
    assert only(mapped("stripe", payload), "purchases")["external_id"] == "user-1002"

    session["client_reference_id"] = None
    session["customer"] = "cus_SampleGrace0002"
    outcome = mapped("stripe", payload)
    alias = {"alias_name": "cus_SampleGrace0002", "alias_label": "stripe_customer_id"}
    assert outcome.objects[0].array == "attributes"  # creates the alias-only profile before the purchase
    assert outcome.objects[0].object == {"user_alias": alias, "_update_existing_only": False}
    assert only(outcome, "purchases")["user_alias"] == alias
    assert_valid_for_braze(outcome)


def test_the_metadata_key_is_a_setting():
    payload, intent = stripe_object("payment_intent_succeeded")
    intent["metadata"] = {"app_user_id": "u-77"}

    outcome = mapped("stripe", payload, dataclasses.replace(SETTINGS, stripe_user_metadata_key="app_user_id"))

    assert only(outcome, "purchases")["external_id"] == "u-77"


def test_no_user_anywhere_is_user_not_found_with_the_objects_unaddressed():
    payload, intent = stripe_object("payment_intent_succeeded")
    intent.update(metadata={}, customer=None)

    outcome = mapped("stripe", payload)

    assert isinstance(outcome, UserNotFound)
    assert "metadata.braze_external_id" in outcome.reason
    [purchase] = outcome.objects
    assert purchase.array == "purchases" and "external_id" not in purchase.object and purchase.object["price"] == 49.99


def test_checkout_completed_and_paid_is_one_purchase_keyed_by_its_payment_intent():
    outcome = mapped("stripe", sample("stripe_checkout_session_completed"))

    purchase = only(outcome, "purchases")
    assert (purchase["product_id"], purchase["currency"], purchase["price"]) == ("concert_ticket", "JPY", 12000.0)
    assert outcome.payment_keys == ("pi_3QxSampleCheckout0002",)
    assert_valid_for_braze(outcome)


def test_checkout_with_invoice_creation_claims_the_invoice_too():
    payload, session = stripe_object("checkout_session_completed")
    session["invoice"] = "in_1QxPostPayment"

    assert mapped("stripe", payload).payment_keys == ("pi_3QxSampleCheckout0002", "in_1QxPostPayment")


def test_unpaid_checkout_waits_for_async_payment_succeeded():
    payload, session = stripe_object("checkout_session_completed")
    session["payment_status"] = "unpaid"
    assert isinstance(mapped("stripe", payload), Ignored)

    session["payment_status"] = "paid"
    payload["type"] = "checkout.session.async_payment_succeeded"
    assert only(mapped("stripe", payload), "purchases")["price"] == 12000.0


@pytest.mark.parametrize(
    ("mode", "status"), [("subscription", "paid"), ("setup", "no_payment_required"), ("payment", "no_payment_required")]
)
def test_checkouts_without_one_off_money_are_ignored(mode, status):
    payload, session = stripe_object("checkout_session_completed")
    session.update(mode=mode, payment_status=status)

    assert isinstance(mapped("stripe", payload), Ignored)


def test_invoice_paid_is_one_purchase_per_line_with_its_discounts_and_exclusive_tax():
    outcome = mapped("stripe", sample("stripe_invoice_paid"))

    purchases = [o.object for o in outcome.objects if o.array == "purchases"]
    assert [(p["product_id"], p["price"], p["quantity"], p["properties"]["quantity"]) for p in purchases] == [
        ("prod_SamplePremium", 21.6, 1, 2),
        ("prod_SampleLossless", 10.8, 1, 1),
    ]
    assert round(sum(p["price"] for p in purchases), 2) == 32.40  # amount_paid
    assert {p["external_id"] for p in purchases} == {"user-1003"}  # subscription metadata
    assert outcome.payment_keys == ("in_1QxSampleInvoice0003",)
    assert_valid_for_braze(outcome)


def test_invoice_paid_in_the_shape_before_2025_03_31():
    payload, invoice = stripe_object("invoice_paid")
    for line in invoice["lines"]["data"]:
        line.pop("pricing"), line.pop("taxes")
        line["price"] = {"id": "price_legacy", "product": "prod_Legacy"}
        line["tax_amounts"] = [{"amount": 100, "inclusive": False}, {"amount": 50, "inclusive": True}]
        line["discount_amounts"] = [{"amount": 200, "discount": "di_1"}]
    invoice.pop("parent")
    invoice.update(subscription="sub_legacy", subscription_details={"metadata": {"braze_external_id": "legacy-user"}})
    invoice["payment_intent"] = "pi_legacy"

    outcome = mapped("stripe", payload)

    first = next(o.object for o in outcome.objects if o.array == "purchases")
    assert (first["product_id"], first["price"], first["external_id"]) == ("prod_Legacy", 19.0, "legacy-user")
    assert first["properties"]["subscription"] == "sub_legacy"
    assert outcome.payment_keys == ("in_1QxSampleInvoice0003", "pi_legacy")


def test_an_invoice_with_more_lines_than_the_event_lists_is_one_purchase_of_the_amount_paid():
    payload, invoice = stripe_object("invoice_paid")
    invoice["lines"]["has_more"] = True

    purchase = only(mapped("stripe", payload), "purchases")

    assert (purchase["product_id"], purchase["price"]) == ("stripe_invoice", 32.4)


def test_an_invoice_that_took_no_money_is_ignored():
    payload, invoice = stripe_object("invoice_paid")
    invoice["amount_paid"] = 0

    assert isinstance(mapped("stripe", payload), Ignored)


# ---------------------------------------------------------------- Stripe events


def test_charge_refunded_carries_what_this_event_refunded_not_the_cumulative_total():
    outcome = mapped("stripe", sample("stripe_charge_refunded"))

    refund = only(outcome, "events")
    assert refund["name"] == "payment_refunded"
    assert refund["properties"]["amount"] == 19.99  # 29.99 refunded so far, 10.00 of it earlier
    assert refund["properties"]["total_refunded"] == 29.99
    assert refund["user_alias"] == STRIPE_ALIAS["user_alias"]
    assert_valid_for_braze(outcome)


def test_a_first_refund_without_previous_attributes_is_the_whole_amount_refunded():
    payload, _charge = stripe_object("charge_refunded")
    del payload["data"]["previous_attributes"]

    assert only(mapped("stripe", payload), "events")["properties"]["amount"] == 29.99


def test_a_refund_event_that_refunds_nothing_new_is_ignored():
    payload, charge = stripe_object("charge_refunded")
    payload["data"]["previous_attributes"]["amount_refunded"] = charge["amount_refunded"]

    assert isinstance(mapped("stripe", payload), Ignored)


@pytest.mark.parametrize(
    ("event_type", "name"),
    [
        ("customer.subscription.created", "subscription_created"),
        ("customer.subscription.updated", "subscription_updated"),
        ("customer.subscription.deleted", "subscription_canceled"),
    ],
)
def test_subscription_lifecycle_becomes_custom_events(event_type, name):
    payload = sample("stripe_customer_subscription_updated")
    payload["type"] = event_type

    outcome = mapped("stripe", payload)

    event = only(outcome, "events")
    assert (event["name"], event["external_id"]) == (name, "user-1003")
    assert event["properties"]["product_id"] == "prod_SamplePremium"
    if event_type.endswith("updated"):
        assert event["properties"]["previous_status"] == "trialing"
    assert_valid_for_braze(outcome)


def test_payment_failures_become_custom_events_without_billing_details():
    intent_failed = only(mapped("stripe", sample("stripe_payment_intent_payment_failed")), "events")
    invoice_failed = only(mapped("stripe", sample("stripe_invoice_payment_failed")), "events")

    assert intent_failed["name"] == "payment_failed"
    assert intent_failed["properties"]["decline_code"] == "insufficient_funds"
    assert "Joan" not in json.dumps(intent_failed)
    assert invoice_failed["name"] == "invoice_payment_failed"
    assert invoice_failed["properties"]["attempt_count"] == 2
    assert invoice_failed["properties"]["amount_due"] == 32.4


def test_every_other_type_is_ignored_with_a_reason():
    payload = sample("stripe_payment_intent_succeeded")
    payload["type"] = "payment_intent.created"

    outcome = mapped("stripe", payload)

    assert isinstance(outcome, Ignored) and "payment_intent.created" in outcome.reason


def test_an_unreadable_amount_is_a_mapping_error_naming_the_field_not_the_value():
    payload, intent = stripe_object("payment_intent_succeeded")
    intent["amount_received"] = "49.99"

    with pytest.raises(MappingError, match="amount_received"):
        mapped("stripe", payload)


# ---------------------------------------------------------------- Paddle


def test_transaction_completed_is_one_purchase_per_line_item_with_what_the_customer_paid():
    outcome = mapped("paddle", sample("paddle_transaction_completed"))

    purchases = [o.object for o in outcome.objects if o.array == "purchases"]
    assert [(p["product_id"], p["currency"], p["price"], p["properties"]["quantity"]) for p in purchases] == [
        ("pro_01jsampleteamplan000000001", "EUR", 42.84, 3),
        ("pro_01jsamplestorage00000000001", "EUR", 58.31, 1),
    ]
    assert {p["external_id"] for p in purchases} == {"user-2001"}
    assert {p["time"] for p in purchases} == {"2026-11-22T07:39:12.345Z"}
    assert_valid_for_braze(outcome)


@pytest.mark.parametrize(
    ("currency", "total", "price"), [("JPY", "1500", 1500.0), ("KRW", "55000", 55000.0), ("KWD", "5120", 5.12)]
)
def test_paddle_zero_and_three_decimal_currencies(currency, total, price):
    payload = sample("paddle_transaction_completed")
    data = payload["data"]
    data["currency_code"] = currency
    data["details"]["line_items"] = data["details"]["line_items"][:1]
    data["details"]["line_items"][0]["totals"]["total"] = total

    assert only(mapped("paddle", payload), "purchases")["price"] == price


def test_paddle_user_is_custom_data_then_the_customer_as_an_alias():
    payload = sample("paddle_transaction_completed")
    payload["data"]["custom_data"] = None

    outcome = mapped("paddle", payload)

    alias = {"alias_name": "ctm_01jsamplecustomer0000000001", "alias_label": "paddle_customer_id"}
    assert outcome.objects[0].object == {"user_alias": alias, "_update_existing_only": False}
    payload["data"]["customer_id"] = None
    assert isinstance(mapped("paddle", payload), UserNotFound)


@pytest.mark.parametrize(
    "action", ["created", "activated", "updated", "canceled", "past_due", "paused", "resumed", "trialing"]
)
def test_paddle_subscription_events_become_custom_events(action):
    payload = copy.deepcopy(sample("paddle_subscription_created"))
    payload["event_type"] = f"subscription.{action}"

    outcome = mapped("paddle", payload)

    event = only(outcome, "events")
    assert (event["name"], event["external_id"]) == (f"subscription_{action}", "user-2001")
    assert event["properties"]["product_id"] == "pro_01jsampleteamplan000000001"
    assert_valid_for_braze(outcome)


@pytest.mark.parametrize("event_type", ["transaction.paid", "customer.updated", "subscription.unknown_action"])
def test_other_paddle_events_are_ignored(event_type):
    payload = sample("paddle_transaction_completed")
    payload["event_type"] = event_type

    assert isinstance(mapped("paddle", payload), Ignored)


def test_a_paddle_transaction_that_took_no_money_is_ignored():
    payload = sample("paddle_transaction_completed")
    payload["data"]["details"]["totals"]["total"] = "0"

    assert isinstance(mapped("paddle", payload), Ignored)

"""Paddle Billing: `Paddle-Signature` verification and the mapping of Paddle events to Braze objects.

Verification (developer.paddle.com/webhooks/signature-verification; WEBHOOKS_AND_RELIABILITY.md §3):
the header is `ts=<unix seconds>;h1=<hex>` (several `h1` while a secret is rotated); the signed text
is `{ts}:{raw body}`, HMAC-SHA256 keyed with the notification destination's secret
(`pdl_ntfset_...`). Paddle's SDKs allow 5 seconds of age and check only the past side; the window
here is a setting (PADDLE_TOLERANCE_SECONDS) and applies both ways. Whether a retry keeps its
first `ts` is not settled (research note, open questions): the default is 300 s, and replays of
the same event within the dedupe TTL are refused by event id anyway.

Paddle events carry no livemode: sandbox and live are separate accounts with separate notification
destinations and secrets, so a sandbox event cannot verify against a live secret.

Mapping: transaction.completed becomes one purchase per line item (`details.line_items`, its
`totals.total`: what the customer paid for the line, discount and tax included); subscription.*
events become custom events named like Stripe's (subscription_created, subscription_canceled, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from braze_forwarder.config import WebhookSettings
from braze_forwarder.ingest.webhooks import money
from braze_forwarder.ingest.webhooks.base import (
    EVENT_ID,
    EVENT_TYPE,
    BrazeObject,
    Ignored,
    MappingError,
    Outcome,
    ProviderEvent,
    TimestampedHmac,
    User,
    dig,
    event_object,
    for_user,
    invalid_event,
    iso_from_rfc3339,
    object_id,
    purchase_object,
    short_text,
    text,
)

NAME = "paddle"
# The header's shape, the signed payload and the tolerance: the rest of verification is base's.
SIGNATURE = TimestampedHmac(
    header="Paddle-Signature",
    separator=";",
    timestamp_key="ts",
    signature_key="h1",
    joiner=b":",
    tolerance_setting="paddle_tolerance_seconds",
)
HEADER = SIGNATURE.header
ALIAS_LABEL = "paddle_customer_id"
SUBSCRIPTION_EVENTS = frozenset(
    {"created", "activated", "updated", "canceled", "past_due", "paused", "resumed", "trialing", "imported"}
)


class Paddle:
    name = NAME
    signature = SIGNATURE

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, settings: WebhookSettings
    ) -> ProviderEvent:
        return _event(self.signature.verified(body, headers, secrets, now, settings))

    def expected_livemode(self, settings: WebhookSettings) -> bool | None:
        return None

    def map(self, event: ProviderEvent, settings: WebhookSettings) -> Outcome:
        data: dict[str, Any] = event.payload["data"]
        if event.type == "transaction.completed":
            return _transaction_completed(event, data, settings)
        entity, _, action = event.type.partition(".")
        if entity == "subscription" and action in SUBSCRIPTION_EVENTS:
            return _subscription(event, data, settings, action)
        return Ignored(f"{event.type} is not an event this forwarder sends to Braze")


PROVIDER = Paddle()


def _event(document: Any) -> ProviderEvent:
    if type(document) is not dict:
        raise invalid_event("the body is not a Paddle notification")
    event_id, event_type = document.get("event_id"), document.get("event_type")
    occurred_at, data = document.get("occurred_at"), document.get("data")
    if not (isinstance(event_id, str) and EVENT_ID.fullmatch(event_id)):
        raise invalid_event("the notification has no valid event_id")
    if not (isinstance(event_type, str) and EVENT_TYPE.fullmatch(event_type)):
        raise invalid_event("the notification has no valid event_type")
    time = iso_from_rfc3339(occurred_at) if isinstance(occurred_at, str) else None
    if time is None:
        raise invalid_event("the notification's occurred_at is not an RFC 3339 date-time")
    if not isinstance(data, dict):
        raise invalid_event("the notification has no data object")
    return ProviderEvent(NAME, event_id, event_type, None, time, document)


def _user(data: dict[str, Any], settings: WebhookSettings) -> User | None:
    """The Braze user: custom_data's key first, then the Paddle customer as an alias."""
    external_id = text(dig(data, "custom_data", settings.paddle_user_custom_data_key))
    if external_id is not None:
        return User.external_id(external_id)
    customer = text(data.get("customer_id"))
    return User.alias(customer, ALIAS_LABEL) if customer is not None else None


def _not_found(event: ProviderEvent, settings: WebhookSettings) -> str:
    return f"{event.type} names no Braze user: no custom_data.{settings.paddle_user_custom_data_key} and no customer_id"


def _transaction_completed(event: ProviderEvent, data: dict[str, Any], settings: WebhookSettings) -> Outcome:
    currency = money.currency_code(data.get("currency_code"), "transaction.completed data.currency_code")
    exponent = money.paddle_exponent(currency)
    total = money.paddle_minor(dig(data, "details", "totals", "total"), "data.details.totals.total")
    if total <= 0:
        return Ignored("nothing was paid in this transaction (a trial, or fully discounted)")
    transaction = text(data.get("id"))
    if transaction is None:
        raise MappingError("transaction.completed data.id is missing")
    lines = dig(data, "details", "line_items")
    if not isinstance(lines, list) or not lines:
        raise MappingError("transaction.completed data.details.line_items is not a non-empty list")
    common = {"provider": NAME, "transaction": transaction, "subscription": text(data.get("subscription_id"))}
    purchases = [
        _line(line, position, currency, exponent, event.occurred_at, common) for position, line in enumerate(lines)
    ]
    return for_user(_user(data, settings), purchases, not_found=_not_found(event, settings))


def _line(line: object, position: int, currency: str, exponent: int, time: str, common: dict[str, Any]) -> BrazeObject:
    where = f"transaction.completed data.details.line_items[{position}]"
    if not isinstance(line, dict):
        raise MappingError(f"{where} is not an object")
    paid = money.paddle_minor(dig(line, "totals", "total"), f"{where}.totals.total")
    product = object_id(line.get("product")) or text(line.get("price_id")) or "paddle_item"
    quantity = line.get("quantity")
    return purchase_object(
        product,
        currency,
        money.to_major(paid, exponent),
        time,
        {
            **common,
            "price_id": text(line.get("price_id")),
            "product_name": short_text(dig(line, "product", "name")),
            "quantity": quantity if type(quantity) is int else None,
        },
    )


def _subscription(event: ProviderEvent, data: dict[str, Any], settings: WebhookSettings, action: str) -> Outcome:
    items = data.get("items")
    first = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
    quantity = first.get("quantity")
    currency = data.get("currency_code")
    properties = {
        "provider": NAME,
        "subscription": text(data.get("id")),
        "status": short_text(data.get("status")),
        "product_id": text(dig(first, "price", "product_id")) or object_id(first.get("product")),
        "price_id": object_id(first.get("price")),
        "interval": short_text(dig(data, "billing_cycle", "interval")),
        "quantity": quantity if type(quantity) is int else None,
        "currency": currency.upper() if isinstance(currency, str) else None,
        "next_billed_at": _iso_or_none(data.get("next_billed_at")),
        "scheduled_change": short_text(dig(data, "scheduled_change", "action")),
    }
    subscription_event = event_object(f"subscription_{action}", event.occurred_at, properties)
    return for_user(_user(data, settings), [subscription_event], not_found=_not_found(event, settings))


def _iso_or_none(value: object) -> str | None:
    return iso_from_rfc3339(value) if isinstance(value, str) else None

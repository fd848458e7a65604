"""Google Play real-time developer notifications, pushed by Pub/Sub to POST /webhooks/google_play.

Verification (google_oidc.py): the push's OIDC token, checked against Google's published keys,
audience and service account from the settings. Then the Pub/Sub envelope is read
(`message.data` is the base64 DeveloperNotification, `message.messageId` the event id: the same on
every redelivery) and its `packageName` must be GOOGLE_PLAY_PACKAGE_NAME.

A notification names a purchase token, not a price or a user, so verify() looks the purchase up
in the Play Developer API (google_play_api.py) before map(), which stays pure. A lookup that fails
answers 503 before anything is claimed: Pub/Sub redelivers the push (with backoff, for up to its
retention, 7 days by default) and the redelivery is accepted once. A purchase Google does not know
(404/410) is kept for an operator with the reason.

Users: the purchase's obfuscatedExternalAccountId (set by the app with
BillingFlowParams.setObfuscatedAccountId) is the Braze external_id; without it, a user alias on
the purchase's first order id (`GPA.1234-5678-9012-34567`, the order id without the `..N` of a
renewal), label google_play_order_id, which stays the same for every renewal of the subscription
and which a later /users/identify merges into the known user.

Money is counted once per order id (renewals have their own order ids): payment key
`payment#google_play#<orderId>`. The mapping table is docs/google-play.md.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from braze_forwarder.braze.reference.currencies import CURRENCY_EXPONENTS
from braze_forwarder.config import WebhookSettings
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest.webhooks import google_play_api, money
from braze_forwarder.ingest.webhooks.base import (
    EVENT_ID,
    BrazeObject,
    Ignored,
    MappingError,
    Outcome,
    ProviderEvent,
    User,
    dig,
    event_object,
    for_user,
    invalid_event,
    iso_from_rfc3339,
    iso_from_unix,
    purchase_object,
    short_text,
    text,
)
from braze_forwarder.ingest.webhooks.google_oidc import GoogleOidcToken
from braze_forwarder.request_body import parse_json

NAME = "google_play"
SIGNATURE = GoogleOidcToken(
    header="Authorization",
    audience_setting="google_play_push_audience",
    service_account_setting="google_play_push_service_account",
    certs_url_setting="google_play_certs_url",
    clock_skew_setting="google_play_token_clock_skew_seconds",
)
ALIAS_LABEL = "google_play_order_id"

# SubscriptionNotification.notificationType (developer.android.com/google/play/billing/rtdn-reference):
# the Braze event name and whether the notification is a payment (a Braze purchase of the order).
SUBSCRIPTION_TYPES: dict[int, tuple[str, bool]] = {
    1: ("recovered", True),  # SUBSCRIPTION_RECOVERED: paid again after account hold
    2: ("renewed", True),  # SUBSCRIPTION_RENEWED
    3: ("canceled", False),  # SUBSCRIPTION_CANCELED (voluntarily or not; runs to its expiry)
    4: ("purchased", True),  # SUBSCRIPTION_PURCHASED
    5: ("on_hold", False),  # SUBSCRIPTION_ON_HOLD: account hold
    6: ("in_grace_period", False),  # SUBSCRIPTION_IN_GRACE_PERIOD
    7: ("restarted", False),  # SUBSCRIPTION_RESTARTED: canceled, then restored before expiry
    8: ("price_change_confirmed", False),  # SUBSCRIPTION_PRICE_CHANGE_CONFIRMED (deprecated by Google)
    9: ("deferred", False),  # SUBSCRIPTION_DEFERRED: renewal time extended
    10: ("paused", False),  # SUBSCRIPTION_PAUSED
    11: ("pause_schedule_changed", False),  # SUBSCRIPTION_PAUSE_SCHEDULE_CHANGED
    12: ("revoked", False),  # SUBSCRIPTION_REVOKED: revoked before its expiry (refund)
    13: ("expired", False),  # SUBSCRIPTION_EXPIRED
    19: ("price_change_updated", False),  # SUBSCRIPTION_PRICE_CHANGE_UPDATED
    20: ("pending_purchase_canceled", False),  # SUBSCRIPTION_PENDING_PURCHASE_CANCELED
}
# OneTimeProductNotification.notificationType.
ONE_TIME_TYPES = {1: "purchased", 2: "canceled"}
# ProductPurchase.purchaseState.
_PURCHASED, _PENDING = 0, 2
# VoidedPurchaseNotification.productType and .refundType.
VOIDED_PRODUCT_TYPES = {1: "subscription", 2: "one_time"}
REFUND_TYPES = {1: "full", 2: "quantity_based"}

_MILLIS = re.compile(r"[0-9]{1,15}")
_PACKAGE_CHARS = 255
_TOKEN_CHARS = 2048
_MAX_DATA_CHARS = 64 * 1024
_RENEWAL_SUFFIX = re.compile(r"\.\.[0-9]+$")
_UNITS = re.compile(r"-?[0-9]{1,18}")


class GooglePlay:
    name = NAME
    signature = SIGNATURE
    # The push token is checked against Google's keys, not a shared secret: the receiver reads no
    # signing secret for this provider.
    uses_signing_secrets = False

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, settings: WebhookSettings
    ) -> ProviderEvent:
        envelope = self.signature.verified(body, headers, secrets, now, settings)
        message_id, notification = _notification(envelope)
        package = notification.get("packageName")
        if package != settings.google_play_package_name or not settings.google_play_package_name:
            raise RequestRejected(
                400,
                "wrong_package",
                "the notification is for another app than GOOGLE_PLAY_PACKAGE_NAME; each app has its own topic",
            )
        occurred_at = _event_time(notification, envelope)
        kind, details = _kind(notification)
        payload: dict[str, Any] = {"notification": notification, "purchase": None, "order": None}
        try:
            payload.update(_lookup(settings, package, kind, details))
        except google_play_api.LookupUnavailable:
            raise RequestRejected(
                503,
                "google_play_api_unavailable",
                "the purchase could not be looked up in the Play Developer API; nothing was accepted, retry",
                {"Retry-After": "30"},
            ) from None
        return ProviderEvent(NAME, message_id, kind, None, occurred_at, payload)

    def expected_livemode(self, settings: WebhookSettings) -> bool | None:
        # License testers' purchases are marked (test_purchase) rather than refused: teams test
        # their production app with them.
        return None

    def map(self, event: ProviderEvent, settings: WebhookSettings) -> Outcome:
        notification = event.payload["notification"]
        if event.type == "test":
            return Ignored("a Play Console test notification: verified, nothing to send to Braze")
        if event.type.startswith("subscription."):
            return _subscription(event, notification["subscriptionNotification"])
        if event.type.startswith("one_time_product."):
            return _one_time(event, notification["oneTimeProductNotification"])
        if event.type == "voided_purchase":
            return _voided(event, notification["voidedPurchaseNotification"])
        return Ignored(f"{event.type} is not a notification this forwarder sends to Braze")


PROVIDER = GooglePlay()


# ---------------------------------------------------------------------------------------------------
# Reading the push
# ---------------------------------------------------------------------------------------------------


def _notification(envelope: Any) -> tuple[str, dict[str, Any]]:
    message = envelope.get("message") if type(envelope) is dict else None
    if type(message) is not dict:
        raise invalid_event("the body is not a Pub/Sub push: no message object")
    message_id = message.get("messageId", message.get("message_id"))
    if not (isinstance(message_id, str) and EVENT_ID.fullmatch(message_id)):
        raise invalid_event("the Pub/Sub message has no valid messageId")
    data = message.get("data")
    if not (isinstance(data, str) and 0 < len(data) <= _MAX_DATA_CHARS):
        raise invalid_event("the Pub/Sub message has no data")
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_event("the Pub/Sub message data is not base64") from None
    try:
        notification = parse_json(decoded)
    except RequestRejected:
        raise invalid_event("the Pub/Sub message data is not a JSON DeveloperNotification") from None
    if type(notification) is not dict:
        raise invalid_event("the Pub/Sub message data is not a DeveloperNotification object")
    package = notification.get("packageName")
    if not (isinstance(package, str) and 0 < len(package) <= _PACKAGE_CHARS):
        raise invalid_event("the notification has no packageName")
    return message_id, notification


def _event_time(notification: dict[str, Any], envelope: dict[str, Any]) -> str:
    millis = notification.get("eventTimeMillis")
    if type(millis) is int and millis >= 0:
        millis = str(millis)
    if isinstance(millis, str) and _MILLIS.fullmatch(millis):
        seconds, rest = divmod(int(millis), 1000)
        if seconds < 253402300800:  # before year 10000: a date Python can write
            return iso_from_unix(seconds)[:-1] + f".{rest:03d}Z"
    published = dig(envelope, "message", "publishTime")
    found = iso_from_rfc3339(published) if isinstance(published, str) else None
    if found is None:
        raise invalid_event("the notification has no valid eventTimeMillis")
    return found


def _kind(notification: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The event type (`subscription.renewed`, `one_time_product.purchased`, `voided_purchase`, `test`)
    and the notification's own object."""
    present = [
        key
        for key in (
            "subscriptionNotification",
            "oneTimeProductNotification",
            "voidedPurchaseNotification",
            "testNotification",
        )
        if key in notification
    ]
    if len(present) > 1:
        raise invalid_event("the notification holds more than one kind of notification")
    if not present:
        return "other", {}
    details = notification[present[0]]
    if type(details) is not dict:
        raise invalid_event(f"the notification's {present[0]} is not an object")
    if present[0] == "testNotification":
        return "test", details
    if present[0] == "voidedPurchaseNotification":
        _token(details)
        if not text(details.get("orderId")):
            raise invalid_event("the voidedPurchaseNotification has no orderId")
        return "voided_purchase", details
    number = details.get("notificationType")
    if type(number) is not int:
        raise invalid_event(f"the {present[0]} has no integer notificationType")
    _token(details)
    if present[0] == "subscriptionNotification":
        name = SUBSCRIPTION_TYPES.get(number, (f"type_{number}", False))[0] if 0 <= number < 10**6 else "type_other"
        return f"subscription.{name}", details
    if not text(details.get("sku")):
        raise invalid_event("the oneTimeProductNotification has no sku")
    name = ONE_TIME_TYPES.get(number, f"type_{number}") if 0 <= number < 10**6 else "type_other"
    return f"one_time_product.{name}", details


def _token(details: dict[str, Any]) -> str:
    token = details.get("purchaseToken")
    if not (isinstance(token, str) and 0 < len(token) <= _TOKEN_CHARS and token.isascii() and token.isprintable()):
        raise invalid_event("the notification has no valid purchaseToken")
    return token


def _lookup(settings: WebhookSettings, package: str, kind: str, details: dict[str, Any]) -> dict[str, Any]:
    """What Google says about the purchase: `purchase` (and `order` for the amount of a one-time product)."""
    if kind.startswith("subscription.") and kind.partition(".")[2] in _SUBSCRIPTION_NAMES:
        return {"purchase": google_play_api.subscription(settings, package, details["purchaseToken"])}
    if kind == "one_time_product.purchased" or kind == "one_time_product.canceled":
        purchase = google_play_api.product(settings, package, details["sku"], details["purchaseToken"])
        order_id = text(purchase.get("orderId")) if purchase else None
        needs_price = kind == "one_time_product.purchased" and purchase and purchase.get("purchaseState") == _PURCHASED
        order = google_play_api.order(settings, package, order_id) if needs_price and order_id else None
        return {"purchase": purchase, "order": order}
    if kind == "voided_purchase":
        order = google_play_api.order(settings, package, details["orderId"])
        if details.get("productType") == 1:
            purchase = google_play_api.subscription(settings, package, details["purchaseToken"])
        else:
            product_id = text(dig(_first_line(order), "productId")) if order else None
            purchase = (
                google_play_api.product(settings, package, product_id, details["purchaseToken"]) if product_id else None
            )
        return {"purchase": purchase, "order": order}
    return {}


_SUBSCRIPTION_NAMES = frozenset(name for name, _ in SUBSCRIPTION_TYPES.values())


# ---------------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------------


def _subscription(event: ProviderEvent, details: dict[str, Any]) -> Outcome:
    name = event.type.partition(".")[2]
    paid = next((is_paid for known, is_paid in SUBSCRIPTION_TYPES.values() if known == name), None)
    if paid is None:
        return Ignored(f"{event.type} is not a subscription notification this forwarder maps")
    purchase = event.payload["purchase"]
    product = text(details.get("subscriptionId"))
    if purchase is None:
        known = {"provider": NAME, "product_id": product}
        return _unknown_purchase(event, [event_object(f"subscription_{name}", event.occurred_at, known)])
    line = _line_item(purchase, product)
    product = text(line.get("productId")) or product or "google_play_subscription"
    order_id = text(line.get("latestSuccessfulOrderId")) or text(purchase.get("latestOrderId"))
    properties: dict[str, Any] = {
        "provider": NAME,
        "product_id": product,
        "base_plan_id": short_text(dig(line, "offerDetails", "basePlanId")),
        "offer_id": short_text(dig(line, "offerDetails", "offerId")),
        "state": short_text(purchase.get("subscriptionState")),
        "expires_at": _time_or_none(line.get("expiryTime")),
        "auto_renewing": _bool_or_none(dig(line, "autoRenewingPlan", "autoRenewEnabled")),
        "order_id": order_id,
        "region": short_text(purchase.get("regionCode")),
        "test_purchase": True if "testPurchase" in purchase else None,
    }
    objects = [event_object(f"subscription_{name}", event.occurred_at, properties), _attributes(purchase, line)]
    payment_keys: tuple[str, ...] = ()
    price = dig(line, "autoRenewingPlan", "recurringPrice")
    if paid and order_id is not None and price is not None:
        # The plan's recurring price (a prepaid plan has none, and is sent as the event alone).
        currency, amount = google_money(price, "lineItems[].autoRenewingPlan.recurringPrice")
        objects.append(purchase_object(product, currency, amount, event.occurred_at, properties))
        payment_keys = (order_id,)
    return for_user(
        _user(purchase, _external_id(purchase), order_id),
        objects,
        not_found=f"{event.type}: the purchase has no obfuscatedExternalAccountId and no order id",
        payment_keys=payment_keys,
    )


def _one_time(event: ProviderEvent, details: dict[str, Any]) -> Outcome:
    name = event.type.partition(".")[2]
    if name not in ONE_TIME_TYPES.values():
        return Ignored(f"{event.type} is not a one-time product notification this forwarder maps")
    purchase, order = event.payload["purchase"], event.payload["order"]
    product = text(details.get("sku")) or "google_play_product"
    if purchase is None:
        known = {"provider": NAME, "product_id": product}
        return _unknown_purchase(event, [event_object(f"product_{name}", event.occurred_at, known)])
    order_id = text(purchase.get("orderId"))
    quantity = purchase.get("quantity")
    properties: dict[str, Any] = {
        "provider": NAME,
        "product_id": product,
        "order_id": order_id,
        "quantity": quantity if type(quantity) is int else None,
        "region": short_text(purchase.get("regionCode")),
        "test_purchase": True if purchase.get("purchaseType") == 0 else None,
    }
    user = _user(purchase, text(purchase.get("obfuscatedExternalAccountId")), order_id)
    not_found = f"{event.type}: the purchase has no obfuscatedExternalAccountId and no orderId"
    if name == "canceled":
        return for_user(
            user, [event_object("product_purchase_canceled", event.occurred_at, properties)], not_found=not_found
        )
    if purchase.get("purchaseState") == _PENDING:
        return Ignored("the purchase is pending; Google notifies again when it is paid or canceled")
    if purchase.get("purchaseState") != _PURCHASED:
        return Ignored("the purchase is not in the purchased state")
    if order_id is None:
        raise MappingError("one_time_product.purchased: products.get gave no orderId")
    total = order.get("total") if order else None
    if total is None:
        raise MappingError("one_time_product.purchased: orders.get gave no total for the order")
    currency, amount = google_money(total, "orders.get total")
    purchase_made = purchase_object(product, currency, amount, event.occurred_at, properties)
    return for_user(user, [purchase_made], not_found=not_found, payment_keys=(order_id,))


def _voided(event: ProviderEvent, details: dict[str, Any]) -> Outcome:
    purchase, order = event.payload["purchase"], event.payload["order"]
    product_type = VOIDED_PRODUCT_TYPES.get(details.get("productType"))  # type: ignore[arg-type]
    order_id = text(details.get("orderId"))
    refunded = order.get("total") if order else None
    currency, amount = google_money(refunded, "orders.get total") if refunded is not None else (None, None)
    properties: dict[str, Any] = {
        "provider": NAME,
        "order_id": order_id,
        "product_id": text(dig(_first_line(order), "productId")) if order else None,
        "product_type": product_type,
        "refund_type": REFUND_TYPES.get(details.get("refundType")),  # type: ignore[arg-type]
        "amount": amount,
        "currency": currency,
    }
    objects = [event_object("purchase_refunded", event.occurred_at, properties)]
    if purchase is None:
        return _unknown_purchase(event, objects)
    external_id = _external_id(purchase) if product_type == "subscription" else None
    external_id = external_id or text(purchase.get("obfuscatedExternalAccountId"))
    if product_type == "subscription":
        objects.append(_attributes(purchase, _line_item(purchase, None)))
    return for_user(
        _user(purchase, external_id, order_id),
        objects,
        not_found="voided_purchase: the purchase has no obfuscatedExternalAccountId and no orderId",
    )


def _unknown_purchase(event: ProviderEvent, objects: list[BrazeObject]) -> Outcome:
    return for_user(
        None, objects, not_found=f"{event.type}: the Play Developer API does not know the purchase token (404/410)"
    )


def _user(purchase: dict[str, Any], external_id: str | None, order_id: str | None) -> User | None:
    if external_id is not None:
        return User.external_id(external_id)
    first_order = _RENEWAL_SUFFIX.sub("", order_id) if order_id else None
    return User.alias(first_order, ALIAS_LABEL) if first_order else None


def _external_id(purchase: dict[str, Any]) -> str | None:
    return text(dig(purchase, "externalAccountIdentifiers", "obfuscatedExternalAccountId"))


def _line_item(purchase: dict[str, Any], product: str | None) -> dict[str, Any]:
    items = purchase.get("lineItems")
    lines = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    matching = [line for line in lines if product is not None and line.get("productId") == product]
    return (matching or lines or [{}])[0]


def _first_line(order: dict[str, Any]) -> dict[str, Any]:
    items = order.get("lineItems")
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def _attributes(purchase: dict[str, Any], line: dict[str, Any]) -> BrazeObject:
    """The subscription's state as custom attributes, true at the notification's time."""
    return BrazeObject(
        "attributes",
        {
            key: value
            for key, value in {
                "google_play_subscription_state": short_text(purchase.get("subscriptionState")),
                "google_play_subscription_product": short_text(line.get("productId")),
                "google_play_subscription_expires_at": _time_or_none(line.get("expiryTime")),
                "google_play_subscription_auto_renewing": _bool_or_none(
                    dig(line, "autoRenewingPlan", "autoRenewEnabled")
                ),
            }.items()
            if value is not None
        },
    )


def google_money(value: object, field: str) -> tuple[str, float]:
    """A google.type.Money (`currencyCode`, `units` as a decimal string, `nanos`) as a currency and a
    price rounded to the currency's own decimals (ISO 4217: JPY none, KWD three)."""
    if type(value) is not dict:
        raise MappingError(f"{field} is not a Money object")
    currency = money.currency_code(value.get("currencyCode"), f"{field}.currencyCode")
    units, nanos = value.get("units", "0"), value.get("nanos", 0)
    if type(units) is int:
        units = str(units)
    if not (isinstance(units, str) and _UNITS.fullmatch(units)) or type(nanos) is not int or abs(nanos) >= 10**9:
        raise MappingError(f"{field} is not an amount in units and nanos")
    try:
        amount = Decimal(units) + Decimal(nanos).scaleb(-9)
        exponent = CURRENCY_EXPONENTS.get(currency, 2)
        return currency, float(amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_EVEN))
    except InvalidOperation:
        raise MappingError(f"{field} is not an amount in units and nanos") from None


def _time_or_none(value: object) -> str | None:
    return iso_from_rfc3339(value) if isinstance(value, str) else None


def _bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None

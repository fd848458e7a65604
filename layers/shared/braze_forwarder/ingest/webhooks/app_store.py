"""App Store Server Notifications V2: verification and the mapping of Apple's notifications to Braze objects.

Apple POSTs `{"signedPayload": "<JWS>"}` (developer.apple.com/documentation/appstoreservernotifications).
There is no shared secret: the JWS's own certificate chain, pinned to Apple's root, is the proof
(app_store_jws, imported on the first App Store request only: `cryptography` and PyJWT cost a cold
start that /users/track requests never pay). After the notification, its `signedTransactionInfo`
and `signedRenewalInfo` are verified the same way; then the bundle id (and, when set, the app's
Apple id) and the environment are checked against the settings. Sandbox is refused unless
APP_STORE_ENVIRONMENTS lists it.

Counted once: `notificationUUID` is the event id (Apple's retries repeat it) and a purchase claims the
transaction id as its payment key, so SUBSCRIBED and OFFER_REDEEMED for the same transaction count
one purchase. A notification signed longer ago than the dedupe window is refused, since its
duplicate could no longer be recognised (Apple's last retry comes about 6.5 days after the first
attempt, inside the default 7-day window). A user's values are ordered by Apple's `signedDate`.

The table of notification types and what each becomes is in docs/store-subscriptions.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from braze_forwarder.braze.reference.currencies import CURRENCY_EXPONENTS
from braze_forwarder.config import WebhookSettings
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest.webhooks import money
from braze_forwarder.ingest.webhooks.base import (
    EVENT_ID,
    BrazeObject,
    Ignored,
    MappingError,
    Outcome,
    ProviderEvent,
    User,
    event_object,
    for_user,
    purchase_object,
    short_text,
    text,
)

NAME = "app_store"
ALIAS_LABEL = "app_store_original_transaction_id"
# Apple signs its notifications within seconds of sending them; a signedDate further ahead is a clock
# problem or a forgery.
FUTURE_TOLERANCE_SECONDS = 300
# The body is {"signedPayload": "..."}; the JWS itself is bounded in app_store_jws.
_NOTIFICATION_TYPE_CHARS = 64
# Far above any App Store price tier (in milliunits) and quantity: a bound that keeps prices finite.
MAX_MILLIUNITS = 10**15
MAX_QUANTITY = 10_000


@dataclass(frozen=True, slots=True)
class AppStoreJws:
    """The SignatureScheme of the App Store: no header, the body's JWS and its certificate chain."""

    header: str = "signedPayload"  # where the signature is: a body field, named in answers
    uses_signing_secrets: bool = False  # the receiver reads no webhook-secrets entry for it

    def verified(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, settings: WebhookSettings
    ) -> Any:
        """The verified notification: {"notification", "transaction", "renewal"} payloads."""
        from braze_forwarder.ingest.webhooks import app_store_jws  # here: its libraries load on first use

        if not settings.app_store_bundle_id:
            raise RequestRejected(
                401,
                "provider_not_configured",
                "App Store notifications are not configured here: "
                "set APP_STORE_BUNDLE_ID (the AppStoreBundleId parameter)",
            )
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None
        if type(document) is not dict or not isinstance(document.get("signedPayload"), str):
            raise app_store_jws.malformed('the body is not {"signedPayload": "<JWS>"}')
        roots = settings.app_store_trusted_root_sha256
        notification = app_store_jws.verified(document["signedPayload"], "signedPayload", roots)
        _check_age(notification.signed_at_ms, now, settings.webhook_dedupe_ttl_seconds)
        payload = notification.payload
        section_name, section = _app_section(payload)
        _check_app(section, section_name, settings)
        signed = {
            "transaction": ("signedTransactionInfo", section.get("signedTransactionInfo")),
            "renewal": ("signedRenewalInfo", section.get("signedRenewalInfo")),
        }
        nested: dict[str, dict[str, Any] | None] = {}
        for key, (field, token) in signed.items():
            if token is None:
                nested[key] = None
                continue
            inner = app_store_jws.verified(token, f"{section_name}.{field}", roots).payload
            if inner.get("environment") != section.get("environment") or (
                key == "transaction" and inner.get("bundleId") != settings.app_store_bundle_id
            ):
                raise RequestRejected(
                    400,
                    "wrong_app",
                    f"{section_name}.{field} is for another app or environment than the notification",
                )
            nested[key] = inner
        return {"notification": payload, **nested}


SIGNATURE = AppStoreJws()


class AppStore:
    name = NAME
    signature = SIGNATURE

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, settings: WebhookSettings
    ) -> ProviderEvent:
        document = self.signature.verified(body, headers, secrets, now, settings)
        return _event(document)

    def expected_livemode(self, settings: WebhookSettings) -> bool | None:
        # verify() already refused an environment the settings do not list.
        return None

    def map(self, event: ProviderEvent, settings: WebhookSettings) -> Outcome:
        notification = event.payload["notification"]
        kind, subtype = notification["notificationType"], notification.get("subtype")
        handler = _HANDLERS.get(kind)
        if handler is None:
            return Ignored(f"{kind} is not a notification this forwarder sends to Braze")
        return handler(_Context(event, settings, subtype if isinstance(subtype, str) else None))


PROVIDER = AppStore()


# ---------------------------------------------------------------------------------------------------
# Verification around the JWS
# ---------------------------------------------------------------------------------------------------


def _check_age(signed_at_ms: int, now: float, window_seconds: int) -> None:
    age_seconds = now - signed_at_ms / 1000
    if age_seconds > window_seconds:
        raise RequestRejected(
            401,
            "stale_notification",
            f"the notification was signed more than {window_seconds} seconds ago, longer than duplicates "
            "are remembered; a replay is refused",
        )
    if age_seconds < -FUTURE_TOLERANCE_SECONDS:
        raise RequestRejected(
            401,
            "future_notification",
            f"the notification's signedDate is more than {FUTURE_TOLERANCE_SECONDS} seconds in the future",
        )


def _app_section(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The part of the notification that names the app: `data`, or `summary` for bulk renewal extensions,
    or `externalPurchaseToken`, whose environment is in its id (Sandbox ids start with SANDBOX)."""
    for name in ("data", "summary", "appData"):
        section = payload.get(name)
        if isinstance(section, dict):
            return name, section
    token = payload.get("externalPurchaseToken")
    if isinstance(token, dict):
        external_id = token.get("externalPurchaseId")
        sandbox = isinstance(external_id, str) and external_id.startswith("SANDBOX")
        return "externalPurchaseToken", {**token, "environment": "Sandbox" if sandbox else "Production"}
    raise RequestRejected(400, "malformed_notification", "the notification has no data or summary object")


def _check_app(section: dict[str, Any], section_name: str, settings: WebhookSettings) -> None:
    if section.get("bundleId") != settings.app_store_bundle_id:
        raise RequestRejected(
            400, "wrong_bundle_id", f"{section_name}.bundleId is not this deployment's app (APP_STORE_BUNDLE_ID)"
        )
    expected_app = settings.app_store_app_apple_id
    if expected_app and section.get("appAppleId") != expected_app:
        raise RequestRejected(
            400, "wrong_bundle_id", f"{section_name}.appAppleId is not this deployment's app (APP_STORE_APP_APPLE_ID)"
        )
    environment = section.get("environment")
    if environment not in settings.app_store_environments:
        raise RequestRejected(
            400,
            "wrong_environment",
            f"this deployment takes {' and '.join(settings.app_store_environments)} notifications only "
            "(APP_STORE_ENVIRONMENTS); register a separate endpoint for the other environment",
        )


def _event(document: dict[str, Any]) -> ProviderEvent:
    notification = document["notification"]
    uuid, kind, subtype = (notification.get(k) for k in ("notificationUUID", "notificationType", "subtype"))
    if not (isinstance(uuid, str) and EVENT_ID.fullmatch(uuid)):
        raise RequestRejected(400, "malformed_notification", "the notification has no valid notificationUUID")
    if not (isinstance(kind, str) and kind.isascii() and 0 < len(kind) <= _NOTIFICATION_TYPE_CHARS):
        raise RequestRejected(400, "malformed_notification", "the notification has no valid notificationType")
    if subtype is not None and not (
        isinstance(subtype, str) and subtype.isascii() and 0 < len(subtype) <= _NOTIFICATION_TYPE_CHARS
    ):
        raise RequestRejected(400, "malformed_notification", "the notification's subtype is not valid")
    # "did_renew", "expired.voluntary": the event type in logs and records (base.EVENT_TYPE's alphabet).
    event_type = ".".join(part.lower() for part in (kind, subtype) if part)
    if not all(ch.isalnum() or ch in "_." for ch in event_type):
        raise RequestRejected(400, "malformed_notification", "the notification's type is not Apple's")
    environment = _app_section(notification)[1].get("environment")
    time = _iso_from_ms(notification["signedDate"])
    return ProviderEvent(NAME, uuid, event_type, environment == "Production", time, document)


# ---------------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    event: ProviderEvent
    settings: WebhookSettings
    subtype: str | None

    @property
    def transaction(self) -> dict[str, Any]:
        return self.event.payload.get("transaction") or {}

    @property
    def renewal(self) -> dict[str, Any]:
        return self.event.payload.get("renewal") or {}

    @property
    def time(self) -> str:
        return self.event.occurred_at

    def user(self) -> User | None:
        """appAccountToken (the app's own user id, set at purchase) when enabled, else the original
        transaction as an alias: a later /users/identify with that alias merges it into the user."""
        if self.settings.app_store_use_app_account_token:
            token = text(self.transaction.get("appAccountToken")) or text(self.renewal.get("appAccountToken"))
            if token is not None:
                return User.external_id(token)
        original = text(self.transaction.get("originalTransactionId")) or text(
            self.renewal.get("originalTransactionId")
        )
        return User.alias(original, ALIAS_LABEL) if original is not None else None

    def not_found(self) -> str:
        return f"{self.event.type} names no Braze user: no appAccountToken and no originalTransactionId"

    def properties(self, **more: Any) -> dict[str, Any]:
        """What every App Store event carries: the product, the transaction and the environment."""
        notification = self.event.payload["notification"]
        transaction, renewal = self.transaction, self.renewal
        return {
            "provider": NAME,
            "notification_type": notification["notificationType"],
            "subtype": self.subtype,
            "environment": short_text(_app_section(notification)[1].get("environment")),
            "product_id": short_text(transaction.get("productId")) or short_text(renewal.get("productId")),
            "transaction_id": text(transaction.get("transactionId")),
            "original_transaction_id": text(transaction.get("originalTransactionId"))
            or text(renewal.get("originalTransactionId")),
            "subscription_group": short_text(transaction.get("subscriptionGroupIdentifier")),
            "product_type": short_text(transaction.get("type")),
            "expires_at": _iso_or_none(transaction.get("expiresDate")),
            "offer_id": short_text(transaction.get("offerIdentifier")),
            "storefront": short_text(transaction.get("storefront")),
            **more,
        }

    def outcome(self, objects: list[BrazeObject], *, purchase: bool = False) -> Outcome:
        keys = (self.transaction["transactionId"],) if purchase else ()
        return for_user(self.user(), objects, not_found=self.not_found(), payment_keys=keys)

    def purchase(self) -> BrazeObject | None:
        """The money of this notification's transaction, or None when nothing was paid (a free trial,
        a free offer) or the transaction carries no price."""
        transaction = self.transaction
        price, quantity = transaction.get("price"), transaction.get("quantity", 1)
        if type(price) is not int or price <= 0 or text(transaction.get("transactionId")) is None:
            return None
        if type(quantity) is not int or not 0 < quantity <= MAX_QUANTITY:
            raise MappingError("signedTransactionInfo.quantity is not a positive integer")
        if price > MAX_MILLIUNITS:
            raise MappingError("signedTransactionInfo.price is larger than any App Store price")
        product = text(transaction.get("productId"))
        if product is None:
            raise MappingError("signedTransactionInfo.productId is missing")
        currency = money.currency_code(transaction.get("currency"), "signedTransactionInfo.currency")
        # Braze quantity 1 with the whole amount (base.purchase_object): Apple's price is per unit.
        return purchase_object(
            product,
            currency,
            from_milliunits(price * quantity, currency),
            self.time,
            self.properties(quantity=quantity, unit_price=from_milliunits(price, currency)),
        )

    def status(self, value: str, **attributes: Any) -> BrazeObject:
        """The user's subscription attributes, true at the notification's signedDate."""
        transaction = self.transaction
        product = text(transaction.get("productId")) or text(self.renewal.get("productId"))
        return BrazeObject(
            "attributes",
            {
                key: item
                for key, item in {
                    "app_store_subscription_status": value,
                    "app_store_product_id": product,
                    "app_store_expires_at": _iso_or_none(transaction.get("expiresDate")),
                    **attributes,
                }.items()
                if item is not None
            },
        )


def from_milliunits(amount: int, currency: str) -> float:
    """Apple's milliunits (1/1000 of the currency unit) as the major-unit price, rounded to the
    currency's own decimals (ISO 4217: JPY none, USD two, KWD three)."""
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    major = Decimal(amount).scaleb(-3).quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_EVEN)
    return float(major)


def _paid(c: _Context, event_name: str, status: str, **more: Any) -> Outcome:
    """A notification that may carry money: a purchase when something was paid, an event, the status."""
    purchase = c.purchase()
    objects = [c.status(status, app_store_auto_renew=_auto_renew(c))]
    objects.append(event_object(event_name, c.time, c.properties(**more)))
    if purchase is not None:
        objects.append(purchase)
    return c.outcome(objects, purchase=purchase is not None)


def _subscribed(c: _Context) -> Outcome:
    name = "subscription_resubscribed" if c.subtype == "RESUBSCRIBE" else "subscription_started"
    return _paid(c, name, "active")


def _did_renew(c: _Context) -> Outcome:
    return _paid(c, "subscription_renewed", "active", billing_recovery=c.subtype == "BILLING_RECOVERY")


def _offer_redeemed(c: _Context) -> Outcome:
    if c.subtype in {"INITIAL_BUY", "RESUBSCRIBE", "UPGRADE"}:  # a purchase made now, with the offer
        return _paid(c, "subscription_offer_redeemed", "active")
    # DOWNGRADE (from the next renewal) or an offer on the current period: its transaction is one
    # already counted, so the event goes without a purchase (a claimed payment would drop it).
    return c.outcome([event_object("subscription_offer_redeemed", c.time, c.properties())])


def _renewal_pref(c: _Context) -> Outcome:
    renewal = c.renewal
    more = {"next_product_id": short_text(renewal.get("autoRenewProductId"))}
    if c.subtype == "UPGRADE":  # effective at once, with a new transaction that is paid now
        return _paid(c, "subscription_plan_changed", "active", **more)
    event = event_object("subscription_plan_changed", c.time, c.properties(**more))
    return c.outcome([event])


def _one_time_charge(c: _Context) -> Outcome:
    purchase = c.purchase()
    if purchase is None:
        return Ignored("the one-time charge carries no price")
    return c.outcome([purchase], purchase=True)


def _event_only(name: str, status: str | None = None, **fixed: Any) -> Any:
    def handler(c: _Context) -> Outcome:
        objects = [event_object(name, c.time, c.properties(**fixed))]
        if status is not None:
            objects.insert(0, c.status(status, app_store_auto_renew=_auto_renew(c)))
        return c.outcome(objects)

    return handler


def _renewal_status(c: _Context) -> Outcome:
    enabled = c.subtype == "AUTO_RENEW_ENABLED"
    name = "subscription_auto_renew_enabled" if enabled else "subscription_auto_renew_disabled"
    attributes = BrazeObject("attributes", {"app_store_auto_renew": enabled})
    return c.outcome([attributes, event_object(name, c.time, c.properties())])


def _did_fail_to_renew(c: _Context) -> Outcome:
    grace = c.subtype == "GRACE_PERIOD"
    grace_until = _iso_or_none(c.renewal.get("gracePeriodExpiresDate"))
    name = "subscription_grace_period_started" if grace else "subscription_billing_retry"
    objects = [
        c.status("grace_period" if grace else "billing_retry", app_store_auto_renew=_auto_renew(c)),
        event_object(name, c.time, c.properties(grace_period_expires_at=grace_until)),
    ]
    return c.outcome(objects)


def _expired(c: _Context) -> Outcome:
    reason = (c.subtype or "").lower() or None  # voluntary, billing_retry, price_increase, product_not_for_sale
    objects = [
        c.status("expired", app_store_auto_renew=False),
        event_object("subscription_expired", c.time, c.properties(reason=reason)),
    ]
    return c.outcome(objects)


def _refund(c: _Context) -> Outcome:
    transaction = c.transaction
    price, currency = transaction.get("price"), transaction.get("currency")
    quantity = transaction.get("quantity", 1)
    amount = None
    if type(price) is int and 0 < price <= MAX_MILLIUNITS and type(quantity) is int and 0 < quantity <= MAX_QUANTITY:
        code = money.currency_code(currency, "signedTransactionInfo.currency")
        amount = from_milliunits(price * quantity, code)
    properties = c.properties(
        amount=amount,
        currency=currency.upper() if amount is not None and isinstance(currency, str) else None,
        refund_reason=_revocation_reason(transaction.get("revocationReason")),
        revoked_at=_iso_or_none(transaction.get("revocationDate")),
    )
    objects = [event_object("purchase_refunded", c.time, properties)]
    if transaction.get("expiresDate") is not None:  # a subscription: access ends with the refund
        objects.insert(0, c.status("refunded", app_store_auto_renew=False))
    return c.outcome(objects)


def _price_increase(c: _Context) -> Outcome:
    consent = (c.subtype or "").lower() or None  # pending, accepted
    return c.outcome([event_object("subscription_price_increase", c.time, c.properties(consent=consent))])


def _ignored(reason: str) -> Any:
    def handler(c: _Context) -> Outcome:
        return Ignored(reason)

    return handler


_HANDLERS = {
    "SUBSCRIBED": _subscribed,
    "DID_RENEW": _did_renew,
    "OFFER_REDEEMED": _offer_redeemed,
    "ONE_TIME_CHARGE": _one_time_charge,
    "DID_CHANGE_RENEWAL_PREF": _renewal_pref,
    "DID_CHANGE_RENEWAL_STATUS": _renewal_status,
    "DID_FAIL_TO_RENEW": _did_fail_to_renew,
    "GRACE_PERIOD_EXPIRED": _event_only("subscription_grace_period_expired", "billing_retry"),
    "EXPIRED": _expired,
    "REFUND": _refund,
    "REFUND_DECLINED": _event_only("refund_declined"),
    "REFUND_REVERSED": _event_only("refund_reversed", "active"),
    "REVOKE": _event_only("purchase_revoked", "revoked"),
    "PRICE_INCREASE": _price_increase,
    "RENEWAL_EXTENDED": _event_only("subscription_renewal_extended", "active"),
    "TEST": _ignored("a test notification: verified, nothing to send to Braze"),
    "CONSUMPTION_REQUEST": _ignored("a consumption request asks the developer for data; nothing for Braze"),
    "RENEWAL_EXTENSION": _ignored("a summary of a bulk renewal extension; each user's RENEWAL_EXTENDED is sent"),
    "EXTERNAL_PURCHASE_TOKEN": _ignored("an external purchase token: no App Store payment to send"),
}


def _auto_renew(c: _Context) -> bool | None:
    status = c.renewal.get("autoRenewStatus")
    return status == 1 if type(status) is int else None


def _revocation_reason(value: object) -> str | None:
    # developer.apple.com/documentation/appstoreservernotifications/revocationreason
    return {0: "other", 1: "app_issue"}.get(value) if type(value) is int else None


def _iso_from_ms(milliseconds: int) -> str:
    moment = datetime.fromtimestamp(milliseconds / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _iso_or_none(value: object) -> str | None:
    if type(value) is not int or not 0 < value < 10**14:
        return None
    return _iso_from_ms(value)

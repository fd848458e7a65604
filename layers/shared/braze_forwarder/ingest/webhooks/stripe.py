"""Stripe: `Stripe-Signature` verification and the mapping of Stripe events to Braze objects.

Verification (WEBHOOKS_AND_RELIABILITY.md §1.1-§1.2, §7.2): the header holds one `t=<unix seconds>`
and one or more `v1=<hex>`; the signed text is `{t}.{raw body}`, HMAC-SHA256 keyed with the
`whsec_...` string itself. Any `v1` may match any active secret (a rolled secret keeps the old one
alive for a while, and Stripe then sends one `v1` per secret); other schemes are ignored, as
Stripe's libraries do. The timestamp must be within the tolerance in both directions: Stripe's own
library checks only the past side.

One purchase per payment (§1.4, §7.7). A single payment produces several events; the canonical
event of each flow is:

    flow                                   counted by                       not counted again by
    subscriptions, renewals, invoices      invoice.paid (one purchase        checkout.session.* in
                                           per invoice line)                 subscription mode;
                                                                             payment_intent.succeeded
    Checkout, one-off payment              checkout.session.completed        payment_intent.succeeded
                                           when payment_status is paid,      for the same PaymentIntent
                                           else ...async_payment_succeeded
    PaymentIntents outside Checkout        payment_intent.succeeded
    and Billing (Payment Element, API)

Events that carry the same money carry the same ids (a Checkout Session names its PaymentIntent
and, with invoice creation on, its invoice; an invoice named its PaymentIntent before API version
2025-03-31), and each purchase claims those ids in the dedupe table (see once.py): whichever
event of a payment arrives first queues the purchase, the others answer "ignored". A
payment_intent.succeeded whose `invoice` is set (API versions before 2025-03-31) is left to
invoice.paid outright. Newer API versions (from 2025-03-31) no longer link a PaymentIntent to its
invoice; invoice.paid then claims the PaymentIntents of the invoice's `payments` when the event
includes them, and otherwise both events meet on money keys (customer, currency, amount, minute
paid; see _money_keys), so each payment is counted once whichever events are subscribed.

Refunds: charge.refunded carries `amount_refunded` cumulatively; the refund event carries what
this event refunded (`data.previous_attributes.amount_refunded` subtracted when Stripe sends it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from braze_forwarder.config import WebhookSettings
from braze_forwarder.http_answers import RequestRejected
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
    iso_from_unix,
    object_id,
    purchase_object,
    short_text,
    text,
)

NAME = "stripe"
# The header's shape, the signed payload and the tolerance: the rest of verification is base's.
SIGNATURE = TimestampedHmac(
    header="Stripe-Signature",
    separator=",",
    timestamp_key="t",
    signature_key="v1",
    joiner=b".",
    tolerance_setting="stripe_tolerance_seconds",
)
HEADER = SIGNATURE.header
ALIAS_LABEL = "stripe_customer_id"
# Metadata key naming the Braze product of a one-off payment; without it the flow's name is used.
PRODUCT_METADATA_KEY = "braze_product_id"


class Stripe:
    name = NAME
    signature = SIGNATURE

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, settings: WebhookSettings
    ) -> ProviderEvent:
        return _event(self.signature.verified(body, headers, secrets, now, settings))

    def expected_livemode(self, settings: WebhookSettings) -> bool | None:
        return settings.stripe_live_mode

    def map(self, event: ProviderEvent, settings: WebhookSettings) -> Outcome:
        handler = _HANDLERS.get(event.type)
        if handler is None:
            return Ignored(f"{event.type} is not an event this forwarder sends to Braze")
        return handler(_Context(event, settings))


PROVIDER = Stripe()


def _event(document: Any) -> ProviderEvent:
    if type(document) is not dict:
        raise invalid_event("the body is not a Stripe event object")
    if document.get("object") == "v2.core.event":
        raise RequestRejected(
            400,
            "unsupported_event",
            "Stripe thin events (v2) carry no data; register a webhook endpoint with snapshot events",
        )
    event_id, event_type, created = document.get("id"), document.get("type"), document.get("created")
    livemode, data = document.get("livemode"), document.get("data")
    if not (isinstance(event_id, str) and EVENT_ID.fullmatch(event_id)):
        raise invalid_event("the event has no valid id")
    if not (isinstance(event_type, str) and EVENT_TYPE.fullmatch(event_type)):
        raise invalid_event("the event has no valid type")
    if type(created) is not int or not 0 < created < 10**11:
        raise invalid_event("the event's created is not a Unix time")
    if type(livemode) is not bool:
        raise invalid_event("the event's livemode is not a boolean")
    if not (isinstance(data, dict) and isinstance(data.get("object"), dict)):
        raise invalid_event("the event has no data.object")
    return ProviderEvent(NAME, event_id, event_type, livemode, iso_from_unix(created), document)


# ---------------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------------


class _Context:
    """One event being mapped: its object, previous attributes and how users are found."""

    def __init__(self, event: ProviderEvent, settings: WebhookSettings) -> None:
        self.event = event
        self.settings = settings
        self.object: dict[str, Any] = event.payload["data"]["object"]
        previous = event.payload["data"].get("previous_attributes")
        self.previous: dict[str, Any] = previous if isinstance(previous, dict) else {}

    @property
    def time(self) -> str:
        return self.event.occurred_at

    def field(self, name: str) -> str:
        return f"{self.event.type} data.object.{name}"

    def user(self, *metadata: object, client_reference_id: object = None) -> User | None:
        """The Braze user: the metadata key, then client_reference_id, then the customer as an alias."""
        key = self.settings.stripe_user_metadata_key
        for source in metadata:
            external_id = text(source.get(key)) if isinstance(source, dict) else None
            if external_id is not None:
                return User.external_id(external_id)
        reference = text(client_reference_id)
        if reference is not None:
            return User.external_id(reference)
        customer = object_id(self.object.get("customer"))
        return User.alias(customer, ALIAS_LABEL) if customer is not None else None

    def not_found(self) -> str:
        return (
            f"{self.event.type} names no Braze user: no metadata.{self.settings.stripe_user_metadata_key}, "
            "no client_reference_id and no customer"
        )

    def currency(self, name: str = "currency") -> tuple[str, int]:
        currency = money.currency_code(self.object.get(name), self.field(name))
        return currency, money.stripe_exponent(currency)

    def amount(self, name: str) -> int:
        return money.minor_int(self.object.get(name), self.field(name))


def _product_from_metadata(metadata: object, default: str) -> str:
    product = short_text(metadata.get(PRODUCT_METADATA_KEY)) if isinstance(metadata, dict) else None
    return product or default


# Money keys: on API versions from 2025-03-31 neither a PaymentIntent nor an invoice.paid event names
# the other (the invoice's `payments` list is includable, so webhooks carry it only sometimes). The
# payment is then recognised by what both events do carry: the customer, the currency, the amount
# and the moment it was paid. Each event writes a key for its own kind in its minute and requires
# that no key of the other kind exists in the minute before, the same or after: events of the same
# money (paid within a second of each other) always meet; payments of the same customer and amount
# more than two minutes apart never do. Events of one kind share their key, so two invoices of the
# same amount in one minute are both counted.
_MONEY_MINUTE = 60


def _money_keys(
    kind: str, other: str, customer: str | None, currency: str, amount: int, paid_at: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the key this event shares with its kind, the other kind's keys that must be absent)."""
    if customer is None:
        return (), ()
    minute = paid_at // _MONEY_MINUTE

    def key(of: str, at: int) -> str:
        return f"money#{of}#{customer}#{currency}#{amount}#{at}"

    return (key(kind, minute),), tuple(key(other, at) for at in (minute - 1, minute, minute + 1))


def _payment_intent_succeeded(c: _Context) -> Outcome:
    intent = c.object
    if object_id(intent.get("invoice")) is not None:
        return Ignored("this PaymentIntent pays an invoice; invoice.paid counts it")
    amount = c.amount("amount_received")
    if amount <= 0:
        return Ignored("the PaymentIntent received nothing")
    currency, exponent = c.currency()
    intent_id = object_id(intent.get("id"))
    if intent_id is None:
        raise MappingError(f"{c.field('id')} is missing")
    purchase = purchase_object(
        _product_from_metadata(intent.get("metadata"), "stripe_payment"),
        currency,
        money.to_major(amount, exponent),
        c.time,
        {"provider": NAME, "payment_intent": intent_id},
    )
    shared: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    if "invoice" not in intent:  # API versions from 2025-03-31: it may pay an invoice, unnamed
        created = c.event.payload["created"]
        shared, absent = _money_keys("intent", "invoice", object_id(intent.get("customer")), currency, amount, created)
    return for_user(
        c.user(intent.get("metadata")),
        [purchase],
        not_found=c.not_found(),
        payment_keys=(intent_id,),
        shared_keys=shared,
        absent_keys=absent,
    )


def _checkout_session(c: _Context, *, async_payment_succeeded: bool) -> Outcome:
    session = c.object
    mode = session.get("mode")
    if mode == "subscription":
        return Ignored("a subscription Checkout Session is counted by the invoice.paid of its first invoice")
    if mode != "payment":
        return Ignored("this Checkout Session takes no payment")
    status = session.get("payment_status")
    if status != "paid":
        if status == "unpaid" and not async_payment_succeeded:
            return Ignored(
                "the payment is not complete yet (payment_status unpaid); "
                "checkout.session.async_payment_succeeded counts it when it is"
            )
        return Ignored("the Checkout Session's payment_status is not paid")
    amount = c.amount("amount_total")
    if amount <= 0:
        return Ignored("the Checkout Session took no money")
    currency, exponent = c.currency()
    session_id = object_id(session.get("id"))
    if session_id is None:
        raise MappingError(f"{c.field('id')} is missing")
    intent_id = object_id(session.get("payment_intent"))
    invoice_id = object_id(session.get("invoice"))
    keys = tuple(key for key in (intent_id or session_id, invoice_id) if key is not None)
    purchase = purchase_object(
        _product_from_metadata(session.get("metadata"), "stripe_checkout"),
        currency,
        money.to_major(amount, exponent),
        c.time,
        {"provider": NAME, "checkout_session": session_id, "payment_intent": intent_id, "invoice": invoice_id},
    )
    user = c.user(session.get("metadata"), client_reference_id=session.get("client_reference_id"))
    return for_user(user, [purchase], not_found=c.not_found(), payment_keys=keys)


def _invoice_paid(c: _Context) -> Outcome:
    invoice = c.object
    amount_paid = c.amount("amount_paid")
    if amount_paid <= 0:
        return Ignored("nothing was paid on this invoice (a trial, or fully covered by credit)")
    currency, exponent = c.currency()
    invoice_id = object_id(invoice.get("id"))
    if invoice_id is None:
        raise MappingError(f"{c.field('id')} is missing")
    subscription = object_id(dig(invoice, "parent", "subscription_details", "subscription")) or object_id(
        invoice.get("subscription")  # API versions before 2025-03-31
    )
    common = {"provider": NAME, "invoice": invoice_id, "subscription": subscription}
    lines = dig(invoice, "lines", "data")
    if not isinstance(lines, list) or not lines or dig(invoice, "lines", "has_more") is True:
        # The event lists only the invoice's first lines; one purchase of the amount paid keeps the
        # revenue right where per-line purchases would miss the rest.
        purchases = [
            purchase_object("stripe_invoice", currency, money.to_major(amount_paid, exponent), c.time, dict(common))
        ]
    else:
        purchases = [
            _invoice_line(c, line, position, currency, exponent, common) for position, line in enumerate(lines)
        ]
    intents = [object_id(invoice.get("payment_intent"))]  # API versions before 2025-03-31
    payments = dig(invoice, "payments", "data")  # later ones, when Stripe includes the InvoicePayments
    if isinstance(payments, list):
        intents += [object_id(dig(p, "payment", "payment_intent")) for p in payments]
    keys = tuple(dict.fromkeys(key for key in (invoice_id, *intents) if key is not None))
    shared: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    if len(keys) == 1 and "payment_intent" not in invoice:  # nothing names the payment: its money keys
        paid_at = dig(invoice, "status_transitions", "paid_at")
        when = paid_at if type(paid_at) is int else c.event.payload["created"]
        shared, absent = _money_keys(
            "invoice", "intent", object_id(invoice.get("customer")), currency, amount_paid, when
        )
    user = c.user(
        invoice.get("metadata"),
        dig(invoice, "parent", "subscription_details", "metadata"),
        dig(invoice, "subscription_details", "metadata"),  # API versions before 2025-03-31
    )
    return for_user(user, purchases, not_found=c.not_found(), payment_keys=keys, shared_keys=shared, absent_keys=absent)


def _invoice_line(
    c: _Context, line: object, position: int, currency: str, exponent: int, common: dict[str, Any]
) -> BrazeObject:
    where = c.field(f"lines.data[{position}]")
    if not isinstance(line, dict):
        raise MappingError(f"{where} is not an object")
    # What the customer paid for the line: its amount, less its discounts, plus exclusive tax
    # (inclusive tax is already in the amount). `taxes` is the current shape, `tax_amounts` the
    # shape before API version 2025-03-31.
    minor = money.minor_int(line.get("amount"), f"{where}.amount")
    for discount in _list(line.get("discount_amounts")):
        minor -= money.minor_int(dig(discount, "amount"), f"{where}.discount_amounts[].amount")
    for tax in _list(line.get("taxes")):
        if dig(tax, "tax_behavior") == "exclusive":
            minor += money.minor_int(dig(tax, "amount"), f"{where}.taxes[].amount")
    for tax in _list(line.get("tax_amounts")):
        if dig(tax, "inclusive") is False:
            minor += money.minor_int(dig(tax, "amount"), f"{where}.tax_amounts[].amount")
    price = object_id(dig(line, "pricing", "price_details", "price")) or object_id(line.get("price"))
    product = (
        object_id(dig(line, "pricing", "price_details", "product"))
        or object_id(dig(line, "price", "product"))
        or object_id(dig(line, "plan", "product"))
        or "stripe_invoice_item"
    )
    quantity = line.get("quantity")
    period = found if isinstance(found := line.get("period"), dict) else {}
    return purchase_object(
        product,
        currency,
        money.to_major(minor, exponent),
        c.time,
        {
            **common,
            "invoice_line": object_id(line.get("id")),
            "price_id": price,
            "quantity": quantity if type(quantity) is int else None,
            "period_start": _iso_or_none(period.get("start")),
            "period_end": _iso_or_none(period.get("end")),
        },
    )


def _charge_refunded(c: _Context) -> Outcome:
    charge = c.object
    total = c.amount("amount_refunded")
    before = c.previous.get("amount_refunded")
    # amount_refunded is cumulative: a second partial refund arrives with the sum of both.
    refunded_now = total - before if type(before) is int else total
    if refunded_now <= 0:
        return Ignored("this event refunds nothing beyond earlier refunds")
    currency, exponent = c.currency()
    refunded = charge.get("refunded")
    refund = event_object(
        "payment_refunded",
        c.time,
        {
            "provider": NAME,
            "charge": object_id(charge.get("id")),
            "payment_intent": object_id(charge.get("payment_intent")),
            "amount": money.to_major(refunded_now, exponent),
            "total_refunded": money.to_major(total, exponent),
            "currency": currency,
            "fully_refunded": refunded if type(refunded) is bool else None,
        },
    )
    return for_user(c.user(charge.get("metadata")), [refund], not_found=c.not_found())


_SUBSCRIPTION_EVENTS = {
    "customer.subscription.created": "subscription_created",
    "customer.subscription.updated": "subscription_updated",
    # Stripe "deletes" a subscription when it ends: canceled now, or at the end of its period.
    "customer.subscription.deleted": "subscription_canceled",
}


def _subscription(c: _Context) -> Outcome:
    subscription = c.object
    items = dig(subscription, "items", "data")
    first = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
    currency = subscription.get("currency")
    quantity = first.get("quantity")
    properties: dict[str, Any] = {
        "provider": NAME,
        "subscription": object_id(subscription.get("id")),
        "status": short_text(subscription.get("status")),
        "product_id": object_id(dig(first, "price", "product")),
        "price_id": object_id(first.get("price")),
        "interval": short_text(dig(first, "price", "recurring", "interval")),
        "quantity": quantity if type(quantity) is int else None,
        "currency": currency.upper() if isinstance(currency, str) else None,
        "cancel_at_period_end": subscription.get("cancel_at_period_end")
        if type(subscription.get("cancel_at_period_end")) is bool
        else None,
    }
    if c.event.type == "customer.subscription.updated":
        properties["previous_status"] = short_text(c.previous.get("status"))
        properties["changed"] = sorted(key[:255] for key in c.previous)[:50] or None
    event = event_object(_SUBSCRIPTION_EVENTS[c.event.type], c.time, properties)
    return for_user(c.user(subscription.get("metadata")), [event], not_found=c.not_found())


def _payment_intent_failed(c: _Context) -> Outcome:
    intent = c.object
    currency, exponent = c.currency()
    error = found if isinstance(found := intent.get("last_payment_error"), dict) else {}
    event = event_object(
        "payment_failed",
        c.time,
        {
            "provider": NAME,
            "payment_intent": object_id(intent.get("id")),
            "amount": money.to_major(c.amount("amount"), exponent),
            "currency": currency,
            "failure_code": short_text(error.get("code")),
            "decline_code": short_text(error.get("decline_code")),
            # Only the type: the payment method object also holds billing details (name, address).
            "payment_method_type": short_text(dig(error, "payment_method", "type")),
        },
    )
    return for_user(c.user(intent.get("metadata")), [event], not_found=c.not_found())


def _invoice_payment_failed(c: _Context) -> Outcome:
    invoice = c.object
    currency, exponent = c.currency()
    attempts = invoice.get("attempt_count")
    event = event_object(
        "invoice_payment_failed",
        c.time,
        {
            "provider": NAME,
            "invoice": object_id(invoice.get("id")),
            "subscription": object_id(dig(invoice, "parent", "subscription_details", "subscription"))
            or object_id(invoice.get("subscription")),
            "amount_due": money.to_major(c.amount("amount_due"), exponent),
            "currency": currency,
            "attempt_count": attempts if type(attempts) is int else None,
            "next_payment_attempt": _iso_or_none(invoice.get("next_payment_attempt")),
            "billing_reason": short_text(invoice.get("billing_reason")),
        },
    )
    user = c.user(
        invoice.get("metadata"),
        dig(invoice, "parent", "subscription_details", "metadata"),
        dig(invoice, "subscription_details", "metadata"),
    )
    return for_user(user, [event], not_found=c.not_found())


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _iso_or_none(value: object) -> str | None:
    return iso_from_unix(value) if type(value) is int and 0 < value < 10**11 else None


_HANDLERS: dict[str, Callable[[_Context], Outcome]] = {
    "payment_intent.succeeded": _payment_intent_succeeded,
    "checkout.session.completed": lambda c: _checkout_session(c, async_payment_succeeded=False),
    "checkout.session.async_payment_succeeded": lambda c: _checkout_session(c, async_payment_succeeded=True),
    "invoice.paid": _invoice_paid,
    "charge.refunded": _charge_refunded,
    **dict.fromkeys(_SUBSCRIPTION_EVENTS, _subscription),
    "payment_intent.payment_failed": _payment_intent_failed,
    "invoice.payment_failed": _invoice_payment_failed,
}
MAPPED_TYPES = tuple(_HANDLERS)

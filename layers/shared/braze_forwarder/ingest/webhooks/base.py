"""The provider interface, and what every provider shares: signature checks, times, users, objects.

A provider is one module with one object that has

    name                      "stripe", "paddle": the path segment of POST /webhooks/{name} and the
                              key of its signing secrets in the webhook-secrets secret;
    signature                 its SignatureScheme: the header that carries the signature and how it
                              is checked; Stripe and Paddle both send a TimestampedHmac, configured by
                              data (header shape, separators, signed payload, tolerance setting);
                              other schemes (App Store's JWS, Google's OIDC token) are other classes
                              of the same interface;
    verify(body, headers, secrets, now, settings) -> ProviderEvent
                              check the signature over the exact raw bytes (signature.verified), then
                              read the event; every failure is a RequestRejected (4xx) with a stable
                              `type`, never another exception;
    expected_livemode(settings) -> bool | None
                              the livemode this deployment takes (None: the provider does not say);
    map(event, settings) -> Mapped | Ignored | UserNotFound
                              pure: Braze objects (or why none), no I/O. A verified event whose shape
                              cannot be read raises MappingError and is kept as rejected.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from braze_forwarder.config import WebhookSettings
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.request_body import parse_json

Array = Literal["attributes", "events", "purchases"]

# Event ids become DynamoDB keys and log fields: a bounded, printable alphabet.
EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,255}")
# Unix seconds; [0-9] rather than \d, which also matches non-ASCII digits.
UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
# A header this long is not a provider's; refusing it bounds the work an unsigned request causes.
MAX_SIGNATURE_HEADER_CHARS = 4096
MAX_SIGNATURES = 16
MAX_STRING = 255


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One verified provider event."""

    provider: str
    id: str
    """The provider's event id: the same on every retry, so it is the idempotency key."""
    type: str
    livemode: bool | None
    """None when the provider's events do not say (Paddle keeps sandbox and live apart by secret)."""
    occurred_at: str
    """The provider's event time, ISO 8601 UTC: the `time` of every Braze object made from it."""
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BrazeObject:
    array: Array
    object: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Mapped:
    objects: tuple[BrazeObject, ...]
    payment_keys: tuple[str, ...] = ()
    """Ids of the money this event counts (PaymentIntent, invoice): one purchase per payment, whichever
    of the provider's several events for it arrives first."""
    shared_keys: tuple[str, ...] = ()
    """Claimed for this event without a condition: events of the same kind may hold them together."""
    absent_keys: tuple[str, ...] = ()
    """Keys that must not be held: another kind of event already counted the same money."""


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str


@dataclass(frozen=True, slots=True)
class UserNotFound:
    reason: str
    objects: tuple[BrazeObject, ...]
    """What would have been sent, without an identifier: an operator can add one and replay it."""


Outcome = Mapped | Ignored | UserNotFound


class MappingError(Exception):
    """A verified event whose shape the mapping cannot read; the message is the reason kept with it.

    Messages name fields, never their values (values are emails, names, addresses).
    """


class SignatureScheme(Protocol):
    @property
    def header(self) -> str:  # read-only, so a frozen dataclass's field satisfies it
        """The request header that carries the signature (named in answers and in the API document)."""
        ...

    def verified(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, settings: WebhookSettings
    ) -> Any:
        """The signed document (the parsed JSON body) once the signature is checked; RequestRejected if not."""
        ...


class Provider(Protocol):
    name: str

    @property
    def signature(self) -> SignatureScheme: ...  # read-only, so a provider may hold a specific scheme

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, settings: WebhookSettings
    ) -> ProviderEvent: ...

    def expected_livemode(self, settings: WebhookSettings) -> bool | None: ...

    def map(self, event: ProviderEvent, settings: WebhookSettings) -> Outcome: ...


# ---------------------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimestampedHmac:
    """A header `<timestamp_key>=<unix seconds><separator><signature_key>=<hex>[...]` holding HMAC-SHA256
    signatures of `<timestamp><joiner><raw body>`, keyed with each signing secret as it is written.

    One verification path for every provider that signs this way; what differs between them is this
    data. Steps: the header is present, well formed and not oversized (400/401); some signature matches
    some secret, compared in constant time (401); only then is the timestamp checked against
    now ± the tolerance setting, both ways (401); then the body is parsed as strict JSON (400).
    """

    header: str
    separator: str
    timestamp_key: str
    signature_key: str
    joiner: bytes
    tolerance_setting: str  # the WebhookSettings field: seconds the timestamp may be off, either way

    def verified(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], now: float, settings: WebhookSettings
    ) -> Any:
        value = headers.get(self.header.lower())
        if value is None or not value.strip():
            raise missing_signature(self.header)
        timestamp, signatures = parse_signature_header(
            value,
            self.header,
            separator=self.separator,
            timestamp_key=self.timestamp_key,
            signature_key=self.signature_key,
        )
        if not any_signature_matches(secrets, timestamp.encode("ascii") + self.joiner + body, signatures):
            raise invalid_signature(self.header)
        check_timestamp(int(timestamp), now, getattr(settings, self.tolerance_setting), self.header)
        return parse_json(body)


def any_signature_matches(secrets: Sequence[str], signed: bytes, presented: Sequence[str]) -> bool:
    """Whether any presented hex HMAC-SHA256 of `signed` matches any secret, compared in constant time.

    Both sides are bytes: hmac.compare_digest raises TypeError for a str with non-ASCII characters,
    which would turn an attacker's `v1=é` into a 500. Every pair is compared, so the time taken says
    nothing about which secret or which signature matched.
    """
    candidates = [value.encode("utf-8", "surrogatepass") for value in presented]
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8", "surrogatepass"), signed, hashlib.sha256).hexdigest().encode()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def check_timestamp(timestamp: int, now: float, tolerance_seconds: int, header: str) -> None:
    """Refuse a signature timestamp outside now ± tolerance: both directions, unlike Stripe's library."""
    if timestamp < now - tolerance_seconds:
        raise RequestRejected(
            401,
            "stale_timestamp",
            f"the {header} timestamp is more than {tolerance_seconds} seconds old; a replay is refused",
        )
    if timestamp > now + tolerance_seconds:
        raise RequestRejected(
            401,
            "future_timestamp",
            f"the {header} timestamp is more than {tolerance_seconds} seconds in the future; check the sender's clock",
        )


def missing_signature(header: str) -> RequestRejected:
    return RequestRejected(401, "missing_signature", f"the {header} header is missing; the request is not signed")


def malformed_header(header: str, detail: str) -> RequestRejected:
    return RequestRejected(400, "malformed_signature_header", f"the {header} header is malformed: {detail}")


def invalid_signature(header: str) -> RequestRejected:
    return RequestRejected(
        401,
        "invalid_signature",
        f"no signature in {header} matches the body with this endpoint's signing secrets",
    )


def invalid_event(reason: str) -> RequestRejected:
    return RequestRejected(400, "invalid_event", reason)


# ---------------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------------


def iso_from_unix(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_from_rfc3339(value: str) -> str | None:
    """An RFC 3339 date-time as ISO 8601 UTC with milliseconds, or None when it is not one."""
    if not (10 < len(value) <= 40 and value.isascii() and value[10] in "Tt"):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------------------------------
# Users and objects
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    identifier: dict[str, Any]

    @classmethod
    def external_id(cls, value: str) -> User:
        return cls({"external_id": value})

    @classmethod
    def alias(cls, name: str, label: str) -> User:
        return cls({"user_alias": {"alias_name": name, "alias_label": label}})


def text(value: object) -> str | None:
    """A non-blank string, else None."""
    return value if isinstance(value, str) and value.strip() else None


def short_text(value: object) -> str | None:
    """A non-blank string cut to Braze's 255-character limit for property values, else None."""
    found = text(value)
    return found[:MAX_STRING] if found is not None else None


def object_id(value: object) -> str | None:
    """An id field that the provider sends either as the id or as the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return text(value)


def event_object(name: str, time: str, properties: dict[str, Any]) -> BrazeObject:
    return BrazeObject("events", {"name": name, "time": time, "properties": _present(properties)})


def purchase_object(product_id: str, currency: str, price: float, time: str, properties: dict[str, Any]) -> BrazeObject:
    # Quantity 1 with the line's whole amount: Braze records quantity n as n purchases, caps it at
    # 100, and seats or usage can exceed that; the provider's quantity goes in the properties.
    return BrazeObject(
        "purchases",
        {
            "product_id": product_id[:MAX_STRING],
            "currency": currency,
            "price": price,
            "quantity": 1,
            "time": time,
            "properties": _present(properties),
        },
    )


def for_user(
    user: User | None,
    objects: list[BrazeObject],
    *,
    not_found: str,
    payment_keys: tuple[str, ...] = (),
    shared_keys: tuple[str, ...] = (),
    absent_keys: tuple[str, ...] = (),
) -> Mapped | UserNotFound:
    """The objects addressed to `user`, or UserNotFound with them unaddressed."""
    if user is None:
        return UserNotFound(not_found, tuple(objects))
    addressed = [BrazeObject(o.array, {**user.identifier, **o.object}) for o in objects]
    if "user_alias" in user.identifier:
        # Events and purchases never create an alias-only profile (BRAZE_API.md §2.3); an attributes
        # object with _update_existing_only false, processed before them, makes sure it exists.
        addressed.insert(0, BrazeObject("attributes", {**user.identifier, "_update_existing_only": False}))
    return Mapped(tuple(addressed), payment_keys, shared_keys, absent_keys)


def _present(properties: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in properties.items() if value is not None}


def dig(value: Any, *path: str) -> Any:
    """value[path[0]][path[1]]..., or None as soon as a step is not an object holding the key."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def parse_signature_header(
    header: str, name: str, *, separator: str, timestamp_key: str, signature_key: str
) -> tuple[str, list[str]]:
    """Split a `<timestamp_key>=…<separator><signature_key>=…` header (Stripe's `t=…,v1=…`, Paddle's
    `ts=…;h1=…`) into its timestamp and every signature, or raise a 400 saying what is wrong."""
    if len(header) > MAX_SIGNATURE_HEADER_CHARS:
        raise malformed_header(name, f"it is longer than {MAX_SIGNATURE_HEADER_CHARS} characters")
    listing = "comma" if separator == "," else "semicolon"
    timestamp: str | None = None
    signatures: list[str] = []
    for item in header.split(separator):
        key, equals, value = item.strip().partition("=")
        if not equals:
            example = f"{timestamp_key}=...{separator}{signature_key}=..."
            raise malformed_header(name, f"expected {listing}-separated key=value items such as {example}")
        if key == timestamp_key:
            if timestamp is not None:
                raise malformed_header(name, f"{timestamp_key}= appears more than once")
            if not UNIX_SECONDS.fullmatch(value):
                raise malformed_header(name, f"{timestamp_key}= is not a Unix time in seconds")
            timestamp = value
        elif key == signature_key:
            signatures.append(value)
        # Other keys are other (or future) schemes: ignored, so they cannot break verification.
    if timestamp is None:
        raise malformed_header(name, f"it has no {timestamp_key}= timestamp")
    if not signatures:
        raise malformed_header(name, f"it has no {signature_key}= signature")
    if len(signatures) > MAX_SIGNATURES:
        raise malformed_header(name, f"it has more than {MAX_SIGNATURES} {signature_key}= signatures")
    return timestamp, signatures

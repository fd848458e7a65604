"""Validation of Braze /users/track and /users/identify objects against Braze's documented rules."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from braze_forwarder.braze import validation
from braze_forwarder.braze.reference.countries import COUNTRY_CODES
from braze_forwarder.braze.reference.currencies import CURRENCY_CODES, CURRENCY_EXPONENTS
from braze_forwarder.braze.reference.languages import LANGUAGE_CODES
from braze_forwarder.braze.reference.time_zones import TIME_ZONES
from braze_forwarder.braze.validation import (
    DEFAULT_LIMITS,
    IDENTIFY_ARRAYS,
    TRACK_ARRAYS,
    Limits,
    NestingTooDeep,
    Problem,
    check_alias_object,
    check_delete_identifier,
    check_identify_object,
    check_merge_object,
    check_track_object,
)

# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------

# Every type the module can answer, read from its docstring so that the list there stays complete.
DOCUMENTED_TYPES = frozenset(re.findall(r"^ {2}([A-Z][A-Z_]+)", validation.__doc__ or "", re.MULTILINE)) | {
    name for line in (validation.__doc__ or "").splitlines() for name in re.findall(r"/ ([A-Z][A-Z_]+)", line)
}

# Values that are Braze's own words, which a reason may well name.
BRAZE_VOCABULARY = frozenset(
    {
        "identified",
        "unidentified",
        "most_recently_updated",
        "least_recently_updated",
        "subscribed",
        "unsubscribed",
    }
)
EXT = "user-4711"
ALIAS = {"alias_name": "device-8675309", "alias_label": "device_identifier"}
TIME = "2023-11-14T22:13:20Z"
GROUP_ID = "2f6c3b2a-6b8e-4b2a-9d0f-0a1b2c3d4e5f"


def encoded_size(obj: Any) -> int:
    """The caller's measure: compact, ASCII-escaped JSON."""
    try:
        return len(json.dumps(obj, separators=(",", ":")))
    except ValueError:  # ints past the str-digit limit: json.loads never yields them
        return 10**9


def track(array: str, obj: Any, limits: Limits = DEFAULT_LIMITS) -> Problem | None:
    return check_track_object(array, obj, encoded_size(obj), limits)


def identify(array: str, obj: Any, limits: Limits = DEFAULT_LIMITS) -> Problem | None:
    return check_identify_object(array, obj, encoded_size(obj), limits)


# /users/delete, /users/alias/new and /users/merge share array names: their cases name the route too.
USER_DATA_CHECKS = {"delete": check_delete_identifier, "alias": check_alias_object, "merge": check_merge_object}


def check(array: str, obj: Any, limits: Limits = DEFAULT_LIMITS) -> Problem | None:
    route, _, name = array.rpartition(":")
    if route:
        return USER_DATA_CHECKS[route](name, obj, len(json.dumps(obj)), limits)
    return (track if array in TRACK_ARRAYS else identify)(array, obj, limits)


def string_leaves(value: Any) -> list[str]:
    found: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            found.append(node)
    return found


def assert_problem(problem: Problem | None, expected_type: str, obj: Any, secret: str | None) -> None:
    assert problem is not None, "expected a problem, got None"
    assert isinstance(problem, Problem)
    assert problem.type == expected_type, problem
    assert problem.type in DOCUMENTED_TYPES, f"{problem.type} is missing from the module docstring"
    assert problem.reason.endswith("."), problem.reason
    # The reason never repeats a value: values are emails, phone numbers and names.
    if secret is not None:
        assert secret not in problem.reason
    for leaf in string_leaves(obj):
        if len(leaf) >= 8 and leaf not in BRAZE_VOCABULARY:
            assert leaf not in problem.reason, (leaf, problem.reason)


def a(**fields: Any) -> dict[str, Any]:
    """An attributes object for EXT with the given fields."""
    return {"external_id": EXT, **fields}


def ev(**fields: Any) -> dict[str, Any]:
    """A valid event for EXT with the given fields."""
    return {"external_id": EXT, "name": "rented_movie", "time": TIME, **fields}


def pu(**fields: Any) -> dict[str, Any]:
    """A valid purchase for EXT with the given fields."""
    return {
        "external_id": EXT,
        "product_id": "backpack",
        "currency": "USD",
        "price": 40.0,
        "time": TIME,
        **fields,
    }


def without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


def deep(levels: int) -> Any:
    """``levels`` containers inside each other, alternating object and array."""
    value: Any = "bottom"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@dataclass(frozen=True)
class Case:
    """One table row. Invalid rows name the expected type and the offending value a reason must hide."""

    id: str
    array: str
    obj: Any
    type: str | None = None
    secret: str | None = None
    limits: Limits = DEFAULT_LIMITS


def valid(id: str, array: str, obj: Any, limits: Limits = DEFAULT_LIMITS) -> Any:
    return pytest.param(Case(id, array, obj, limits=limits), id=id)


def invalid(
    id: str, array: str, obj: Any, type: str, secret: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> Any:
    return pytest.param(Case(id, array, obj, type, secret, limits), id=id)


def run_valid(case: Case) -> None:
    assert check(case.array, case.obj, case.limits) is None


def run_invalid(case: Case) -> None:
    assert case.type is not None
    assert_problem(check(case.array, case.obj, case.limits), case.type, case.obj, case.secret)


# ---------------------------------------------------------------------------------------------------
# Identifiers and flags (every track array)
# ---------------------------------------------------------------------------------------------------

IDENTIFIER_VALID = [
    valid("external_id", "attributes", {"external_id": EXT}),
    valid("external_id-non-ascii", "events", ev(external_id="ユーザー-四七一一")),
    valid("external_id-987-bytes", "attributes", {"external_id": "x" * 987}),
    valid("external_id-986-bytes-of-2-byte-chars", "attributes", {"external_id": "é" * 493}),
    valid("external_id-984-bytes-of-emoji", "attributes", {"external_id": "😀" * 246}),
    valid("user_alias", "events", without(ev(user_alias=ALIAS), "external_id")),
    valid("braze_id", "purchases", without(pu(braze_id="5cd2b3b0e5bf3b0001e0a1b2"), "external_id")),
    valid("email-only", "attributes", {"email": "ada@lovelace.test", "first_name": "Ada"}),
    valid("email-unicode-local-part", "attributes", {"email": "ünïcödé.user@example.com"}),
    valid("email-plus-tag-subdomain", "events", without(ev(email="a.b+tag@mail.example.co.uk"), "external_id")),
    valid("email-punycode-domain", "attributes", {"email": "ada@xn--bcher-kva.example"}),
    valid("email-null-with-primary", "attributes", a(email=None)),
    valid("email-attribute-beside-primary", "purchases", pu(email="ada@lovelace.test")),
    valid("phone-only-e164", "attributes", {"phone": "+15555555555"}),
    valid("phone-not-e164-is-allowed", "events", without(ev(phone="(555) 555-5555"), "external_id")),
    valid("phone-null-with-primary", "attributes", a(phone=None)),
    valid("email-and-phone-without-primary", "attributes", {"email": "ada@lovelace.test", "phone": "+4930"}),
    valid("update-existing-only-false", "attributes", {"user_alias": ALIAS, "_update_existing_only": False}),
    valid("update-existing-only-true", "events", ev(_update_existing_only=True)),
    valid(
        "push-token-import-without-identifier",
        "attributes",
        {"push_token_import": True, "push_tokens": [{"app_id": "app-1", "token": "tok-abc"}]},
    ),
    valid(
        "push-token-import-with-alias",
        "attributes",
        {"push_token_import": True, "user_alias": ALIAS, "push_tokens": [{"app_id": "app", "token": "t"}]},
    ),
    valid("push-token-import-false", "attributes", a(push_token_import=False)),
]

IDENTIFIER_INVALID = [
    invalid("not-an-object-list", "attributes", [EXT], "INVALID_OBJECT"),
    invalid("not-an-object-string", "events", "secret-string-item", "INVALID_OBJECT", "secret-string-item"),
    invalid("not-an-object-null", "purchases", None, "INVALID_OBJECT"),
    invalid("not-an-object-number", "attributes", 12345, "INVALID_OBJECT"),
    invalid("external_id-and-user_alias", "attributes", a(user_alias=ALIAS), "MULTIPLE_PRIMARY_IDENTIFIERS"),
    invalid("external_id-and-braze_id", "events", ev(braze_id="braze-123456"), "MULTIPLE_PRIMARY_IDENTIFIERS"),
    invalid(
        "user_alias-and-braze_id",
        "purchases",
        without(pu(user_alias=ALIAS, braze_id="braze-123456"), "external_id"),
        "MULTIPLE_PRIMARY_IDENTIFIERS",
    ),
    invalid("no-identifier", "attributes", {"first_name": "Anonymous-Ada"}, "MISSING_IDENTIFIER"),
    invalid("no-identifier-event", "events", without(ev(), "external_id"), "MISSING_IDENTIFIER"),
    invalid("external_id-empty", "attributes", {"external_id": ""}, "BAD_EXTERNAL_ID"),
    invalid("external_id-number", "events", ev(external_id=4711), "BAD_EXTERNAL_ID"),
    invalid("external_id-null", "attributes", {"external_id": None}, "BAD_EXTERNAL_ID"),
    invalid("external_id-object", "purchases", pu(external_id={"id": "secret-id-1"}), "BAD_EXTERNAL_ID"),
    invalid(
        "external_id-lone-surrogate",
        "attributes",
        {"external_id": "secret-\ud800-id"},
        "BAD_EXTERNAL_ID",
        "secret-\ud800-id",
    ),
    invalid("external_id-988-bytes", "attributes", {"external_id": "x" * 988}, "EXTERNAL_USER_ID_TOO_LARGE"),
    invalid(
        "external_id-988-bytes-of-2-byte-chars",
        "events",
        ev(external_id="é" * 494),
        "EXTERNAL_USER_ID_TOO_LARGE",
    ),
    invalid(
        "user_alias-missing-label",
        "attributes",
        {"user_alias": {"alias_name": "secret-alias"}},
        "BAD_USER_ALIAS",
        "secret-alias",
    ),
    invalid("user_alias-extra-key", "attributes", {"user_alias": {**ALIAS, "x": "y"}}, "BAD_USER_ALIAS"),
    invalid("user_alias-empty-name", "attributes", {"user_alias": {**ALIAS, "alias_name": ""}}, "BAD_USER_ALIAS"),
    invalid(
        "user_alias-256-char-label",
        "attributes",
        {"user_alias": {**ALIAS, "alias_label": "l" * 256}},
        "BAD_USER_ALIAS",
    ),
    invalid("user_alias-string", "events", without(ev(user_alias="secret-alias"), "external_id"), "BAD_USER_ALIAS"),
    invalid("braze_id-empty", "attributes", {"braze_id": ""}, "BAD_BRAZE_ID"),
    invalid("braze_id-number", "attributes", {"braze_id": 123456}, "BAD_BRAZE_ID"),
    invalid("email-no-at", "attributes", {"email": "secret.example.com"}, "EMAIL_BAD_FORMAT", "secret.example.com"),
    invalid("email-whitespace", "attributes", a(email="secret ada@example.com"), "EMAIL_BAD_FORMAT"),
    invalid("email-no-tld", "events", without(ev(email="secret@localhost"), "external_id"), "EMAIL_BAD_FORMAT"),
    invalid("email-leading-dot", "attributes", a(email=".secret@example.com"), "EMAIL_BAD_FORMAT"),
    invalid("email-double-dot-domain", "attributes", a(email="secret@example..com"), "EMAIL_BAD_FORMAT"),
    invalid("email-hyphen-label", "attributes", a(email="secret@-example.com"), "EMAIL_BAD_FORMAT"),
    invalid("email-unicode-domain", "attributes", a(email="secret@bücher.example"), "EMAIL_BAD_FORMAT"),
    invalid("email-local-part-65", "attributes", a(email="s" * 65 + "@example.com"), "EMAIL_BAD_FORMAT"),
    invalid("email-255-chars", "attributes", a(email="s@" + "d" * 249 + ".com"), "EMAIL_BAD_FORMAT"),
    invalid("email-number", "attributes", a(email=12345), "EMAIL_BAD_FORMAT"),
    invalid(
        "email-null-without-primary",
        "attributes",
        {"email": None, "phone": "+15555555555"},
        "EMAIL_BAD_FORMAT",
    ),
    invalid("email-null-in-event", "events", ev(email=None), "EMAIL_BAD_FORMAT"),
    invalid("phone-empty", "attributes", {"phone": ""}, "BAD_PHONE"),
    invalid("phone-number", "attributes", a(phone=15555555555), "BAD_PHONE"),
    invalid("phone-null-in-purchase", "purchases", pu(phone=None), "BAD_PHONE"),
    invalid("phone-null-without-primary", "attributes", {"phone": None, "email": "ada@x.test"}, "BAD_PHONE"),
    invalid("update-existing-only-string", "events", ev(_update_existing_only="false"), "BAD_UPDATE_EXISTING_ONLY"),
    invalid("push-token-import-string", "attributes", a(push_token_import="yes"), "BAD_PUSH_TOKEN_IMPORT"),
    invalid(
        "push-token-import-with-external_id",
        "attributes",
        a(push_token_import=True, push_tokens=[{"app_id": "app", "token": "t"}]),
        "BAD_PUSH_TOKEN_IMPORT",
    ),
    invalid(
        "push-token-import-with-braze_id",
        "attributes",
        {"braze_id": "b-1", "push_token_import": True, "push_tokens": [{"app_id": "app", "token": "t"}]},
        "BAD_PUSH_TOKEN_IMPORT",
    ),
    invalid("push-token-import-without-tokens", "attributes", {"push_token_import": True}, "BAD_PUSH_TOKEN_IMPORT"),
    invalid(
        "push-token-import-empty-tokens",
        "attributes",
        {"push_token_import": True, "push_tokens": []},
        "BAD_PUSH_TOKEN_IMPORT",
    ),
]


@pytest.mark.parametrize("case", IDENTIFIER_VALID)
def test_identifiers_valid(case: Case) -> None:
    run_valid(case)


@pytest.mark.parametrize("case", IDENTIFIER_INVALID)
def test_identifiers_invalid(case: Case) -> None:
    run_invalid(case)


# ---------------------------------------------------------------------------------------------------
# Attributes: reserved profile fields
# ---------------------------------------------------------------------------------------------------

SUBSCRIBED = {"subscription_group_id": GROUP_ID, "subscription_state": "subscribed"}
TOKEN = {"app_id": "app-identifier", "token": "push-token-string"}

RESERVED_VALID = [
    valid("first_name", "attributes", a(first_name="Ada")),
    valid("first_name-255", "attributes", a(first_name="A" * 255)),
    valid("last_name-null", "attributes", a(last_name=None)),
    valid("home_city", "attributes", a(home_city="Berlin")),
    *(valid(f"gender-{g}", "attributes", a(gender=g)) for g in ("M", "F", "O", "N", "P")),
    valid("gender-null", "attributes", a(gender=None)),
    valid("dob", "attributes", a(dob="1990-07-14")),
    valid("dob-leap-day", "attributes", a(dob="2000-02-29")),
    valid("dob-null", "attributes", a(dob=None)),
    valid("country", "attributes", a(country="US")),
    valid("country-aland", "attributes", a(country="AX")),
    valid("country-null", "attributes", a(country=None)),
    valid("language", "attributes", a(language="en")),
    valid("language-null", "attributes", a(language=None)),
    valid("time_zone", "attributes", a(time_zone="America/New_York")),
    valid("time_zone-utc", "attributes", a(time_zone="UTC")),
    valid("time_zone-null", "attributes", a(time_zone=None)),
    *(valid(f"email_subscribe-{s}", "attributes", a(email_subscribe=s)) for s in ("opted_in", "subscribed")),
    valid("push_subscribe-unsubscribed", "attributes", a(push_subscribe="unsubscribed")),
    valid("subscription_groups", "attributes", a(subscription_groups=[SUBSCRIBED])),
    valid("subscription_groups-empty", "attributes", a(subscription_groups=[])),
    valid(
        "subscription_groups-double-opt-in",
        "attributes",
        a(subscription_groups=[{**SUBSCRIBED, "use_double_opt_in_logic": True}]),
    ),
    valid(
        "subscription_groups-unsubscribed-upper-case-uuid",
        "attributes",
        a(subscription_groups=[{"subscription_group_id": GROUP_ID.upper(), "subscription_state": "unsubscribed"}]),
    ),
    valid("current_location", "attributes", a(current_location={"longitude": -73.99, "latitude": 40.75})),
    valid(
        "current_location-ints-at-edges",
        "attributes",
        a(current_location={"longitude": 180, "latitude": -90}),
    ),
    *(
        valid(f"date_of_first_session-{label}", "attributes", a(date_of_first_session=value))
        for label, value in [
            ("iso-date", "2024-01-31"),
            ("iso-utc", "2024-01-31T10:00:00Z"),
            ("iso-offset-fraction", "2024-01-31T10:00:00.123+05:30"),
            ("braze-millis", "2024-01-31T10:00:00:123-0800"),
            ("no-zone", "2024-01-31T10:00:00"),
            ("space", "2024-01-31 10:00:00"),
            ("us-slashes", "01/31/2024"),
            ("unix-date", "Wed Jan 31 10:00:00 UTC 2024"),
            ("numeric-month-tzd", "Wed 01 31 10:00:00.+0000 2024"),
        ]
    ),
    valid("date_of_last_session", "attributes", a(date_of_last_session="2024-02-29T23:59:59Z")),
    valid("marked_email_as_spam_at", "attributes", a(marked_email_as_spam_at="2024-03-01")),
    valid("email_open_tracking_disabled", "attributes", a(email_open_tracking_disabled=True)),
    valid("email_click_tracking_disabled", "attributes", a(email_click_tracking_disabled=False)),
    valid("push_tokens", "attributes", a(push_tokens=[TOKEN])),
    valid("push_tokens-device_id-8-bytes", "attributes", a(push_tokens=[{**TOKEN, "device_id": "d" * 8}])),
    valid("push_tokens-device_id-255-bytes", "attributes", a(push_tokens=[{**TOKEN, "device_id": "d" * 255}])),
    valid("merge_objects", "attributes", a(_merge_objects=True, pets={"name": "Rex"})),
    valid("reserved-names-are-case-sensitive", "attributes", a(First_Name=12, Gender="whatever")),
]

RESERVED_INVALID = [
    invalid("first_name-number", "attributes", a(first_name=42), "BAD_ATTRIBUTE_VALUE"),
    invalid("last_name-256", "attributes", a(last_name="L" * 256), "STRING_TOO_LONG"),
    invalid("home_city-list", "attributes", a(home_city=["secret-city"]), "BAD_ATTRIBUTE_VALUE"),
    invalid("gender-word", "attributes", a(gender="secret-gender"), "BAD_GENDER", "secret-gender"),
    invalid("gender-lower-case", "attributes", a(gender="f"), "BAD_GENDER"),
    invalid("gender-number", "attributes", a(gender=1), "BAD_GENDER"),
    invalid("dob-not-a-day", "attributes", a(dob="1990-02-30"), "BAD_DOB", "1990-02-30"),
    invalid("dob-not-leap", "attributes", a(dob="1900-02-29"), "BAD_DOB", "1900-02-29"),
    invalid("dob-slashes", "attributes", a(dob="07/14/1990"), "BAD_DOB", "07/14/1990"),
    invalid("dob-datetime", "attributes", a(dob="1990-07-14T00:00:00Z"), "BAD_DOB"),
    invalid("dob-year-zero", "attributes", a(dob="0000-01-01"), "BAD_DOB", "0000-01-01"),
    invalid("country-name", "attributes", a(country="Secretland"), "BAD_COUNTRY", "Secretland"),
    invalid("country-lower-case", "attributes", a(country="de"), "BAD_COUNTRY"),
    invalid("country-unassigned", "attributes", a(country="QQ"), "BAD_COUNTRY", "QQ"),
    invalid("country-list", "attributes", a(country=["US"]), "BAD_COUNTRY"),
    invalid("language-upper-case", "attributes", a(language="EN"), "BAD_LANGUAGE"),
    invalid("language-name", "attributes", a(language="secretish"), "BAD_LANGUAGE", "secretish"),
    invalid("language-unassigned", "attributes", a(language="qq"), "BAD_LANGUAGE"),
    invalid("time_zone-unknown", "attributes", a(time_zone="Secret/Nowhere"), "BAD_TIME_ZONE", "Secret/Nowhere"),
    invalid("time_zone-wrong-case", "attributes", a(time_zone="america/new_york"), "BAD_TIME_ZONE"),
    invalid("time_zone-offset", "attributes", a(time_zone="+05:30"), "BAD_TIME_ZONE"),
    invalid("email_subscribe", "attributes", a(email_subscribe="secret-yes"), "BAD_EMAIL_SUBSCRIPTION_STATE"),
    invalid("email_subscribe-null", "attributes", a(email_subscribe=None), "BAD_EMAIL_SUBSCRIPTION_STATE"),
    invalid("push_subscribe", "attributes", a(push_subscribe="secret-maybe"), "BAD_PUSH_SUBSCRIPTION_STATE"),
    invalid(
        "subscription_groups-object",
        "attributes",
        a(subscription_groups=SUBSCRIBED),
        "BAD_SUBSCRIPTION_GROUP_ARRAY",
    ),
    invalid(
        "subscription_groups-item-string",
        "attributes",
        a(subscription_groups=[GROUP_ID]),
        "BAD_SUBSCRIPTION_GROUP_HASH",
    ),
    invalid(
        "subscription_groups-missing-state",
        "attributes",
        a(subscription_groups=[{"subscription_group_id": GROUP_ID}]),
        "BAD_SUBSCRIPTION_GROUP_HASH",
    ),
    invalid(
        "subscription_groups-extra-key",
        "attributes",
        a(subscription_groups=[{**SUBSCRIBED, "channel": "email"}]),
        "BAD_SUBSCRIPTION_GROUP_HASH",
    ),
    invalid(
        "subscription_groups-id-not-uuid",
        "attributes",
        a(subscription_groups=[{**SUBSCRIBED, "subscription_group_id": "secret-group-id"}]),
        "BAD_SUBSCRIPTION_GROUP_ID",
        "secret-group-id",
    ),
    invalid(
        "subscription_groups-state-opted_in",
        "attributes",
        a(subscription_groups=[{**SUBSCRIBED, "subscription_state": "opted_in"}]),
        "BAD_SUBSCRIPTION_GROUP_STATE",
        "opted_in",
    ),
    invalid(
        "subscription_groups-double-opt-in-when-unsubscribing",
        "attributes",
        a(subscription_groups=[{**SUBSCRIBED, "subscription_state": "unsubscribed", "use_double_opt_in_logic": True}]),
        "BAD_SUBSCRIPTION_GROUP_HASH",
    ),
    invalid(
        "subscription_groups-double-opt-in-string",
        "attributes",
        a(subscription_groups=[{**SUBSCRIBED, "use_double_opt_in_logic": "yes"}]),
        "BAD_SUBSCRIPTION_GROUP_HASH",
    ),
    invalid(
        "current_location-missing-latitude",
        "attributes",
        a(current_location={"longitude": 1}),
        "BAD_LOCATION_UPDATE",
    ),
    invalid(
        "current_location-latitude-out-of-range",
        "attributes",
        a(current_location={"longitude": 1, "latitude": 90.5}),
        "BAD_LOCATION_UPDATE",
    ),
    invalid(
        "current_location-strings",
        "attributes",
        a(current_location={"longitude": "13.4", "latitude": "52.5"}),
        "BAD_LOCATION_UPDATE",
    ),
    invalid(
        "current_location-booleans",
        "attributes",
        a(current_location={"longitude": True, "latitude": False}),
        "BAD_LOCATION_UPDATE",
    ),
    invalid(
        "current_location-extra-key",
        "attributes",
        a(current_location={"longitude": 1, "latitude": 2, "altitude": 3}),
        "BAD_LOCATION_UPDATE",
    ),
    invalid("current_location-list", "attributes", a(current_location=[13.4, 52.5]), "BAD_LOCATION_UPDATE"),
    invalid("date_of_first_session-word", "attributes", a(date_of_first_session="secret-yesterday"), "BAD_DATE"),
    invalid(
        "date_of_last_session-month-13",
        "attributes",
        a(date_of_last_session="2024-13-01"),
        "BAD_DATE",
        "2024-13-01",
    ),
    invalid(
        "date_of_last_session-april-31",
        "attributes",
        a(date_of_last_session="04/31/2024"),
        "BAD_DATE",
        "04/31/2024",
    ),
    invalid("marked_email_as_spam_at-number", "attributes", a(marked_email_as_spam_at=1700000000), "BAD_DATE"),
    invalid(
        "email_open_tracking_disabled-string",
        "attributes",
        a(email_open_tracking_disabled="true"),
        "BAD_ATTRIBUTE_VALUE",
    ),
    invalid(
        "email_click_tracking_disabled-null",
        "attributes",
        a(email_click_tracking_disabled=None),
        "BAD_ATTRIBUTE_VALUE",
    ),
    invalid("push_tokens-object", "attributes", a(push_tokens=TOKEN), "BAD_PUSH_TOKEN_VALUE"),
    invalid(
        "push_tokens-item-string",
        "attributes",
        a(push_tokens=["secret-token"]),
        "BAD_PUSH_TOKEN_VALUE",
        "secret-token",
    ),
    invalid("push_tokens-extra-key", "attributes", a(push_tokens=[{**TOKEN, "os": "ios"}]), "BAD_PUSH_TOKEN_VALUE"),
    invalid(
        "push_tokens-missing-app_id",
        "attributes",
        a(push_tokens=[{"token": "secret-tok"}]),
        "BAD_PUSH_TOKEN_APP_ID",
    ),
    invalid(
        "push_tokens-token-number",
        "attributes",
        a(push_tokens=[{**TOKEN, "token": 12345}]),
        "BAD_PUSH_TOKEN_STRING",
    ),
    invalid(
        "push_tokens-token-empty",
        "attributes",
        a(push_tokens=[{**TOKEN, "token": ""}]),
        "BAD_PUSH_TOKEN_STRING",
    ),
    invalid(
        "push_tokens-device_id-7-bytes",
        "attributes",
        a(push_tokens=[{**TOKEN, "device_id": "secret7"}]),
        "BAD_DEVICE_ID",
        "secret7",
    ),
    invalid(
        "push_tokens-device_id-256-bytes",
        "attributes",
        a(push_tokens=[{**TOKEN, "device_id": "é" * 128}]),
        "BAD_DEVICE_ID",
    ),
    invalid(
        "push_tokens-device_id-surrogate",
        "attributes",
        a(push_tokens=[{**TOKEN, "device_id": "\udc00" * 9}]),
        "BAD_DEVICE_ID",
    ),
    invalid("merge_objects-string", "attributes", a(_merge_objects="true"), "BAD_MERGE_OBJECTS"),
    invalid(
        "email_subscription_info",
        "attributes",
        a(email_subscription_info={"state": "secret-state"}),
        "INVALID_ATTRIBUTE_EMAIL_SUBSCRIPTION_INFO",
    ),
]


@pytest.mark.parametrize("case", RESERVED_VALID)
def test_reserved_fields_valid(case: Case) -> None:
    run_valid(case)


@pytest.mark.parametrize("case", RESERVED_INVALID)
def test_reserved_fields_invalid(case: Case) -> None:
    run_invalid(case)


# ---------------------------------------------------------------------------------------------------
# Attributes: custom attributes
# ---------------------------------------------------------------------------------------------------

SMALL_NESTED = Limits(max_nested_attribute_bytes=100)
PET = {"id": 1, "type": "dog", "breed": "beagle"}
REMOVE_PET = {"$identifier_key": "id", "$identifier_value": 1}
UPDATE_PET = {"$identifier_key": "id", "$identifier_value": 1, "$new_object": {"breed": "corgi"}}

CUSTOM_VALID = [
    valid("string", "attributes", a(plan="pro")),
    valid("string-255", "attributes", a(plan="p" * 255)),
    valid("date-like-string-is-just-a-string", "attributes", a(renewal="31.02.2024 sometime")),
    valid("integer", "attributes", a(visits=12)),
    valid("huge-integer", "attributes", a(visits=10**40)),
    valid("float", "attributes", a(score=4.5)),
    valid("boolean", "attributes", a(vip=True)),
    valid("null-removes", "attributes", a(plan=None)),
    valid("name-255", "attributes", a(**{"n" * 255: 1})),
    valid("name-with-spaces-and-dots", "attributes", a(**{"Favorite Color.v2": "blue"})),
    valid("scalar-array", "attributes", a(tags=["a", 1, 2.5, True])),
    valid("scalar-array-empty", "attributes", a(tags=[])),
    valid("scalar-array-500", "attributes", a(tags=list(range(500)))),
    valid("scalar-array-limit-configurable", "attributes", a(tags=[1, 2, 3]), Limits(max_array_items=3)),
    valid("inc", "attributes", a(visits={"inc": 1})),
    valid("inc-negative", "attributes", a(visits={"inc": -3})),
    valid("add", "attributes", a(tags={"add": ["c", 3]})),
    valid("remove", "attributes", a(tags={"remove": ["a"]})),
    valid("objects-add", "attributes", a(pets={"$add": [PET]})),
    valid(
        "objects-remove",
        "attributes",
        a(pets={"$remove": [REMOVE_PET, {**REMOVE_PET, "$identifier_value": "x"}]}),
    ),
    valid("objects-update-with-merge", "attributes", a(_merge_objects=True, pets={"$update": [UPDATE_PET]})),
    valid(
        "objects-update-merge-after",
        "attributes",
        {"external_id": EXT, "pets": {"$update": [UPDATE_PET]}, "_merge_objects": True},
    ),
    valid("array-of-objects", "attributes", a(pets=[PET, {**PET, "id": 2}])),
    valid(
        "nested-object",
        "attributes",
        a(
            car={
                "make": "Tesla",
                "model": {"name": "3", "year": 2021},
                "options": ["a", {"x": 1}],
                "seen": {"$time": "2024-01-01"},
            }
        ),
    ),
    valid("nested-empty-object", "attributes", a(car={})),
    valid("nested-time-at-top", "attributes", a(renewed_at={"$time": "2024-01-31T10:00:00Z"})),
    valid("nested-under-size-cap", "attributes", a(car={"make": "x" * 40}), SMALL_NESTED),
    valid("nested-op-like-key-alone-in-deeper-object", "attributes", a(car={"specs": {"add": "sunroof"}})),
]

CUSTOM_INVALID = [
    invalid("name-dollar", "attributes", a(**{"$secret_attr": 1}), "BAD_ATTRIBUTE_NAME", "$secret_attr"),
    invalid("name-empty", "attributes", a(**{"": 1}), "BAD_ATTRIBUTE_NAME"),
    invalid("name-256", "attributes", a(**{"n" * 256: 1}), "BAD_ATTRIBUTE_NAME"),
    invalid("string-256", "attributes", a(plan="p" * 256), "STRING_TOO_LONG"),
    invalid("float-nan", "attributes", a(score=float("nan")), "BAD_ATTRIBUTE_VALUE"),
    invalid("float-infinity", "attributes", a(score=float("inf")), "BAD_ATTRIBUTE_VALUE"),
    invalid("array-501", "attributes", a(tags=list(range(501))), "ARRAY_TOO_LONG"),
    invalid(
        "array-over-configured-limit",
        "attributes",
        a(tags=[1, 2, 3, 4]),
        "ARRAY_TOO_LONG",
        limits=Limits(max_array_items=3),
    ),
    invalid("array-string-256", "attributes", a(tags=["t" * 256]), "STRING_TOO_LONG"),
    invalid("array-null-item", "attributes", a(tags=["secret-tag", None]), "BAD_ATTRIBUTE_VALUE", "secret-tag"),
    invalid("array-of-arrays", "attributes", a(tags=[["a"]]), "BAD_ATTRIBUTE_VALUE"),
    invalid("array-scalars-then-object", "attributes", a(tags=["a", {"b": 1}]), "BAD_ATTRIBUTE_VALUE"),
    invalid(
        "array-objects-then-scalar",
        "attributes",
        a(pets=[PET, "secret-pet"]),
        "BAD_ATTRIBUTE_VALUE",
        "secret-pet",
    ),
    invalid("array-nan-item", "attributes", a(tags=[float("nan")]), "BAD_ATTRIBUTE_VALUE"),
    invalid("inc-string", "attributes", a(visits={"inc": "1"}), "BAD_INCREMENT"),
    invalid("inc-float", "attributes", a(visits={"inc": 1.5}), "BAD_INCREMENT"),
    invalid("inc-boolean", "attributes", a(visits={"inc": True}), "BAD_INCREMENT"),
    invalid("add-string", "attributes", a(tags={"add": "secret-tag"}), "BAD_ARRAY_OPERATION", "secret-tag"),
    invalid("remove-objects", "attributes", a(tags={"remove": [{"a": 1}]}), "BAD_ATTRIBUTE_VALUE"),
    invalid("add-501", "attributes", a(tags={"add": list(range(501))}), "ARRAY_TOO_LONG"),
    invalid("add-and-remove", "attributes", a(tags={"add": ["a"], "remove": ["b"]}), "BAD_ARRAY_OPERATION"),
    invalid("inc-with-other-key", "attributes", a(visits={"inc": 1, "by": "secret"}), "BAD_ARRAY_OPERATION"),
    invalid("unknown-operation", "attributes", a(pets={"$push": [PET]}), "BAD_ARRAY_OPERATION"),
    invalid("objects-add-object", "attributes", a(pets={"$add": PET}), "BAD_ARRAY_OPERATION"),
    invalid(
        "objects-add-scalars",
        "attributes",
        a(pets={"$add": ["secret-pet"]}),
        "BAD_ARRAY_OPERATION",
        "secret-pet",
    ),
    invalid("objects-add-bad-key", "attributes", a(pets={"$add": [{"pet name": "Rex"}]}), "BAD_NESTED_ATTRIBUTE"),
    invalid(
        "objects-remove-missing-value",
        "attributes",
        a(pets={"$remove": [{"$identifier_key": "id"}]}),
        "BAD_ARRAY_OPERATION",
    ),
    invalid(
        "objects-remove-null-value",
        "attributes",
        a(pets={"$remove": [{**REMOVE_PET, "$identifier_value": None}]}),
        "BAD_ARRAY_OPERATION",
    ),
    invalid(
        "objects-remove-extra-key",
        "attributes",
        a(pets={"$remove": [{**REMOVE_PET, "x": 1}]}),
        "BAD_ARRAY_OPERATION",
    ),
    invalid("objects-update-without-merge", "attributes", a(pets={"$update": [UPDATE_PET]}), "BAD_ARRAY_OPERATION"),
    invalid(
        "objects-update-merge-false",
        "attributes",
        a(_merge_objects=False, pets={"$update": [UPDATE_PET]}),
        "BAD_ARRAY_OPERATION",
    ),
    invalid(
        "objects-update-missing-new-object",
        "attributes",
        a(_merge_objects=True, pets={"$update": [without(UPDATE_PET, "$new_object")]}),
        "BAD_ARRAY_OPERATION",
    ),
    invalid(
        "objects-update-null-in-new-object",
        "attributes",
        a(_merge_objects=True, pets={"$update": [{**UPDATE_PET, "$new_object": {"breed": None}}]}),
        "BAD_NESTED_ATTRIBUTE",
    ),
    invalid("nested-key-space", "attributes", a(car={"secret key": 1}), "BAD_NESTED_ATTRIBUTE"),
    invalid("nested-key-dot", "attributes", a(car={"model.name": 1}), "BAD_NESTED_ATTRIBUTE"),
    invalid("nested-key-dollar", "attributes", a(car={"model": {"$name": 1}}), "BAD_NESTED_ATTRIBUTE"),
    invalid("nested-key-empty", "attributes", a(car={"": 1}), "BAD_NESTED_ATTRIBUTE"),
    invalid("nested-key-256", "attributes", a(car={"k" * 256: 1}), "BAD_NESTED_ATTRIBUTE"),
    invalid("nested-null-value", "attributes", a(car={"make": None}), "BAD_NESTED_ATTRIBUTE"),
    invalid(
        "nested-null-in-array",
        "attributes",
        a(car={"owners": ["secret-owner", None]}),
        "BAD_NESTED_ATTRIBUTE",
        "secret-owner",
    ),
    invalid("nested-string-256", "attributes", a(car={"make": "m" * 256}), "BAD_NESTED_ATTRIBUTE"),
    invalid("nested-nan", "attributes", a(car={"price": float("nan")}), "BAD_NESTED_ATTRIBUTE"),
    invalid(
        "nested-time-not-a-date",
        "attributes",
        a(car={"bought": {"$time": "secret-when"}}),
        "BAD_DATE",
        "secret-when",
    ),
    invalid("nested-time-null", "attributes", a(car={"bought": {"$time": None}}), "BAD_DATE"),
    invalid(
        "nested-time-with-sibling",
        "attributes",
        a(car={"bought": {"$time": "2024-01-01", "tz": "UTC"}}),
        "BAD_DATE",
    ),
    invalid("array-of-objects-bad-key", "attributes", a(pets=[{"secret$key": 1}]), "BAD_NESTED_ATTRIBUTE"),
    invalid(
        "nested-too-large",
        "attributes",
        a(car={"make": "x" * 100}),
        "NESTED_ATTRIBUTE_TOO_LARGE",
        limits=SMALL_NESTED,
    ),
    invalid(
        "array-of-objects-too-large",
        "attributes",
        a(pets=[PET] * 5),
        "NESTED_ATTRIBUTE_TOO_LARGE",
        limits=SMALL_NESTED,
    ),
    invalid(
        "objects-add-too-large",
        "attributes",
        a(pets={"$add": [PET] * 5}),
        "NESTED_ATTRIBUTE_TOO_LARGE",
        limits=SMALL_NESTED,
    ),
    invalid(
        "objects-update-too-large",
        "attributes",
        a(_merge_objects=True, pets={"$update": [UPDATE_PET] * 3}),
        "NESTED_ATTRIBUTE_TOO_LARGE",
        limits=SMALL_NESTED,
    ),
]


@pytest.mark.parametrize("case", CUSTOM_VALID)
def test_custom_attributes_valid(case: Case) -> None:
    run_valid(case)


@pytest.mark.parametrize("case", CUSTOM_INVALID)
def test_custom_attributes_invalid(case: Case) -> None:
    run_invalid(case)


def test_nested_size_is_measured_only_for_objects_over_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an object whose whole encoding is under the cap
    obj = a(car={"make": "Tesla", "model": {"name": "3"}}, pets=[PET])

    def must_not_measure(value: object) -> int:
        raise AssertionError("measured a part of an object that is under the cap")

    monkeypatch.setattr(validation, "_json_size", must_not_measure)
    # When it is checked, Then no part is measured
    assert track("attributes", obj) is None


def test_nested_size_is_exact_when_the_object_is_over_the_cap() -> None:
    # Given an object over the cap whose nested attribute alone is under it
    obj = a(car={"make": "x" * 30}, bio="b" * 200)
    # When / Then: the exact measure passes it
    assert track("attributes", obj, SMALL_NESTED) is None


# ---------------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------------

SMALL_PROPERTIES = Limits(max_properties_bytes=64)

EVENT_VALID = [
    valid("minimal", "events", ev()),
    valid(
        "every-field",
        "events",
        ev(app_id="app-identifier", properties={"movie": "The Sad Egg"}, _update_existing_only=False),
    ),
    *(
        valid(f"time-{label}", "events", ev(time=value))
        for label, value in [
            ("offset-colon", "2022-12-06T19:20:45+01:00"),
            ("offset-no-colon", "2022-12-06T19:20:45-0800"),
            ("offset-hours", "2022-12-06T19:20:45+05"),
            ("no-offset", "2022-12-06T19:20:45"),
            ("fraction", "2022-12-06T19:20:45.123456Z"),
            ("braze-millis", "2013-07-16T19:20:30:000Z"),
            ("minutes-only", "2022-12-06T19:20Z"),
            ("leap-day", "2024-02-29T00:00:00Z"),
            ("end-of-day", "2024-12-31T23:59:59Z"),
        ]
    ),
    valid(
        "properties-every-type",
        "events",
        ev(
            properties={
                "s": "x" * 255,
                "i": 3,
                "f": 1.5,
                "b": False,
                "n": None,
                "a": [1, "x"],
                "o": {"k": "v" * 300},
            }
        ),
    ),
    valid("properties-empty", "events", ev(properties={})),
    valid("properties-256-keys", "events", ev(properties={f"p{i}": i for i in range(256)})),
    valid("properties-name-255", "events", ev(properties={"p" * 255: 1})),
    valid("properties-under-size-cap", "events", ev(properties={"k": "v" * 40}), SMALL_PROPERTIES),
    valid("name-255", "events", ev(name="n" * 255)),
    valid("name-inner-dollar", "events", ev(name="paid $5")),
]

EVENT_INVALID = [
    invalid("unknown-field", "events", ev(user_id="secret-user"), "UNKNOWN_FIELD", "secret-user"),
    invalid("attribute-flag-in-event", "events", ev(_merge_objects=True), "UNKNOWN_FIELD"),
    invalid("name-missing", "events", without(ev(), "name"), "MISSING_EVENT_NAME"),
    invalid("name-dollar", "events", ev(name="$secret_event"), "BAD_EVENT_NAME", "$secret_event"),
    invalid("name-empty", "events", ev(name=""), "BAD_EVENT_NAME"),
    invalid("name-256", "events", ev(name="n" * 256), "BAD_EVENT_NAME"),
    invalid("name-number", "events", ev(name=42), "BAD_EVENT_NAME"),
    invalid("name-null", "events", ev(name=None), "BAD_EVENT_NAME"),
    invalid("time-missing", "events", without(ev(), "time"), "MISSING_TIME"),
    invalid("time-not-a-day", "events", ev(time="2023-02-29T10:00:00Z"), "BAD_TIME", "2023-02-29T10:00:00Z"),
    invalid("time-date-only", "events", ev(time="2023-11-14"), "BAD_TIME", "2023-11-14"),
    invalid("time-hour-25", "events", ev(time="2023-11-14T25:00:00Z"), "BAD_TIME", "2023-11-14T25:00:00Z"),
    invalid("time-word", "events", ev(time="secret-yesterday"), "BAD_TIME", "secret-yesterday"),
    invalid("time-epoch-number", "events", ev(time=1700000000), "BAD_TIME"),
    invalid("time-space", "events", ev(time="2023-11-14 22:13:20"), "BAD_TIME", "2023-11-14 22:13:20"),
    invalid("time-null", "events", ev(time=None), "BAD_TIME"),
    invalid("app_id-empty", "events", ev(app_id=""), "BAD_APP_ID"),
    invalid("app_id-number", "events", ev(app_id=7), "BAD_APP_ID"),
    invalid("properties-list", "events", ev(properties=["secret-prop"]), "BAD_PROPERTIES", "secret-prop"),
    invalid("properties-null", "events", ev(properties=None), "BAD_PROPERTIES"),
    invalid(
        "properties-257-keys",
        "events",
        ev(properties={f"p{i}": i for i in range(257)}),
        "TOO_MANY_PROPERTIES",
    ),
    invalid(
        "property-name-dollar",
        "events",
        ev(properties={"$secret_prop": 1}),
        "BAD_PROPERTY_NAME",
        "$secret_prop",
    ),
    invalid("property-name-empty", "events", ev(properties={"": 1}), "BAD_PROPERTY_NAME"),
    invalid("property-name-256", "events", ev(properties={"p" * 256: 1}), "BAD_PROPERTY_NAME"),
    invalid("property-time", "events", ev(properties={"time": TIME}), "RESERVED_PROPERTY_NAME"),
    invalid("property-event_name", "events", ev(properties={"event_name": "x"}), "RESERVED_PROPERTY_NAME"),
    invalid("property-string-256", "events", ev(properties={"s": "s" * 256}), "STRING_TOO_LONG"),
    invalid("property-nan", "events", ev(properties={"score": float("nan")}), "BAD_PROPERTY_VALUE"),
    invalid(
        "properties-too-large",
        "events",
        ev(properties={"k": "v" * 60}),
        "PROPERTIES_TOO_LARGE",
        limits=SMALL_PROPERTIES,
    ),
]


@pytest.mark.parametrize("case", EVENT_VALID)
def test_events_valid(case: Case) -> None:
    run_valid(case)


@pytest.mark.parametrize("case", EVENT_INVALID)
def test_events_invalid(case: Case) -> None:
    run_invalid(case)


# Literal copies of the date-time patterns from before their optional parts became possessive (a
# speed-up that must not change what they accept, nor, for attribute dates, the groups they report).
OLD_EVENT_TIME = re.compile(
    r"(?P<y>(?!0000)[0-9]{4})-(?P<m>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9}|:[0-9]{3})?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?"
)
OLD_ATTRIBUTE_DATE = re.compile(
    r"(?P<y>(?!0000)[0-9]{4})-(?P<m>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12][0-9]|3[01])"
    r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9}|:[0-9]{3})?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?)?"
    r"|(?P<m2>0[1-9]|1[0-2])/(?P<d2>0[1-9]|[12][0-9]|3[01])/(?P<y2>(?!0000)[0-9]{4})"
    r"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?P<m3>0[1-9]|1[0-2]|[A-Z][a-z]{2}) (?P<d3>0[1-9]|[12][0-9]|3[01])"
    r" (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[. ](?:Z|[A-Z]{2,5}|[+-][0-9]{2}:?[0-9]{2}))?"
    r" (?P<y3>(?!0000)[0-9]{4})"
)
# One character of each class the patterns tell apart, and one they never take.
DATE_CHARACTERS = "0123456789-/T :.+Z x"


@st.composite
def near_dates(draw: st.DrawFn) -> str:
    """A string the old patterns accept, then perhaps a few characters inserted, dropped or replaced."""
    text = draw(
        st.one_of(st.from_regex(OLD_EVENT_TIME, fullmatch=True), st.from_regex(OLD_ATTRIBUTE_DATE, fullmatch=True))
    )
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "drop", "replace"]))
        character = draw(st.sampled_from(DATE_CHARACTERS))
        if edit == "insert":
            text = text[:at] + character + text[at:]
        else:
            text = text[:at] + (character if edit == "replace" else "") + text[at + 1 :]
    return text


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(near_dates(), st.text(DATE_CHARACTERS, max_size=30)))
@example(text="0000-01-01T00:00")
@example(text="0000-01-01")
@example(text="01/01/0000")
@example(text="Mon Jan 01 00:00:00 0000")
@example(text="2024-05-01T12:00:00.1234567890")
@example(text="2024-05-01T12:00:00:12")
@example(text="2024-05-01T12:00:00:1234")
@example(text="2024-05-01T12:00+01:0")
@example(text="2024-05-01 12:00:00.5-0800")
def test_time_patterns_match_the_same_strings_as_before(text: str) -> None:
    old_time, old_date = OLD_EVENT_TIME.fullmatch(text), OLD_ATTRIBUTE_DATE.fullmatch(text)
    assert (validation._EVENT_TIME.fullmatch(text) is None) == (old_time is None)
    if old_time is not None:
        # _is_event_time reads the date by position instead of by group
        assert (text[:4], text[5:7], text[8:10]) == (old_time["y"], old_time["m"], old_time["d"])
    new_date = validation._ATTRIBUTE_DATE.fullmatch(text)
    assert (new_date is None) == (old_date is None)
    if old_date is not None:
        assert new_date is not None and new_date.groupdict() == old_date.groupdict()


# ---------------------------------------------------------------------------------------------------
# Purchases
# ---------------------------------------------------------------------------------------------------

PURCHASE_VALID = [
    valid("minimal", "purchases", pu()),
    valid(
        "every-field",
        "purchases",
        pu(app_id="app", quantity=2, properties={"color": "red"}, _update_existing_only=True),
    ),
    valid("refund-negative-price", "purchases", pu(price=-40.0)),
    valid("integer-price", "purchases", pu(price=40)),
    valid("zero-price", "purchases", pu(price=0)),
    *(valid(f"currency-{c}", "purchases", pu(currency=c)) for c in ("JPY", "KWD", "CLF", "EUR")),
    valid("quantity-1", "purchases", pu(quantity=1)),
    valid("quantity-100", "purchases", pu(quantity=100)),
    valid("time-offset", "purchases", pu(time="2013-07-16T19:20:30+01:00")),
]

PURCHASE_INVALID = [
    invalid("unknown-field", "purchases", pu(name="secret-name"), "UNKNOWN_FIELD", "secret-name"),
    invalid("product_id-missing", "purchases", without(pu(), "product_id"), "MISSING_PRODUCT_ID"),
    invalid("product_id-empty", "purchases", pu(product_id=""), "BAD_PRODUCT_ID"),
    invalid("product_id-256", "purchases", pu(product_id="p" * 256), "BAD_PRODUCT_ID"),
    invalid("product_id-number", "purchases", pu(product_id=123), "BAD_PRODUCT_ID"),
    invalid("currency-missing", "purchases", without(pu(), "currency"), "MISSING_CURRENCY"),
    invalid("currency-lower-case", "purchases", pu(currency="usd"), "BAD_CURRENCY", "usd"),
    invalid("currency-symbol", "purchases", pu(currency="US$"), "BAD_CURRENCY", "US$"),
    invalid("currency-not-iso", "purchases", pu(currency="QQQ"), "BAD_CURRENCY", "QQQ"),
    invalid("currency-no-minor-unit", "purchases", pu(currency="XAU"), "BAD_CURRENCY", "XAU"),
    invalid("currency-withdrawn", "purchases", pu(currency="HRK"), "BAD_CURRENCY", "HRK"),
    invalid("currency-numeric", "purchases", pu(currency=840), "BAD_CURRENCY"),
    invalid("price-missing", "purchases", without(pu(), "price"), "MISSING_PRICE"),
    invalid("price-string", "purchases", pu(price="40.00"), "BAD_PRICE", "40.00"),
    invalid("price-boolean", "purchases", pu(price=True), "BAD_PRICE"),
    invalid("price-nan", "purchases", pu(price=float("nan")), "BAD_PRICE"),
    invalid("price-infinity", "purchases", pu(price=float("-inf")), "BAD_PRICE"),
    invalid("price-null", "purchases", pu(price=None), "BAD_PRICE"),
    invalid("quantity-0", "purchases", pu(quantity=0), "BAD_QUANTITY"),
    invalid("quantity-101", "purchases", pu(quantity=101), "BAD_QUANTITY"),
    invalid("quantity-float", "purchases", pu(quantity=2.0), "BAD_QUANTITY"),
    invalid("quantity-boolean", "purchases", pu(quantity=True), "BAD_QUANTITY"),
    invalid("quantity-string", "purchases", pu(quantity="2"), "BAD_QUANTITY"),
    invalid("time-missing", "purchases", without(pu(), "time"), "MISSING_TIME"),
    invalid("time-bad", "purchases", pu(time="2013-07-32T19:20:30Z"), "BAD_TIME", "2013-07-32T19:20:30Z"),
    invalid("property-reserved", "purchases", pu(properties={"time": TIME}), "RESERVED_PROPERTY_NAME"),
    invalid(
        "properties-too-large",
        "purchases",
        pu(properties={"k": "v" * 60}),
        "PROPERTIES_TOO_LARGE",
        limits=SMALL_PROPERTIES,
    ),
]


@pytest.mark.parametrize("case", PURCHASE_VALID)
def test_purchases_valid(case: Case) -> None:
    run_valid(case)


@pytest.mark.parametrize("case", PURCHASE_INVALID)
def test_purchases_invalid(case: Case) -> None:
    run_invalid(case)


# ---------------------------------------------------------------------------------------------------
# /users/identify
# ---------------------------------------------------------------------------------------------------

PRIORITY = ["unidentified", "most_recently_updated"]
ALIAS_ID = {"external_id": EXT, "user_alias": ALIAS}
EMAIL_ID = {"external_id": EXT, "email": "ada@lovelace.test", "prioritization": PRIORITY}
PHONE_ID = {"external_id": EXT, "phone": "+15555555555", "prioritization": PRIORITY}

IDENTIFY_VALID = [
    valid("alias", "aliases_to_identify", ALIAS_ID),
    valid("email", "emails_to_identify", EMAIL_ID),
    valid(
        "email-every-priority",
        "emails_to_identify",
        {**EMAIL_ID, "prioritization": ["identified", "most_recently_updated", "least_recently_updated"]},
    ),
    valid("phone", "phone_numbers_to_identify", PHONE_ID),
    valid(
        "phone-single-priority",
        "phone_numbers_to_identify",
        {**PHONE_ID, "prioritization": ["least_recently_updated"]},
    ),
]

IDENTIFY_INVALID = [
    invalid("alias-not-an-object", "aliases_to_identify", ["secret-item"], "INVALID_OBJECT", "secret-item"),
    invalid("alias-missing-external_id", "aliases_to_identify", {"user_alias": ALIAS}, "MISSING_IDENTIFIER"),
    invalid("alias-missing-user_alias", "aliases_to_identify", {"external_id": EXT}, "MISSING_IDENTIFIER"),
    invalid("alias-extra-field", "aliases_to_identify", {**ALIAS_ID, "merge_behavior": "merge"}, "UNKNOWN_FIELD"),
    invalid("alias-bad-external_id", "aliases_to_identify", {**ALIAS_ID, "external_id": ""}, "BAD_EXTERNAL_ID"),
    invalid(
        "alias-external_id-too-large",
        "aliases_to_identify",
        {**ALIAS_ID, "external_id": "x" * 988},
        "EXTERNAL_USER_ID_TOO_LARGE",
    ),
    invalid(
        "alias-bad-alias",
        "aliases_to_identify",
        {**ALIAS_ID, "user_alias": {"alias_name": "secret-n"}},
        "BAD_USER_ALIAS",
    ),
    invalid("email-missing-email", "emails_to_identify", without(EMAIL_ID, "email"), "MISSING_IDENTIFIER"),
    invalid(
        "email-missing-external_id",
        "emails_to_identify",
        without(EMAIL_ID, "external_id"),
        "MISSING_IDENTIFIER",
    ),
    invalid(
        "email-bad-email",
        "emails_to_identify",
        {**EMAIL_ID, "email": "secret-not-email"},
        "EMAIL_BAD_FORMAT",
        "secret-not-email",
    ),
    invalid("email-null-email", "emails_to_identify", {**EMAIL_ID, "email": None}, "EMAIL_BAD_FORMAT"),
    invalid("email-extra-field", "emails_to_identify", {**EMAIL_ID, "phone": "+15555555555"}, "UNKNOWN_FIELD"),
    invalid(
        "email-missing-prioritization",
        "emails_to_identify",
        without(EMAIL_ID, "prioritization"),
        "BAD_PRIORITIZATION",
    ),
    invalid("prioritization-empty", "emails_to_identify", {**EMAIL_ID, "prioritization": []}, "BAD_PRIORITIZATION"),
    invalid(
        "prioritization-string",
        "emails_to_identify",
        {**EMAIL_ID, "prioritization": "identified"},
        "BAD_PRIORITIZATION",
    ),
    invalid(
        "prioritization-unknown",
        "emails_to_identify",
        {**EMAIL_ID, "prioritization": ["secret-priority"]},
        "BAD_PRIORITIZATION",
        "secret-priority",
    ),
    invalid(
        "prioritization-identified-and-unidentified",
        "phone_numbers_to_identify",
        {**PHONE_ID, "prioritization": ["identified", "unidentified"]},
        "BAD_PRIORITIZATION",
    ),
    invalid(
        "prioritization-duplicate",
        "phone_numbers_to_identify",
        {**PHONE_ID, "prioritization": ["most_recently_updated", "most_recently_updated"]},
        "BAD_PRIORITIZATION",
    ),
    invalid(
        "prioritization-number",
        "phone_numbers_to_identify",
        {**PHONE_ID, "prioritization": [1]},
        "BAD_PRIORITIZATION",
    ),
    invalid("phone-missing-phone", "phone_numbers_to_identify", without(PHONE_ID, "phone"), "MISSING_IDENTIFIER"),
    invalid("phone-empty", "phone_numbers_to_identify", {**PHONE_ID, "phone": ""}, "BAD_PHONE"),
    invalid("phone-number", "phone_numbers_to_identify", {**PHONE_ID, "phone": 15555555555}, "BAD_PHONE"),
    invalid("phone-extra-field", "phone_numbers_to_identify", {**PHONE_ID, "email": "a@b.test"}, "UNKNOWN_FIELD"),
    invalid(
        "phone-bad-external_id",
        "phone_numbers_to_identify",
        {**PHONE_ID, "external_id": 5},
        "BAD_EXTERNAL_ID",
    ),
]


@pytest.mark.parametrize("case", IDENTIFY_VALID)
def test_identify_valid(case: Case) -> None:
    run_valid(case)


@pytest.mark.parametrize("case", IDENTIFY_INVALID)
def test_identify_invalid(case: Case) -> None:
    run_invalid(case)


# ---------------------------------------------------------------------------------------------------
# /users/delete, /users/alias/new, /users/merge
# ---------------------------------------------------------------------------------------------------

DELETE_EMAIL = {"email": "ada@lovelace.test", "prioritization": ["identified", "most_recently_updated"]}
DELETE_PHONE = {"phone": "+15555555555", "prioritization": ["unidentified"]}
ALIAS = {"alias_name": "device-secret-8c1f", "alias_label": "device_id"}
KEEP = {"external_id": "user-kept-0001"}


def merge(to_merge: Any, to_keep: Any = KEEP, **extra: Any) -> dict[str, Any]:
    return {"identifier_to_merge": to_merge, "identifier_to_keep": to_keep, **extra}


USER_DATA_VALID = [
    valid("delete-external_id", "delete:external_ids", EXT),
    valid("delete-braze_id", "delete:braze_ids", "5f0a1b2c3d"),
    valid("delete-alias", "delete:user_aliases", ALIAS),
    valid("delete-email", "delete:email_addresses", DELETE_EMAIL),
    valid("delete-phone", "delete:phone_numbers", DELETE_PHONE),
    valid("alias-only", "alias:user_aliases", ALIAS),
    valid("alias-with-external_id", "alias:user_aliases", {**ALIAS, "external_id": EXT}),
    valid("merge-external_ids", "merge:merge_updates", merge({"external_id": EXT})),
    valid("merge-alias", "merge:merge_updates", merge({"user_alias": ALIAS})),
    valid(
        "merge-email-into-phone",
        "merge:merge_updates",
        merge(
            {"email": "ada@lovelace.test", "prioritization": ["least_recently_updated"]},
            {"phone": "+15555555555", "prioritization": ["identified"]},
        ),
    ),
]
USER_DATA_INVALID = [
    invalid("delete-external_id-empty", "delete:external_ids", "", "BAD_EXTERNAL_ID"),
    invalid("delete-external_id-object", "delete:external_ids", {"external_id": EXT}, "BAD_EXTERNAL_ID"),
    invalid("delete-external_id-too-large", "delete:external_ids", "x" * 988, "EXTERNAL_USER_ID_TOO_LARGE"),
    invalid("delete-braze_id-number", "delete:braze_ids", 7, "BAD_BRAZE_ID"),
    invalid("delete-alias-missing-label", "delete:user_aliases", {"alias_name": "secret-name"}, "BAD_USER_ALIAS"),
    invalid("delete-alias-string", "delete:user_aliases", "secret-alias", "INVALID_OBJECT"),
    invalid("delete-email-string", "delete:email_addresses", "secret@lovelace.test", "INVALID_OBJECT"),
    invalid(
        "delete-email-no-prioritization", "delete:email_addresses", {"email": "ada@lovelace.test"}, "INVALID_OBJECT"
    ),
    invalid(
        "delete-email-bad",
        "delete:email_addresses",
        {**DELETE_EMAIL, "email": "secret-not-email"},
        "EMAIL_BAD_FORMAT",
        "secret-not-email",
    ),
    invalid(
        "delete-email-least-recently-updated",
        "delete:email_addresses",
        {**DELETE_EMAIL, "prioritization": ["least_recently_updated"]},
        "BAD_PRIORITIZATION",
    ),
    invalid("delete-phone-empty", "delete:phone_numbers", {**DELETE_PHONE, "phone": ""}, "BAD_PHONE"),
    invalid("delete-phone-extra", "delete:phone_numbers", {**DELETE_PHONE, "email": "a@b.test"}, "INVALID_OBJECT"),
    invalid(
        "delete-phone-both-identified",
        "delete:phone_numbers",
        {**DELETE_PHONE, "prioritization": ["identified", "unidentified"]},
        "BAD_PRIORITIZATION",
    ),
    invalid("alias-list", "alias:user_aliases", [ALIAS], "INVALID_OBJECT"),
    invalid("alias-missing-name", "alias:user_aliases", {"alias_label": "device_id"}, "BAD_USER_ALIAS"),
    invalid("alias-long-name", "alias:user_aliases", {**ALIAS, "alias_name": "n" * 256}, "BAD_USER_ALIAS"),
    invalid("alias-extra-field", "alias:user_aliases", {**ALIAS, "email": "secret@lovelace.test"}, "UNKNOWN_FIELD"),
    invalid("alias-bad-external_id", "alias:user_aliases", {**ALIAS, "external_id": ""}, "BAD_EXTERNAL_ID"),
    invalid("merge-string", "merge:merge_updates", "secret-merge", "INVALID_OBJECT"),
    invalid("merge-extra-key", "merge:merge_updates", merge({"external_id": EXT}, note="x"), "INVALID_MERGE_UPDATE"),
    invalid("merge-missing-keep", "merge:merge_updates", {"identifier_to_merge": KEEP}, "INVALID_MERGE_UPDATE"),
    invalid("merge-braze_id", "merge:merge_updates", merge({"braze_id": "secret-braze"}), "BAD_MERGE_IDENTIFIER"),
    invalid(
        "merge-two-identifiers",
        "merge:merge_updates",
        merge({"external_id": EXT, "user_alias": ALIAS}),
        "BAD_MERGE_IDENTIFIER",
    ),
    invalid(
        "merge-email-no-prioritization",
        "merge:merge_updates",
        merge({"email": "secret@lovelace.test"}),
        "BAD_MERGE_IDENTIFIER",
    ),
    invalid(
        "merge-external_id-with-prioritization",
        "merge:merge_updates",
        merge({"external_id": EXT, "prioritization": ["identified"]}),
        "BAD_MERGE_IDENTIFIER",
    ),
    invalid("merge-keep-not-object", "merge:merge_updates", merge({"external_id": EXT}, EXT), "BAD_MERGE_IDENTIFIER"),
    invalid("merge-into-itself", "merge:merge_updates", merge(KEEP), "MERGE_INTO_ITSELF"),
    invalid(
        "merge-alias-into-itself",
        "merge:merge_updates",
        merge({"user_alias": ALIAS}, {"user_alias": ALIAS}),
        "MERGE_INTO_ITSELF",
    ),
]


@pytest.mark.parametrize("case", USER_DATA_VALID)
def test_user_data_valid(case: Case) -> None:
    run_valid(case)


@pytest.mark.parametrize("case", USER_DATA_INVALID)
def test_user_data_invalid(case: Case) -> None:
    run_invalid(case)


def test_a_merge_reason_says_which_side_is_wrong() -> None:
    problem = check("merge:merge_updates", merge({"external_id": EXT}, {"braze_id": "b"}))
    assert problem is not None and problem.reason.startswith("identifier_to_keep ")


@pytest.mark.parametrize(
    ("array", "obj"),
    [
        pytest.param("delete:external_ids", [deep(40)], id="delete-external_id-list"),
        pytest.param("delete:email_addresses", {**DELETE_EMAIL, "prioritization": deep(40)}, id="delete-email"),
        pytest.param("alias:user_aliases", {"alias_name": deep(40)}, id="alias"),
        pytest.param("merge:merge_updates", merge({"user_alias": deep(40)}), id="merge"),
    ],
)
def test_deep_user_data_items_raise_even_when_they_have_another_problem(array: str, obj: Any) -> None:
    with pytest.raises(NestingTooDeep):
        check(array, obj)


# ---------------------------------------------------------------------------------------------------
# Nesting depth
# ---------------------------------------------------------------------------------------------------

DEPTH_LIMIT = DEFAULT_LIMITS.max_object_depth


@pytest.mark.parametrize(
    ("array", "make", "outer_level"),
    [
        pytest.param("attributes", lambda v: a(car=v), 1, id="attributes-nested-object"),
        pytest.param("attributes", lambda v: a(pets=[{"x": v}]), 3, id="attributes-array-of-objects"),
        pytest.param(
            "attributes",
            lambda v: a(_merge_objects=True, pets={"$update": [{**UPDATE_PET, "$new_object": {"x": v}}]}),
            5,
            id="attributes-update",
        ),
        pytest.param("events", lambda v: ev(properties={"p": v}), 2, id="events-property"),
        pytest.param("purchases", lambda v: pu(properties={"p": v}), 2, id="purchases-property"),
        pytest.param("events", lambda v: ev(name="$bad", properties={"p": v}), 2, id="events-with-a-problem"),
    ],
)
def test_nesting_up_to_the_limit_is_accepted_and_one_more_level_raises(array: str, make: Any, outer_level: int) -> None:
    # Given a value whose innermost container sits exactly at the limit (the object is level 0)
    at_limit = make(deep(DEPTH_LIMIT - outer_level + 1))
    # When it is checked, Then nothing is reported about nesting
    track(array, at_limit)
    # And one more level raises
    with pytest.raises(NestingTooDeep):
        track(array, make(deep(DEPTH_LIMIT - outer_level + 2)))


@pytest.mark.parametrize(
    ("array", "obj"),
    [
        pytest.param("attributes", {"external_id": "", "car": deep(40)}, id="attributes-bad-id-first"),
        pytest.param("attributes", a(gender="x", car={"make": None, "m": deep(40)}), id="attributes-bad-nested-first"),
        pytest.param("events", ev(name="$x", properties={"p": deep(40)}), id="events-bad-name"),
        pytest.param("events", ev(properties={"$p": 1, "q": deep(40)}), id="events-bad-property-first"),
        pytest.param("purchases", pu(price="x", properties={"p": deep(40)}), id="purchases-bad-price"),
        pytest.param("attributes", [deep(40)], id="not-an-object-list"),
        pytest.param("attributes", a(email_subscription_info=deep(40)), id="attributes-rejected-key"),
        pytest.param("emails_to_identify", {**EMAIL_ID, "prioritization": deep(40)}, id="identify-prioritization"),
        pytest.param("aliases_to_identify", {"user_alias": deep(40)}, id="identify-missing-external_id"),
    ],
)
def test_deep_nesting_raises_even_when_the_object_has_another_problem(array: str, obj: Any) -> None:
    with pytest.raises(NestingTooDeep):
        check(array, obj)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (at most the first three items of each list)."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value[:3]) if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = replaced(value[head], rest, new)
    return copy


ALL_CASES = [
    p.values[0]
    for table in (
        IDENTIFIER_VALID, IDENTIFIER_INVALID, RESERVED_VALID, RESERVED_INVALID, CUSTOM_VALID, CUSTOM_INVALID,
        EVENT_VALID, EVENT_INVALID, PURCHASE_VALID, PURCHASE_INVALID, IDENTIFY_VALID, IDENTIFY_INVALID,
        USER_DATA_VALID, USER_DATA_INVALID,
    )
    for p in table
]  # fmt: skip


def test_deep_nesting_anywhere_in_any_table_object_raises() -> None:
    # Given every object of every table, with each of its values in turn replaced by a deep one
    too_deep = deep(DEPTH_LIMIT + 1)
    checked = 0
    for case in ALL_CASES:
        if not isinstance(case.obj, (dict, list)) or len(json.dumps(case.obj)) > 5000:
            continue
        for path in paths(case.obj):
            obj = replaced(case.obj, path, too_deep)
            # When it is checked, Then nesting is reported whatever else the object holds
            with pytest.raises(NestingTooDeep):
                check(case.array, obj)
            checked += 1
    assert checked > 500


# ---------------------------------------------------------------------------------------------------
# Never raises anything else (hypothesis)
# ---------------------------------------------------------------------------------------------------

KNOWN_KEYS = sorted(
    {
        *validation._RESERVED_ATTRIBUTES,
        *validation._EVENT_FIELDS,
        *validation._PURCHASE_FIELDS,
        *validation._OPERATIONS,
        "$time", "$identifier_key", "$identifier_value", "$new_object", "prioritization",
        "alias_name", "alias_label", "longitude", "latitude", "subscription_group_id", "subscription_state",
        "use_double_opt_in_logic", "app_id", "token", "device_id", "event_name",
    }
)  # fmt: skip

texts = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),  # lone surrogates included
    st.sampled_from(["", "$", "x" * 256, "\ud800", "a@b.co", "USD", "en", "US", "M", "2024-02-29", TIME, GROUP_ID]),
    st.sampled_from(KNOWN_KEYS),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=5)),
    max_leaves=30,
)
objects = st.dictionaries(keys, json_values, max_size=10)
base_objects = {
    "attributes": a(email="ada@lovelace.test", tags=["x"], car={"make": "T"}),
    "events": ev(properties={"p": 1}),
    "purchases": pu(properties={"p": 1}),
    "aliases_to_identify": ALIAS_ID,
    "emails_to_identify": EMAIL_ID,
    "phone_numbers_to_identify": PHONE_ID,
}


def assert_answer(answer: Problem | None) -> None:
    if answer is not None:
        assert isinstance(answer, Problem)
        assert answer.type in DOCUMENTED_TYPES, answer
        assert isinstance(answer.reason, str) and answer.reason


def check_or_too_deep(array: str, obj: Any) -> None:
    try:
        answer = check(array, obj)
    except NestingTooDeep:
        return
    assert_answer(answer)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array=st.sampled_from(TRACK_ARRAYS + IDENTIFY_ARRAYS), obj=st.one_of(objects, json_values))
def test_arbitrary_objects_never_raise(array: str, obj: Any) -> None:
    check_or_too_deep(array, obj)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array=st.sampled_from(TRACK_ARRAYS + IDENTIFY_ARRAYS), key=keys, value=json_values)
def test_arbitrary_single_fields_never_raise(array: str, key: str, value: Any) -> None:
    check_or_too_deep(array, {**base_objects[array], key: value})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array=st.sampled_from(TRACK_ARRAYS + IDENTIFY_ARRAYS), obj=objects, key=keys, data=st.data())
def test_deep_nesting_always_raises(array: str, obj: dict[str, Any], key: str, data: st.DataObject) -> None:
    # Given any object (valid or not) with a too-deep value at some key or inside a property
    target = data.draw(st.sampled_from(["top", "properties", "nested"]))
    too_deep = deep(DEPTH_LIMIT + 1)
    if target == "top":
        obj = {**obj, key: too_deep}
    elif target == "properties":
        obj = {**base_objects[array], **obj, "properties": {key: too_deep}}
    else:
        obj = {**base_objects[array], **obj, key: {"nested": too_deep}}
    # When / Then
    with pytest.raises(NestingTooDeep):
        check(array, obj)


# ---------------------------------------------------------------------------------------------------
# Contract details
# ---------------------------------------------------------------------------------------------------


def test_unknown_array_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="array must be one of"):
        check_track_object("users", {}, 2)
    with pytest.raises(ValueError, match="array must be one of"):
        check_identify_object("attributes", {}, 2)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"max_object_depth": 3}, id="depth-too-small"),
        pytest.param({"max_object_depth": 501}, id="depth-too-large"),
        pytest.param({"max_array_items": 0}, id="array-items-zero"),
        pytest.param({"max_properties_bytes": 1.5}, id="properties-bytes-float"),
    ],
)
def test_limits_reject_unusable_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Limits"):
        Limits(**fields)


def test_a_problem_is_a_named_type_and_reason() -> None:
    problem = track("events", without(ev(), "name"))
    assert isinstance(problem, Problem)
    assert problem._fields == ("type", "reason")
    assert problem.type == "MISSING_EVENT_NAME"


def test_every_braze_code_in_the_brief_is_used() -> None:
    braze_codes = {
        "BAD_DEVICE_ID", "BAD_EMAIL_SUBSCRIPTION_STATE", "BAD_LOCATION_UPDATE", "BAD_PUSH_SUBSCRIPTION_STATE",
        "BAD_PUSH_TOKEN_IMPORT", "BAD_PUSH_TOKEN_STRING", "BAD_PUSH_TOKEN_VALUE",
        "BAD_SUBSCRIPTION_GROUP_ARRAY", "BAD_SUBSCRIPTION_GROUP_HASH", "BAD_SUBSCRIPTION_GROUP_ID",
        "BAD_SUBSCRIPTION_GROUP_STATE", "EMAIL_BAD_FORMAT", "EXTERNAL_USER_ID_TOO_LARGE",
    }  # fmt: skip
    tested = {case.type for case in ALL_CASES if case.type}
    assert braze_codes <= tested
    assert tested <= DOCUMENTED_TYPES


def test_every_documented_type_has_an_invalid_case() -> None:
    tested = {case.type for case in ALL_CASES if case.type}
    assert tested == DOCUMENTED_TYPES, DOCUMENTED_TYPES ^ tested


# ---------------------------------------------------------------------------------------------------
# Reference tables
# ---------------------------------------------------------------------------------------------------


def test_currency_table() -> None:
    assert frozenset(CURRENCY_EXPONENTS) == CURRENCY_CODES
    assert all(re.fullmatch(r"[A-Z]{3}", code) for code in CURRENCY_CODES)
    expected = {
        "USD": 2,
        "EUR": 2,
        "JPY": 0,
        "KRW": 0,
        "BHD": 3,
        "KWD": 3,
        "JOD": 3,
        "OMR": 3,
        "TND": 3,
        "CLF": 4,
    }
    assert {code: CURRENCY_EXPONENTS[code] for code in expected} == expected
    assert set(CURRENCY_EXPONENTS.values()) <= {0, 2, 3, 4}
    assert len(CURRENCY_CODES) > 150


def test_country_language_and_time_zone_tables() -> None:
    assert len(COUNTRY_CODES) == 249
    assert all(re.fullmatch(r"[A-Z]{2}", code) for code in COUNTRY_CODES)
    assert {"US", "DE", "JP", "SS", "AX", "BQ"} <= COUNTRY_CODES
    assert "XK" not in COUNTRY_CODES  # Kosovo's XK is user-assigned, not an ISO 3166-1 code
    assert all(re.fullmatch(r"[a-z]{2}", code) for code in LANGUAGE_CODES)
    assert {"en", "de", "ja", "zh", "nb"} <= LANGUAGE_CODES
    assert {"America/New_York", "Europe/Berlin", "Asia/Kolkata", "UTC", "Etc/GMT+5"} <= TIME_ZONES
    assert "localtime" not in TIME_ZONES and "Factory" not in TIME_ZONES

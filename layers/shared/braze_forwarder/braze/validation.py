"""Checks each Braze /users/track, /users/identify, /users/delete, /users/alias/new and
/users/merge item against Braze's documented rules.

The ingest API answers an invalid object in Braze's own non-fatal error shape
``{input_array, index, type, reason}`` and never queues it, so one bad object neither reaches Braze
(where a bad nested value silently drops every nested update of the request) nor costs data points.
Rules come from shared/BRAZE_API.md §2 and §5; where Braze is vague, the choice is said at the rule.

``check_track_object`` and ``check_identify_object`` return None for a valid object, else the first
Problem found (one per object, as Braze reports them). A ``reason`` never repeats a value from the
object: values are emails, phone numbers and names. Nesting deeper than ``Limits.max_object_depth``
raises NestingTooDeep whatever else is wrong; no other exception escapes for any JSON value.

Error types; * marks Braze's own codes.

Any object
  INVALID_OBJECT                    the item is not a JSON object
  UNKNOWN_FIELD                     an event, purchase or identify object has a key it does not take
Identifiers
  MISSING_IDENTIFIER                no user to act on: none of external_id, user_alias, braze_id,
                                    email, phone (identify: a required identifier is missing)
  MULTIPLE_PRIMARY_IDENTIFIERS      more than one of external_id, user_alias, braze_id
  BAD_EXTERNAL_ID                   external_id is not a non-empty string of valid Unicode
  EXTERNAL_USER_ID_TOO_LARGE *      external_id is over 987 bytes of UTF-8
  BAD_USER_ALIAS                    user_alias is not {alias_name, alias_label} of non-empty strings
  BAD_BRAZE_ID                      braze_id is not a non-empty string
  EMAIL_BAD_FORMAT *                email is not a plausible address of at most 254 characters
  BAD_PHONE                         phone is not a non-empty string
  BAD_UPDATE_EXISTING_ONLY          _update_existing_only is not a boolean
  BAD_PUSH_TOKEN_IMPORT *           push_token_import is not a boolean, or a token import carries
                                    external_id / braze_id or no push_tokens
Reserved profile fields (attributes objects)
  BAD_ATTRIBUTE_VALUE               a reserved field or custom attribute has the wrong type, a
                                    non-finite number, or an array item that is not allowed
  STRING_TOO_LONG                   a string over 255 characters (reserved field, custom attribute,
                                    array item or property value)
  BAD_GENDER                        gender is not M, F, O, N, P or null
  BAD_DOB                           dob is not a real YYYY-MM-DD date or null
  BAD_COUNTRY                       country is not an ISO 3166-1 alpha-2 code or null
  BAD_LANGUAGE                      language is not an ISO 639-1 code or null
  BAD_TIME_ZONE                     time_zone is not an IANA zone name or null
  BAD_DATE                          a date field (or a nested {"$time": ...}) is not a date Braze reads
  BAD_EMAIL_SUBSCRIPTION_STATE *    email_subscribe is not opted_in, subscribed or unsubscribed
  BAD_PUSH_SUBSCRIPTION_STATE *     push_subscribe is not opted_in, subscribed or unsubscribed
  BAD_SUBSCRIPTION_GROUP_ARRAY *    subscription_groups is not an array
  BAD_SUBSCRIPTION_GROUP_HASH *     a subscription group is not {subscription_group_id,
                                    subscription_state[, use_double_opt_in_logic]}
  BAD_SUBSCRIPTION_GROUP_ID *       subscription_group_id is not a UUID
  BAD_SUBSCRIPTION_GROUP_STATE *    subscription_state is not subscribed or unsubscribed
  BAD_LOCATION_UPDATE *             current_location is not {longitude, latitude} in range
  BAD_PUSH_TOKEN_VALUE *            push_tokens is not an array of {app_id, token[, device_id]}
  BAD_PUSH_TOKEN_APP_ID *           a push token's app_id is not a non-empty string
  BAD_PUSH_TOKEN_STRING *           a push token's token is not a non-empty string
  BAD_DEVICE_ID *                   a push token's device_id is not 8 to 255 bytes
  BAD_MERGE_OBJECTS                 _merge_objects is not a boolean
  INVALID_ATTRIBUTE_EMAIL_SUBSCRIPTION_INFO *  email_subscription_info is not an attribute
Custom attributes
  BAD_ATTRIBUTE_NAME                the name is empty, over 255 characters or starts with $
  ARRAY_TOO_LONG                    a scalar array (or add/remove list) is over Limits.max_array_items
  BAD_ARRAY_OPERATION               a malformed, mixed or unknown operation object, or $update
                                    without "_merge_objects": true beside it
  BAD_INCREMENT                     {"inc": n} with n not an integer
  BAD_NESTED_ATTRIBUTE              a nested object breaks Braze's rules (key names, null values,
                                    over-long strings, non-finite numbers)
  NESTED_ATTRIBUTE_TOO_LARGE        a nested object or array of objects is over
                                    Limits.max_nested_attribute_bytes of compact JSON
Events and purchases
  MISSING_EVENT_NAME / BAD_EVENT_NAME      name is absent / not a string of 1-255 characters
                                           without a leading $
  MISSING_TIME / BAD_TIME           time is absent / not an ISO 8601 date and time on a real date
  BAD_APP_ID                        app_id is not a non-empty string
  BAD_PROPERTIES                    properties is not an object
  TOO_MANY_PROPERTIES               properties has more than 256 keys
  BAD_PROPERTY_NAME                 a property name is empty, over 255 characters or starts with $
  RESERVED_PROPERTY_NAME            a property is named time or event_name
  BAD_PROPERTY_VALUE                a property value is a non-finite number or not JSON
  PROPERTIES_TOO_LARGE              properties is over Limits.max_properties_bytes of compact JSON
  MISSING_PRODUCT_ID / BAD_PRODUCT_ID      product_id is absent / not a string of 1-255 characters
  MISSING_CURRENCY / BAD_CURRENCY   currency is absent / not an upper-case ISO 4217 code
  MISSING_PRICE / BAD_PRICE         price is absent / not a finite number
  BAD_QUANTITY                      quantity is not an integer from 1 to 100
Identify
  BAD_PRIORITIZATION                prioritization is not a non-empty array of distinct known values
                                    with at most one of identified and unidentified
Delete, alias, merge (check_delete_identifier, check_alias_object, check_merge_object)
  INVALID_OBJECT                    an email_addresses / phone_numbers item is not exactly
                                    {email|phone, prioritization}; BAD_EXTERNAL_ID, BAD_BRAZE_ID,
                                    BAD_USER_ALIAS, EMAIL_BAD_FORMAT, BAD_PHONE, BAD_PRIORITIZATION as above
  UNKNOWN_FIELD                     a user_aliases object has a key besides alias_name, alias_label, external_id
  INVALID_MERGE_UPDATE              a merge update has keys other than identifier_to_merge and
                                    identifier_to_keep (Braze's message)
  BAD_MERGE_IDENTIFIER              a side is not exactly one of external_id, user_alias, or email /
                                    phone with prioritization
  MERGE_INTO_ITSELF                 both sides name the same user
"""

import json
import re
from collections.abc import Callable
from math import isfinite
from typing import NamedTuple, TypeGuard

from braze_forwarder.braze.reference.countries import COUNTRY_CODES
from braze_forwarder.braze.reference.currencies import CURRENCY_CODES
from braze_forwarder.braze.reference.languages import LANGUAGE_CODES
from braze_forwarder.braze.reference.time_zones import TIME_ZONES
from braze_forwarder.braze.shapes import (
    ALIAS_ARRAYS,
    DEFAULT_LIMITS,
    DELETE_ARRAYS,
    IDENTIFY_ARRAYS,
    MERGE_ARRAYS,
    TRACK_ARRAYS,
    Limits,
)

__all__ = [
    "ALIAS_ARRAYS",
    "DEFAULT_LIMITS",
    "DELETE_ARRAYS",
    "IDENTIFY_ARRAYS",
    "MERGE_ARRAYS",
    "TRACK_ARRAYS",
    "Limits",
    "NestingTooDeep",
    "Problem",
    "check_alias_object",
    "check_delete_identifier",
    "check_identify_object",
    "check_merge_object",
    "check_track_object",
]


class Problem(NamedTuple):
    """Why Braze would not take an object."""

    type: str
    """Machine-readable: Braze's own code where Braze has one, else one listed in the module doc."""
    reason: str
    """One sentence saying what is wrong and what Braze accepts; never quotes the value."""


class NestingTooDeep(Exception):
    """A value nests deeper than Limits.max_object_depth. The caller answers the whole request 400."""


_MAX_STRING = 255
_MAX_EXTERNAL_ID_BYTES = 987
_MAX_EMAIL = 254
_MAX_PROPERTIES = 256
_ABSENT = object()  # a key that is not there, as distinct from a key whose value is null

_Check = Callable[[object], Problem | None]


# ---------------------------------------------------------------------------------------------------
# Primitive checks
# ---------------------------------------------------------------------------------------------------


def _utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8, or -1 when it holds an unpaired surrogate and so has no UTF-8 form."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return -1


def _is_short_string(value: object) -> bool:
    return type(value) is str and 0 < len(value) <= _MAX_STRING


def _is_finite_number(value: object) -> TypeGuard[int | float]:
    # bool is a subclass of int but never a number to Braze; `type(...) is` keeps it out.
    return type(value) is int or (type(value) is float and isfinite(value))


_ENCODE_COMPACT = json.JSONEncoder(separators=(",", ":")).encode


def _json_size(value: object) -> int:
    """Bytes of ``value`` as compact, ASCII-escaped JSON: the same measure as the caller's encoded_size."""
    try:
        return len(_ENCODE_COMPACT(value))
    except (TypeError, ValueError):
        # Only what json.loads never yields fails here (ints past the str-digit limit, non-JSON
        # types); calling it too large keeps it out of the queue.
        return 1 << 62


def _too_large(value: object, encoded_size: int, cap: int) -> bool:
    # No part of an object encodes longer than the whole, so only objects over the cap pay for an
    # exact measure.
    return encoded_size > cap and _json_size(value) > cap


# ---------------------------------------------------------------------------------------------------
# Dates and times
# ---------------------------------------------------------------------------------------------------

_YEAR = r"(?!0000)[0-9]{4}"
_MONTH = r"0[1-9]|1[0-2]"
_DAY = r"0[1-9]|[12][0-9]|3[01]"
_CLOCK = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]"
# Seconds, then either a decimal fraction or Braze's own ":SSS" milliseconds.
# The optional parts are possessive (?+, Python 3.11+). Giving back any of their match would leave a
# character that nothing after them takes (the rest is an offset, or the end), so backtracking into
# them never finds a match; possessive parts skip saving the states for it, about a fifth of the
# time of matching a typical event time. Same language as plain ?, as
# test_time_patterns_match_the_same_strings_as_before checks against a copy of the old patterns.
_SECONDS = r"(?::[0-5][0-9](?:\.[0-9]{1,9}+|:[0-9]{3})?+)?+"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?+[0-5][0-9])?+)?+"

_DOB = re.compile(rf"(?P<y>{_YEAR})-(?P<m>{_MONTH})-(?P<d>{_DAY})")
# Events and purchases: ISO 8601 date and time, offset optional (Braze then assumes UTC).
# No groups: _is_event_time reads the date's parts by position.
_EVENT_TIME = re.compile(rf"{_YEAR}-(?:{_MONTH})-(?:{_DAY})T{_CLOCK}{_SECONDS}{_OFFSET}")
# Date attributes take more forms (BRAZE_API.md §2.5): ISO 8601 date or date-time,
# yyyy-MM-dd HH:mm:ss, MM/dd/yyyy and "ddd MM dd HH:mm:ss.TZD YYYY" (month as number or name).
_ATTRIBUTE_DATE = re.compile(
    rf"(?P<y>{_YEAR})-(?P<m>{_MONTH})-(?P<d>{_DAY})(?:[T ]{_CLOCK}{_SECONDS}{_OFFSET})?"
    rf"|(?P<m2>{_MONTH})/(?P<d2>{_DAY})/(?P<y2>{_YEAR})"
    rf"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?P<m3>{_MONTH}|[A-Z][a-z]{{2}}) (?P<d3>{_DAY})"
    rf" {_CLOCK}:[0-5][0-9](?:[. ](?:Z|[A-Z]{{2,5}}|[+-][0-9]{{2}}:?[0-9]{{2}}))? (?P<y3>{_YEAR})"
)
_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _day_exists(year: str, month: str | int, day: str) -> bool:
    # The patterns already bound month to 1-12 and day to 1-31; only the month's length is left.
    # Callers test day <= "28" first: two-digit strings compare like numbers, and it is the usual case.
    number, month_number = int(day), int(month)
    if month_number != 2:
        return number <= _DAYS_IN_MONTH[month_number]
    y = int(year)
    return number <= 28 or (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0))


def _is_dob(value: object) -> bool:
    match = _DOB.fullmatch(value) if type(value) is str else None
    if match is None:
        return False
    day = match["d"]
    return day <= "28" or _day_exists(match["y"], match["m"], day)


def _is_event_time(value: object) -> bool:
    if type(value) is not str or _EVENT_TIME.fullmatch(value) is None:
        return False
    # The match starts with exactly YYYY-MM-DD, so slices are the groups, and cheaper to read.
    day = value[8:10]
    return day <= "28" or _day_exists(value[:4], value[5:7], day)


def _is_attribute_date(value: object) -> bool:
    match = _ATTRIBUTE_DATE.fullmatch(value) if type(value) is str else None
    if match is None:
        return False
    if match["y"] is not None:
        day = match["d"]
        return day <= "28" or _day_exists(match["y"], match["m"], day)
    if match["y2"] is not None:
        day = match["d2"]
        return day <= "28" or _day_exists(match["y2"], match["m2"], day)
    month = match["m3"]
    month_number = _MONTH_NAMES.get(month) if month.isalpha() else int(month)
    day = match["d3"]
    return month_number is not None and (day <= "28" or _day_exists(match["y3"], month_number, day))


# ---------------------------------------------------------------------------------------------------
# Nesting depth
#
# The happy path walks depth only where a valid value can nest: nested custom attributes (walked by
# _check_nested, which tracks depth) and container property values. Every other valid shape is flat
# by construction (user_alias, subscription_groups, push_tokens, scalar arrays, $remove items...),
# and an object with a problem gets a full walk before the problem is returned.
# ---------------------------------------------------------------------------------------------------

_CONTAINER_TYPES = frozenset({dict, list})


def _raise_if_too_deep(root: dict | list, level: int, max_depth: int) -> None:
    """Raises NestingTooDeep when a container below ``root`` (itself at ``level``) is past max_depth."""
    # Iterative, so hostile nesting never meets the interpreter's recursion limit; the C-level
    # isdisjoint test lets all-scalar containers, the usual case, skip the Python loop.
    stack: list[tuple[dict | list, int]] = [(root, level)]
    while stack:
        node, level = stack.pop()
        children = node.values() if type(node) is dict else node
        if _CONTAINER_TYPES.isdisjoint(map(type, children)):
            continue
        if level >= max_depth:
            raise NestingTooDeep(f"A value nests deeper than {max_depth} levels.")
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, level + 1))


# ---------------------------------------------------------------------------------------------------
# Identifiers (every track object; identify objects reuse the single-field checks)
# ---------------------------------------------------------------------------------------------------

_MULTIPLE_PRIMARY = Problem(
    "MULTIPLE_PRIMARY_IDENTIFIERS",
    "Send only one of external_id, user_alias and braze_id per object; Braze rejects an object with more.",
)
_MISSING_IDENTIFIER = Problem(
    "MISSING_IDENTIFIER",
    "The object needs a user: external_id, user_alias or braze_id, or else email or phone.",
)
_EXTERNAL_ID_NOT_STRING = Problem("BAD_EXTERNAL_ID", "external_id must be a non-empty string.")
_EXTERNAL_ID_NOT_UNICODE = Problem(
    "BAD_EXTERNAL_ID", "external_id must be valid Unicode text; it holds an unpaired surrogate."
)
_EXTERNAL_ID_TOO_LARGE = Problem(
    "EXTERNAL_USER_ID_TOO_LARGE", "external_id must be at most 987 bytes once encoded as UTF-8."
)
_BAD_USER_ALIAS = Problem(
    "BAD_USER_ALIAS",
    "user_alias must be an object with exactly alias_name and alias_label, "
    "both non-empty strings of at most 255 characters.",
)
_BAD_BRAZE_ID = Problem("BAD_BRAZE_ID", "braze_id must be a non-empty string.")
_BAD_EMAIL = Problem(
    "EMAIL_BAD_FORMAT",
    "email must be an address such as name@example.com of at most 254 characters, without "
    "whitespace, with a punycode (ASCII) domain.",
)
_EMAIL_NULL_NOT_ALLOWED = Problem(
    "EMAIL_BAD_FORMAT",
    "email may be null only in an attributes object that names the user by external_id, "
    "user_alias or braze_id (null removes the email).",
)
_BAD_PHONE = Problem("BAD_PHONE", "phone must be a non-empty string; E.164 such as +15555555555 is recommended.")
_PHONE_NULL_NOT_ALLOWED = Problem(
    "BAD_PHONE",
    "phone may be null only in an attributes object that names the user by external_id, "
    "user_alias or braze_id (null removes the phone number).",
)
_BAD_UPDATE_EXISTING_ONLY = Problem("BAD_UPDATE_EXISTING_ONLY", "_update_existing_only must be true or false.")
_PUSH_TOKEN_IMPORT_NOT_BOOLEAN = Problem("BAD_PUSH_TOKEN_IMPORT", "push_token_import must be true or false.")
_BAD_PUSH_TOKEN_IMPORT = Problem(
    "BAD_PUSH_TOKEN_IMPORT",
    "With push_token_import true, leave out external_id and braze_id and send a non-empty push_tokens array.",
)

# Braze's own validator takes Unicode letters and digits in the local part (\w here), these
# symbols, and dots only between other characters; the domain must already be punycode (ASCII).
# The local part is at most 64 characters, and domain labels neither start nor end with a hyphen.
# Possessive quantifiers (Python 3.11+) never backtrack, which keeps the match linear and fast.
_EMAIL_PATTERN = re.compile(
    r"(?=[^@]{1,64}+@)"
    r"[\w!#$%&'*+/=?^`{|}~-]++(?:\.[\w!#$%&'*+/=?^`{|}~-]++)*+"
    r"@(?:[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+\.)++(?:[A-Za-z]{2,63}+|xn--[A-Za-z0-9-]{1,59}+)"
)


def _check_external_id(value: object) -> Problem | None:
    if type(value) is not str or not value:
        return _EXTERNAL_ID_NOT_STRING
    # The usual ASCII id is its own UTF-8 size; _utf8_size would tell the same, at the cost of a call.
    size = len(value) if value.isascii() else _utf8_size(value)
    if size < 0:
        return _EXTERNAL_ID_NOT_UNICODE
    return _EXTERNAL_ID_TOO_LARGE if size > _MAX_EXTERNAL_ID_BYTES else None


def _check_user_alias(value: object) -> Problem | None:
    if (
        type(value) is dict
        and len(value) == 2
        and _is_short_string(value.get("alias_name"))
        and _is_short_string(value.get("alias_label"))
    ):
        return None
    return _BAD_USER_ALIAS


def _check_braze_id(value: object) -> Problem | None:
    return None if type(value) is str and value else _BAD_BRAZE_ID


def _is_email(value: object) -> bool:
    return type(value) is str and len(value) <= _MAX_EMAIL and _EMAIL_PATTERN.fullmatch(value) is not None


# The identity fields other than external_id and email: most objects carry none of them.
_UNCOMMON_IDENTITY_FIELDS = frozenset({"user_alias", "braze_id", "phone", "_update_existing_only", "push_token_import"})


def _check_identifiers(obj: dict, in_attributes: bool) -> Problem | None:
    """Who the object is about, plus the flags that change how Braze looks the user up."""
    external_id = obj.get("external_id", _ABSENT)
    if external_id is not _ABSENT and _UNCOMMON_IDENTITY_FIELDS.isdisjoint(obj):
        # The common case, external_id and perhaps email: the general path below with every other
        # field absent, which one C-level set test confirms instead of a look-up per field. The
        # usual values (a plain ASCII id, a valid email) are accepted in line, saving a call each.
        if not (type(external_id) is str and external_id.isascii() and 0 < len(external_id) <= _MAX_EXTERNAL_ID_BYTES):
            problem = _check_external_id(external_id)
            if problem is not None:
                return problem
        email = obj.get("email", _ABSENT)
        if email is _ABSENT:
            return None
        if type(email) is str and len(email) <= _MAX_EMAIL and _EMAIL_PATTERN.fullmatch(email) is not None:
            return None
        if email is None:  # removes the email: allowed beside a primary identifier in attributes only
            return None if in_attributes else _EMAIL_NULL_NOT_ALLOWED
        return _BAD_EMAIL

    has_alias = "user_alias" in obj
    has_braze_id = "braze_id" in obj
    primaries = (external_id is not _ABSENT) + has_alias + has_braze_id
    if primaries > 1:
        return _MULTIPLE_PRIMARY
    if external_id is not _ABSENT:
        problem = _check_external_id(external_id)
    elif has_alias:
        problem = _check_user_alias(obj["user_alias"])
    elif has_braze_id:
        problem = _check_braze_id(obj["braze_id"])
    else:
        problem = None
    if problem is not None:
        return problem
    return _check_beside_primary(obj, in_attributes, primaries, external_id is not _ABSENT or has_braze_id)


def _check_beside_primary(obj: dict, in_attributes: bool, primaries: int, has_id: bool) -> Problem | None:
    """_check_identifiers' general path, after the primary identifier: email and phone, the lookup
    flags, and last that the object names a user at all.

    ``has_id``: the object has an external_id or a braze_id, which a token import must not carry.
    The common case (external_id, perhaps email) never gets here, so the split costs it nothing.
    """
    # With a primary identifier, email and phone are plain profile fields, and null removes them.
    email = obj.get("email", _ABSENT)
    if email is None:
        if not (in_attributes and primaries):
            return _EMAIL_NULL_NOT_ALLOWED
    elif email is not _ABSENT and not (
        # _is_email in line: it pays for the call into this function on objects with an email.
        type(email) is str and len(email) <= _MAX_EMAIL and _EMAIL_PATTERN.fullmatch(email) is not None
    ):
        return _BAD_EMAIL
    phone = obj.get("phone", _ABSENT)
    if phone is None:
        if not (in_attributes and primaries):
            return _PHONE_NULL_NOT_ALLOWED
    elif phone is not _ABSENT and (type(phone) is not str or not phone):
        return _BAD_PHONE

    update_only = obj.get("_update_existing_only", _ABSENT)
    if update_only is not _ABSENT and type(update_only) is not bool:
        return _BAD_UPDATE_EXISTING_ONLY

    token_import = obj.get("push_token_import", _ABSENT) if in_attributes else _ABSENT
    if token_import is not _ABSENT:
        if type(token_import) is not bool:
            return _PUSH_TOKEN_IMPORT_NOT_BOOLEAN
        if token_import:
            # A token import creates an anonymous profile per token, so it needs no identifier.
            tokens = obj.get("push_tokens")
            if has_id or type(tokens) is not list or not tokens:
                return _BAD_PUSH_TOKEN_IMPORT
            return None

    if not primaries and email is _ABSENT and phone is _ABSENT:
        return _MISSING_IDENTIFIER
    return None


# ---------------------------------------------------------------------------------------------------
# Attributes objects: reserved profile fields
# ---------------------------------------------------------------------------------------------------


def _checked_with_identifiers(value: object) -> Problem | None:
    return None


def _nullable_string(name: str) -> _Check:
    not_string = Problem("BAD_ATTRIBUTE_VALUE", f"{name} must be a string or null.")
    too_long = Problem("STRING_TOO_LONG", f"{name} must be at most 255 characters.")

    def check(value: object) -> Problem | None:
        if type(value) is str:
            return too_long if len(value) > _MAX_STRING else None
        return None if value is None else not_string

    return check


def _one_of(allowed: frozenset[str], problem: Problem, *, nullable: bool) -> _Check:
    def check(value: object) -> Problem | None:
        if (type(value) is str and value in allowed) or (nullable and value is None):
            return None
        return problem

    return check


def _boolean(name: str, code: str = "BAD_ATTRIBUTE_VALUE") -> _Check:
    problem = Problem(code, f"{name} must be true or false.")
    return lambda value: None if type(value) is bool else problem


def _date(name: str) -> _Check:
    problem = Problem(
        "BAD_DATE",
        f"{name} must be a date string on a real date: ISO 8601, or yyyy-MM-dd HH:mm:ss, "
        "MM/dd/yyyy or another format Braze documents.",
    )
    return lambda value: None if _is_attribute_date(value) else problem


def _always(problem: Problem) -> _Check:
    return lambda value: problem


_BAD_DOB = Problem("BAD_DOB", "dob must be a real date written YYYY-MM-DD, or null.")


def _check_dob(value: object) -> Problem | None:
    return None if value is None or _is_dob(value) else _BAD_DOB


_BAD_LOCATION = Problem(
    "BAD_LOCATION_UPDATE",
    "current_location must be an object with exactly longitude (-180 to 180) and latitude (-90 to 90), both numbers.",
)


def _check_current_location(value: object) -> Problem | None:
    if type(value) is not dict or len(value) != 2:
        return _BAD_LOCATION
    longitude = value.get("longitude")
    latitude = value.get("latitude")
    # NaN fails every comparison, so the range test also keeps it out.
    if (
        _is_finite_number(longitude)
        and _is_finite_number(latitude)
        and -180 <= longitude <= 180
        and -90 <= latitude <= 90
    ):
        return None
    return _BAD_LOCATION


_SUBSCRIPTION_GROUP_KEYS = frozenset({"subscription_group_id", "subscription_state", "use_double_opt_in_logic"})
_SUBSCRIPTION_GROUP_STATES = frozenset({"subscribed", "unsubscribed"})
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_BAD_SUBSCRIPTION_GROUP_ARRAY = Problem(
    "BAD_SUBSCRIPTION_GROUP_ARRAY", "subscription_groups must be an array of subscription group objects."
)
_BAD_SUBSCRIPTION_GROUP_HASH = Problem(
    "BAD_SUBSCRIPTION_GROUP_HASH",
    "Each subscription group must be an object with subscription_group_id and subscription_state, "
    "and optionally use_double_opt_in_logic.",
)
_BAD_DOUBLE_OPT_IN = Problem(
    "BAD_SUBSCRIPTION_GROUP_HASH",
    "use_double_opt_in_logic must be true or false, and may only come with subscription_state subscribed.",
)
_BAD_SUBSCRIPTION_GROUP_ID = Problem(
    "BAD_SUBSCRIPTION_GROUP_ID", "subscription_group_id must be the group's UUID, as the dashboard shows it."
)
_BAD_SUBSCRIPTION_GROUP_STATE = Problem(
    "BAD_SUBSCRIPTION_GROUP_STATE", "subscription_state must be subscribed or unsubscribed."
)


def _check_subscription_groups(value: object) -> Problem | None:
    if type(value) is not list:
        return _BAD_SUBSCRIPTION_GROUP_ARRAY
    for group in value:
        if type(group) is not dict or not group.keys() <= _SUBSCRIPTION_GROUP_KEYS:
            return _BAD_SUBSCRIPTION_GROUP_HASH
        group_id = group.get("subscription_group_id", _ABSENT)
        state = group.get("subscription_state", _ABSENT)
        if group_id is _ABSENT or state is _ABSENT:
            return _BAD_SUBSCRIPTION_GROUP_HASH
        if type(group_id) is not str or _UUID.fullmatch(group_id) is None:
            return _BAD_SUBSCRIPTION_GROUP_ID
        if type(state) is not str or state not in _SUBSCRIPTION_GROUP_STATES:
            return _BAD_SUBSCRIPTION_GROUP_STATE
        double_opt_in = group.get("use_double_opt_in_logic", _ABSENT)
        if double_opt_in is not _ABSENT and (type(double_opt_in) is not bool or state != "subscribed"):
            return _BAD_DOUBLE_OPT_IN
    return None


_PUSH_TOKEN_KEYS = frozenset({"app_id", "token", "device_id"})
_BAD_PUSH_TOKENS = Problem(
    "BAD_PUSH_TOKEN_VALUE",
    "push_tokens must be an array of objects with app_id, token and optionally device_id.",
)
_BAD_PUSH_TOKEN_APP_ID = Problem(
    "BAD_PUSH_TOKEN_APP_ID", "Each push token needs app_id: the app's identifier, a non-empty string."
)
_BAD_PUSH_TOKEN_STRING = Problem("BAD_PUSH_TOKEN_STRING", "Each push token needs token: a non-empty string.")
_BAD_DEVICE_ID = Problem("BAD_DEVICE_ID", "A push token's device_id must be a string of 8 to 255 bytes.")


def _check_push_tokens(value: object) -> Problem | None:
    if type(value) is not list:
        return _BAD_PUSH_TOKENS
    for token in value:
        if type(token) is not dict or not token.keys() <= _PUSH_TOKEN_KEYS:
            return _BAD_PUSH_TOKENS
        app_id = token.get("app_id")
        if type(app_id) is not str or not app_id:
            return _BAD_PUSH_TOKEN_APP_ID
        token_string = token.get("token")
        if type(token_string) is not str or not token_string:
            return _BAD_PUSH_TOKEN_STRING
        device_id = token.get("device_id", _ABSENT)
        if device_id is not _ABSENT and not (type(device_id) is str and 8 <= _utf8_size(device_id) <= 255):
            return _BAD_DEVICE_ID
    return None


_SUBSCRIPTION_STATES = frozenset({"opted_in", "subscribed", "unsubscribed"})
_GENDERS = frozenset({"M", "F", "O", "N", "P"})

# Reserved names are lower-case and case-sensitive: "First_Name" is a custom attribute.
_RESERVED_ATTRIBUTES: dict[str, _Check] = {
    "external_id": _checked_with_identifiers,
    "user_alias": _checked_with_identifiers,
    "braze_id": _checked_with_identifiers,
    "email": _checked_with_identifiers,
    "phone": _checked_with_identifiers,
    "_update_existing_only": _checked_with_identifiers,
    "push_token_import": _checked_with_identifiers,
    "first_name": _nullable_string("first_name"),
    "last_name": _nullable_string("last_name"),
    "home_city": _nullable_string("home_city"),
    "gender": _one_of(
        _GENDERS,
        Problem("BAD_GENDER", "gender must be M, F, O (other), N (not applicable), P (prefer not to say) or null."),
        nullable=True,
    ),
    "dob": _check_dob,
    "country": _one_of(
        COUNTRY_CODES,
        Problem("BAD_COUNTRY", "country must be an upper-case ISO 3166-1 alpha-2 code such as US, or null."),
        nullable=True,
    ),
    "language": _one_of(
        LANGUAGE_CODES,
        Problem("BAD_LANGUAGE", "language must be a lower-case ISO 639-1 code such as en, or null."),
        nullable=True,
    ),
    "time_zone": _one_of(
        TIME_ZONES,
        Problem("BAD_TIME_ZONE", "time_zone must be an IANA time zone name such as America/New_York, or null."),
        nullable=True,
    ),
    "email_subscribe": _one_of(
        _SUBSCRIPTION_STATES,
        Problem("BAD_EMAIL_SUBSCRIPTION_STATE", "email_subscribe must be opted_in, subscribed or unsubscribed."),
        nullable=False,
    ),
    "push_subscribe": _one_of(
        _SUBSCRIPTION_STATES,
        Problem("BAD_PUSH_SUBSCRIPTION_STATE", "push_subscribe must be opted_in, subscribed or unsubscribed."),
        nullable=False,
    ),
    "subscription_groups": _check_subscription_groups,
    "current_location": _check_current_location,
    "date_of_first_session": _date("date_of_first_session"),
    "date_of_last_session": _date("date_of_last_session"),
    "marked_email_as_spam_at": _date("marked_email_as_spam_at"),
    "email_open_tracking_disabled": _boolean("email_open_tracking_disabled"),
    "email_click_tracking_disabled": _boolean("email_click_tracking_disabled"),
    "push_tokens": _check_push_tokens,
    "_merge_objects": _boolean("_merge_objects", "BAD_MERGE_OBJECTS"),
    "email_subscription_info": _always(
        Problem(
            "INVALID_ATTRIBUTE_EMAIL_SUBSCRIPTION_INFO",
            "email_subscription_info is not an attribute; use email_subscribe or subscription_groups.",
        )
    ),
}


# ---------------------------------------------------------------------------------------------------
# Attributes objects: custom attributes
# ---------------------------------------------------------------------------------------------------

_BAD_ATTRIBUTE_NAME = Problem(
    "BAD_ATTRIBUTE_NAME",
    "Custom attribute names must be non-empty, at most 255 characters, and must not start with $.",
)
_BAD_ATTRIBUTE_VALUE = Problem(
    "BAD_ATTRIBUTE_VALUE",
    "A custom attribute must be a string, finite number, boolean, null, array, object, or an "
    'operation object such as {"inc": 1}.',
)
_ATTRIBUTE_STRING_TOO_LONG = Problem("STRING_TOO_LONG", "Custom attribute strings must be at most 255 characters.")
_BAD_ARRAY_ITEM = Problem(
    "BAD_ATTRIBUTE_VALUE",
    "An array attribute must hold only strings, finite numbers and booleans, or else only objects.",
)
_ARRAY_STRING_TOO_LONG = Problem("STRING_TOO_LONG", "Strings in an array attribute must be at most 255 characters.")
_BAD_INCREMENT = Problem("BAD_INCREMENT", "inc takes an integer (negative to decrement).")
_BAD_SCALAR_OPERATION = Problem(
    "BAD_ARRAY_OPERATION", "add and remove take an array of strings, finite numbers and booleans."
)
_BAD_OBJECTS_ADD = Problem("BAD_ARRAY_OPERATION", "$add takes an array of objects.")
_BAD_OBJECTS_REMOVE = Problem(
    "BAD_ARRAY_OPERATION",
    "$remove takes an array of objects with exactly $identifier_key (a key name) and $identifier_value "
    "(a string, number or boolean).",
)
_BAD_OBJECTS_UPDATE = Problem(
    "BAD_ARRAY_OPERATION",
    "$update takes an array of objects with exactly $identifier_key, $identifier_value and $new_object (an object).",
)
_UPDATE_WITHOUT_MERGE = Problem(
    "BAD_ARRAY_OPERATION",
    '$update needs "_merge_objects": true in the same attributes object, or Braze overwrites the '
    "matching objects instead of updating them.",
)
_MIXED_OPERATION = Problem(
    "BAD_ARRAY_OPERATION",
    "An operation object holds exactly one of inc, add, remove, $add, $remove and $update, and nothing else.",
)
_UNKNOWN_OPERATION = Problem(
    "BAD_ARRAY_OPERATION", "Unknown operation: Braze takes inc, add, remove, $add, $remove and $update."
)
_BAD_NESTED_KEY = Problem(
    "BAD_NESTED_ATTRIBUTE",
    "Keys in a nested attribute must be 1 to 255 characters without spaces, dots or $.",
)
_NESTED_NULL = Problem(
    "BAD_NESTED_ATTRIBUTE",
    "A nested attribute may not hold null (Braze then drops every nested update in the request); "
    "leave the key out instead.",
)
_NESTED_STRING_TOO_LONG = Problem(
    "BAD_NESTED_ATTRIBUTE", "Strings in a nested attribute must be at most 255 characters."
)
_BAD_NESTED_VALUE = Problem(
    "BAD_NESTED_ATTRIBUTE",
    "Values in a nested attribute must be strings, finite numbers, booleans, arrays or objects.",
)
_BAD_NESTED_DATE = Problem(
    "BAD_DATE",
    'A date in a nested attribute must be {"$time": "..."} alone, holding an ISO 8601 date or another '
    "format Braze documents.",
)

_NESTED_KEY = re.compile(r"[^ .$]{1,255}")


def _array_too_long(limits: Limits) -> Problem:
    return Problem("ARRAY_TOO_LONG", f"An array attribute may hold at most {limits.max_array_items} values.")


def _nested_too_large(limits: Limits) -> Problem:
    return Problem(
        "NESTED_ATTRIBUTE_TOO_LARGE",
        f"A nested object or array of objects must be at most {limits.max_nested_attribute_bytes} bytes "
        "of compact JSON.",
    )


def _check_scalar_items(items: list, limits: Limits) -> Problem | None:
    if len(items) > limits.max_array_items:
        return _array_too_long(limits)
    for item in items:
        kind = type(item)
        if kind is str:
            if len(item) > _MAX_STRING:
                return _ARRAY_STRING_TOO_LONG
        elif kind is float:
            if not isfinite(item):
                return _BAD_ARRAY_ITEM
        elif kind is not int and kind is not bool:
            return _BAD_ARRAY_ITEM
    return None


def _nested_scalar_problem(value: object) -> Problem | None:
    # One type() call on a hot path; mypy does not narrow `value` through `kind`, hence the ignores.
    kind = type(value)
    if kind is str:
        return _NESTED_STRING_TOO_LONG if len(value) > _MAX_STRING else None  # type: ignore[arg-type]  # a str
    if kind is int or kind is bool:
        return None
    if kind is float:
        return None if isfinite(value) else _BAD_NESTED_VALUE  # type: ignore[arg-type]  # a float
    return _NESTED_NULL if value is None else _BAD_NESTED_VALUE


def _check_nested(root: dict | list, level: int, max_depth: int) -> Problem | None:
    """Key and value rules inside a nested object or array of objects (``root`` sits at ``level``).

    Walked without recursion; raises NestingTooDeep like _raise_if_too_deep.
    """
    stack: list[tuple[dict | list, int]] = [(root, level)]
    while stack:
        node, level = stack.pop()
        if type(node) is list:
            for child in node:
                if type(child) is dict or type(child) is list:
                    if level >= max_depth:
                        raise NestingTooDeep(f"A value nests deeper than {max_depth} levels.")
                    stack.append((child, level + 1))
                elif (problem := _nested_scalar_problem(child)) is not None:
                    return problem
            continue
        # A dict (only exact dicts and lists are stacked): mypy does not narrow the else of `type(node) is list`.
        if "$time" in node:
            if len(node) != 1 or not _is_attribute_date(node["$time"]):  # type: ignore[call-overload]  # a dict
                return _BAD_NESTED_DATE
            continue
        for key, child in node.items():  # type: ignore[union-attr]  # a dict
            if type(key) is not str or _NESTED_KEY.fullmatch(key) is None:
                return _BAD_NESTED_KEY
            if type(child) is dict or type(child) is list:
                if level >= max_depth:
                    raise NestingTooDeep(f"A value nests deeper than {max_depth} levels.")
                stack.append((child, level + 1))
            elif (problem := _nested_scalar_problem(child)) is not None:
                return problem
    return None


def _is_identifier_key(value: object) -> bool:
    return type(value) is str and _NESTED_KEY.fullmatch(value) is not None


def _is_identifier_value(value: object) -> bool:
    kind = type(value)
    if kind is str:
        return len(value) <= _MAX_STRING  # type: ignore[arg-type]  # a str: mypy does not narrow through `kind`
    return kind is bool or _is_finite_number(value)


def _check_objects_add(argument: object, obj: dict, limits: Limits) -> Problem | None:
    if type(argument) is not list or any(type(item) is not dict for item in argument):
        return _BAD_OBJECTS_ADD
    return _check_nested(argument, 2, limits.max_object_depth)


def _check_objects_remove(argument: object, obj: dict, limits: Limits) -> Problem | None:
    if type(argument) is not list:
        return _BAD_OBJECTS_REMOVE
    for item in argument:
        if not (
            type(item) is dict
            and len(item) == 2
            and _is_identifier_key(item.get("$identifier_key"))
            and _is_identifier_value(item.get("$identifier_value"))
        ):
            return _BAD_OBJECTS_REMOVE
    return None


def _check_objects_update(argument: object, obj: dict, limits: Limits) -> Problem | None:
    if obj.get("_merge_objects") is not True:
        return _UPDATE_WITHOUT_MERGE
    if type(argument) is not list:
        return _BAD_OBJECTS_UPDATE
    for item in argument:
        if not (
            type(item) is dict
            and len(item) == 3
            and _is_identifier_key(item.get("$identifier_key"))
            and _is_identifier_value(item.get("$identifier_value"))
            and type(item.get("$new_object")) is dict
        ):
            return _BAD_OBJECTS_UPDATE
        if (problem := _check_nested(item["$new_object"], 4, limits.max_object_depth)) is not None:
            return problem
    return None


_Operation = Callable[[object, dict, Limits], Problem | None]

# The operations on arrays of objects. inc, add and remove, far more common, are checked in line
# by _check_attribute_object.
_OBJECT_OPERATIONS: dict[str, _Operation] = {
    "$add": _check_objects_add,
    "$remove": _check_objects_remove,
    "$update": _check_objects_update,
}
_OPERATIONS = frozenset({"inc", "add", "remove", *_OBJECT_OPERATIONS})
# The operations that write objects, and so count against the nested-attribute size cap.
_SIZED_OPERATIONS = frozenset({"$add", "$update"})


def _check_attribute_object(value: dict, obj: dict, encoded_size: int, limits: Limits) -> Problem | None:
    if len(value) == 1:
        (name,) = value
        argument = value[name]
        # The common operations, in line rather than behind a table and a call. They write no
        # objects, so no size cap applies.
        if name == "inc":
            return None if type(argument) is int else _BAD_INCREMENT
        if name == "add" or name == "remove":
            return _check_scalar_items(argument, limits) if type(argument) is list else _BAD_SCALAR_OPERATION
        operation = _OBJECT_OPERATIONS.get(name)
        if operation is not None:
            problem = operation(argument, obj, limits)
            if problem is None and name in _SIZED_OPERATIONS:
                cap = limits.max_nested_attribute_bytes
                return _nested_too_large(limits) if _too_large(value, encoded_size, cap) else None
            return problem
        if type(name) is str and name.startswith("$") and name != "$time":
            return _UNKNOWN_OPERATION
    elif not _OPERATIONS.isdisjoint(value):
        return _MIXED_OPERATION
    problem = _check_nested(value, 1, limits.max_object_depth)
    if problem is None and _too_large(value, encoded_size, limits.max_nested_attribute_bytes):
        return _nested_too_large(limits)
    return problem


def _check_attribute_array(value: list, encoded_size: int, limits: Limits) -> Problem | None:
    if not value or type(value[0]) is not dict:
        return _check_scalar_items(value, limits)
    # An array of objects: no item limit, but the same key rules and size cap as a nested object.
    if any(type(item) is not dict for item in value):
        return _BAD_ARRAY_ITEM
    problem = _check_nested(value, 1, limits.max_object_depth)
    if problem is None and _too_large(value, encoded_size, limits.max_nested_attribute_bytes):
        return _nested_too_large(limits)
    return problem


def _check_attributes(obj: dict, encoded_size: int, limits: Limits) -> Problem | None:
    problem = _check_identifiers(obj, in_attributes=True)
    if problem is not None:
        return problem
    reserved = _RESERVED_ATTRIBUTES
    for name, value in obj.items():
        check = reserved.get(name)
        if check is not None:
            # Identity fields were checked above: skipping them saves a call each.
            if check is not _checked_with_identifiers and (problem := check(value)) is not None:
                return problem
            continue
        # A custom attribute: checked in line, as they are most of a typical object's fields.
        if type(name) is not str or not name or len(name) > _MAX_STRING or name[0] == "$":
            return _BAD_ATTRIBUTE_NAME
        kind = type(value)
        # Date-like strings are not checked: Braze keeps a string it cannot read as a date as a string.
        if kind is str:
            if len(value) > _MAX_STRING:
                return _ATTRIBUTE_STRING_TOO_LONG
        elif kind is int or kind is bool or value is None or (kind is float and isfinite(value)):
            pass  # a non-finite float falls through to the final else: _BAD_ATTRIBUTE_VALUE
        elif kind is dict:
            # A valid {"inc": n}, the most common operation, needs no call: _check_attribute_object
            # would accept it too. Anything else gets the full check.
            if len(value) == 1 and type(value.get("inc")) is int:
                continue
            if (problem := _check_attribute_object(value, obj, encoded_size, limits)) is not None:
                return problem
        elif kind is list:
            if (problem := _check_attribute_array(value, encoded_size, limits)) is not None:
                return problem
        else:
            return _BAD_ATTRIBUTE_VALUE
    return None


# ---------------------------------------------------------------------------------------------------
# Events and purchases
# ---------------------------------------------------------------------------------------------------

_IDENTIFIER_FIELDS = ("external_id", "user_alias", "braze_id", "email", "phone", "_update_existing_only")
_EVENT_FIELDS = frozenset({*_IDENTIFIER_FIELDS, "app_id", "name", "time", "properties"})
_PURCHASE_FIELDS = frozenset(
    {*_IDENTIFIER_FIELDS, "app_id", "product_id", "currency", "price", "quantity", "time", "properties"}
)
_RESERVED_PROPERTY_NAMES = frozenset({"time", "event_name"})

_EVENT_UNKNOWN_FIELD = Problem(
    "UNKNOWN_FIELD",
    "Event objects take only external_id, user_alias, braze_id, email, phone, app_id, name, time, "
    "properties and _update_existing_only.",
)
_PURCHASE_UNKNOWN_FIELD = Problem(
    "UNKNOWN_FIELD",
    "Purchase objects take only external_id, user_alias, braze_id, email, phone, app_id, product_id, "
    "currency, price, quantity, time, properties and _update_existing_only.",
)
_MISSING_EVENT_NAME = Problem("MISSING_EVENT_NAME", "An event needs name: the custom event's name.")
_BAD_EVENT_NAME = Problem(
    "BAD_EVENT_NAME", "name must be a non-empty string of at most 255 characters that does not start with $."
)
_MISSING_TIME = Problem("MISSING_TIME", "time is required: an ISO 8601 date and time such as 2024-05-01T12:00:00Z.")
_BAD_TIME = Problem(
    "BAD_TIME",
    "time must be an ISO 8601 date and time on a real date, such as 2024-05-01T12:00:00Z "
    "(or Braze's yyyy-MM-ddTHH:mm:ss:SSSZ).",
)
_BAD_APP_ID = Problem("BAD_APP_ID", "app_id must be a non-empty string.")
_BAD_PROPERTIES = Problem("BAD_PROPERTIES", "properties must be an object.")
_TOO_MANY_PROPERTIES = Problem("TOO_MANY_PROPERTIES", "properties may hold at most 256 keys; Braze ignores the rest.")
_BAD_PROPERTY_NAME = Problem(
    "BAD_PROPERTY_NAME",
    "Property names must be non-empty, at most 255 characters, and must not start with $.",
)
_RESERVED_PROPERTY_NAME = Problem(
    "RESERVED_PROPERTY_NAME", "time and event_name are reserved and cannot be property names."
)
_PROPERTY_STRING_TOO_LONG = Problem("STRING_TOO_LONG", "String property values must be at most 255 characters.")
_BAD_PROPERTY_VALUE = Problem(
    "BAD_PROPERTY_VALUE",
    "Property values must be strings, finite numbers, booleans, null, arrays or objects.",
)
_MISSING_PRODUCT_ID = Problem("MISSING_PRODUCT_ID", "A purchase needs product_id.")
_BAD_PRODUCT_ID = Problem("BAD_PRODUCT_ID", "product_id must be a non-empty string of at most 255 characters.")
_MISSING_CURRENCY = Problem("MISSING_CURRENCY", "A purchase needs currency: an upper-case ISO 4217 code such as USD.")
_BAD_CURRENCY = Problem("BAD_CURRENCY", "currency must be an upper-case ISO 4217 code such as USD.")
_MISSING_PRICE = Problem("MISSING_PRICE", "A purchase needs price: a number in major units (negative for refunds).")
_BAD_PRICE = Problem("BAD_PRICE", "price must be a finite number in major units (negative for refunds).")
_BAD_QUANTITY = Problem("BAD_QUANTITY", "quantity must be an integer from 1 to 100.")


def _properties_too_large(limits: Limits) -> Problem:
    return Problem(
        "PROPERTIES_TOO_LARGE",
        f"properties must be at most {limits.max_properties_bytes} bytes of compact JSON.",
    )


def _check_app_id_and_properties(obj: dict, encoded_size: int, limits: Limits) -> Problem | None:
    """The fields events and purchases share after time (one function: every event pays its calls)."""
    app_id = obj.get("app_id", _ABSENT)
    if app_id is not _ABSENT and (type(app_id) is not str or not app_id):
        return _BAD_APP_ID
    properties = obj.get("properties", _ABSENT)
    if properties is _ABSENT:
        return None
    if type(properties) is not dict:
        return _BAD_PROPERTIES
    if len(properties) > _MAX_PROPERTIES:
        return _TOO_MANY_PROPERTIES
    for name, value in properties.items():
        if type(name) is not str or not name or len(name) > _MAX_STRING or name[0] == "$":
            return _BAD_PROPERTY_NAME
        if name in _RESERVED_PROPERTY_NAMES:
            return _RESERVED_PROPERTY_NAME
        # The usual value types first; each branch ends the tests for its value.
        kind = type(value)
        if kind is str:
            if len(value) > _MAX_STRING:
                return _PROPERTY_STRING_TOO_LONG
        elif kind is int or kind is bool or value is None:
            pass
        elif kind is float:
            if not isfinite(value):
                return _BAD_PROPERTY_VALUE
        elif kind is dict or kind is list:
            _raise_if_too_deep(value, 2, limits.max_object_depth)
        else:
            return _BAD_PROPERTY_VALUE
    # _too_large in line, as properties are checked for every event: still only measured over the cap.
    cap = limits.max_properties_bytes
    if encoded_size > cap and _json_size(properties) > cap:
        return _properties_too_large(limits)
    return None


def _check_event(obj: dict, encoded_size: int, limits: Limits) -> Problem | None:
    # issuperset walks the dict's keys in C, quicker than the generic `obj.keys() <= ...`; same test.
    if not _EVENT_FIELDS.issuperset(obj):
        return _EVENT_UNKNOWN_FIELD
    problem = _check_identifiers(obj, in_attributes=False)
    if problem is not None:
        return problem
    # Below, an absent field (_ABSENT) fails the value test, so only a failure asks which it was.
    name = obj.get("name", _ABSENT)
    if type(name) is not str or not name or len(name) > _MAX_STRING or name[0] == "$":
        return _MISSING_EVENT_NAME if name is _ABSENT else _BAD_EVENT_NAME
    time = obj.get("time", _ABSENT)
    if not _is_event_time(time):
        return _MISSING_TIME if time is _ABSENT else _BAD_TIME
    return _check_app_id_and_properties(obj, encoded_size, limits)


def _check_purchase(obj: dict, encoded_size: int, limits: Limits) -> Problem | None:
    if not _PURCHASE_FIELDS.issuperset(obj):  # as in _check_event
        return _PURCHASE_UNKNOWN_FIELD
    problem = _check_identifiers(obj, in_attributes=False)
    if problem is not None:
        return problem
    # Below, an absent field (_ABSENT) fails the value test, so only a failure asks which it was.
    product_id = obj.get("product_id", _ABSENT)
    if not _is_short_string(product_id):
        return _MISSING_PRODUCT_ID if product_id is _ABSENT else _BAD_PRODUCT_ID
    currency = obj.get("currency", _ABSENT)
    if type(currency) is not str or currency not in CURRENCY_CODES:
        return _MISSING_CURRENCY if currency is _ABSENT else _BAD_CURRENCY
    price = obj.get("price", _ABSENT)
    if not _is_finite_number(price):
        return _MISSING_PRICE if price is _ABSENT else _BAD_PRICE
    quantity = obj.get("quantity", _ABSENT)
    if quantity is not _ABSENT and not (type(quantity) is int and 1 <= quantity <= 100):
        return _BAD_QUANTITY
    time = obj.get("time", _ABSENT)
    if not _is_event_time(time):
        return _MISSING_TIME if time is _ABSENT else _BAD_TIME
    return _check_app_id_and_properties(obj, encoded_size, limits)


# ---------------------------------------------------------------------------------------------------
# /users/identify
# ---------------------------------------------------------------------------------------------------

_PRIORITIES = frozenset({"identified", "unidentified", "most_recently_updated", "least_recently_updated"})
_BAD_PRIORITIZATION = Problem(
    "BAD_PRIORITIZATION",
    "prioritization is required: a non-empty array of distinct values from identified, unidentified, "
    "most_recently_updated and least_recently_updated, with at most one of identified and unidentified.",
)
_ALIAS_FIELDS = frozenset({"external_id", "user_alias"})
_EMAIL_FIELDS = frozenset({"external_id", "email", "prioritization"})
_PHONE_FIELDS = frozenset({"external_id", "phone", "prioritization"})
_ALIAS_UNKNOWN_FIELD = Problem("UNKNOWN_FIELD", "aliases_to_identify objects take only external_id and user_alias.")
_EMAIL_UNKNOWN_FIELD = Problem(
    "UNKNOWN_FIELD", "emails_to_identify objects take only external_id, email and prioritization."
)
_PHONE_UNKNOWN_FIELD = Problem(
    "UNKNOWN_FIELD", "phone_numbers_to_identify objects take only external_id, phone and prioritization."
)
_ALIAS_MISSING = Problem("MISSING_IDENTIFIER", "aliases_to_identify objects need both external_id and user_alias.")
_EMAIL_MISSING = Problem("MISSING_IDENTIFIER", "emails_to_identify objects need both external_id and email.")
_PHONE_MISSING = Problem("MISSING_IDENTIFIER", "phone_numbers_to_identify objects need both external_id and phone.")


def _check_prioritization(
    value: object, allowed: frozenset[str] = _PRIORITIES, problem: Problem = _BAD_PRIORITIZATION
) -> Problem | None:
    if type(value) is not list or not value:
        return problem
    for item in value:
        if type(item) is not str or item not in allowed:
            return problem
    if len(set(value)) != len(value) or ("identified" in value and "unidentified" in value):
        return problem
    return None


def _check_alias_to_identify(obj: dict) -> Problem | None:
    if not obj.keys() <= _ALIAS_FIELDS:
        return _ALIAS_UNKNOWN_FIELD
    if len(obj) != 2:
        return _ALIAS_MISSING
    problem = _check_external_id(obj["external_id"])
    if problem is not None:
        return problem
    return _check_user_alias(obj["user_alias"])


def _check_email_to_identify(obj: dict) -> Problem | None:
    if not obj.keys() <= _EMAIL_FIELDS:
        return _EMAIL_UNKNOWN_FIELD
    external_id = obj.get("external_id", _ABSENT)
    email = obj.get("email", _ABSENT)
    if external_id is _ABSENT or email is _ABSENT:
        return _EMAIL_MISSING
    problem = _check_external_id(external_id)
    if problem is not None:
        return problem
    if not _is_email(email):
        return _BAD_EMAIL
    return _check_prioritization(obj.get("prioritization", _ABSENT))


def _check_phone_to_identify(obj: dict) -> Problem | None:
    if not obj.keys() <= _PHONE_FIELDS:
        return _PHONE_UNKNOWN_FIELD
    external_id = obj.get("external_id", _ABSENT)
    phone = obj.get("phone", _ABSENT)
    if external_id is _ABSENT or phone is _ABSENT:
        return _PHONE_MISSING
    problem = _check_external_id(external_id)
    if problem is not None:
        return problem
    if type(phone) is not str or not phone:
        return _BAD_PHONE
    return _check_prioritization(obj.get("prioritization", _ABSENT))


# ---------------------------------------------------------------------------------------------------
# /users/delete, /users/alias/new, /users/merge (BRAZE_API.md §6)
# ---------------------------------------------------------------------------------------------------

# /users/delete documents three orders for an email or phone delete: no least_recently_updated.
_DELETE_PRIORITIES = frozenset({"identified", "unidentified", "most_recently_updated"})
_BAD_DELETE_PRIORITIZATION = Problem(
    "BAD_PRIORITIZATION",
    "prioritization is required: a non-empty array of distinct values from identified, unidentified and "
    "most_recently_updated, with at most one of identified and unidentified.",
)
_DELETE_EMAIL_SHAPE = Problem(
    "INVALID_OBJECT", "Each email_addresses item must be an object of exactly email and prioritization."
)
_DELETE_PHONE_SHAPE = Problem(
    "INVALID_OBJECT", "Each phone_numbers item must be an object of exactly phone and prioritization."
)
_ALIAS_NEW_FIELDS = frozenset({"alias_name", "alias_label", "external_id"})
_ALIAS_NEW_UNKNOWN_FIELD = Problem(
    "UNKNOWN_FIELD", "user_aliases objects take only alias_name, alias_label and, optionally, external_id."
)
_ALIAS_NEW_BAD_ALIAS = Problem(
    "BAD_USER_ALIAS", "alias_name and alias_label are required: non-empty strings of at most 255 characters."
)
_MERGE_SIDES = ("identifier_to_merge", "identifier_to_keep")
_MERGE_IDENTIFIERS = ("external_id", "user_alias", "email", "phone")
# Braze's own message for a merge update with other keys (its page's troubleshooting table).
_MERGE_ONLY_TWO_KEYS = Problem(
    "INVALID_MERGE_UPDATE", "'merge_updates' must only have 'identifier_to_merge' and 'identifier_to_keep'."
)
_MERGE_INTO_ITSELF = Problem(
    "MERGE_INTO_ITSELF",
    "identifier_to_merge and identifier_to_keep name the same user; a user cannot be merged into itself.",
)
_BAD_MERGE_IDENTIFIER = {
    side: Problem(
        "BAD_MERGE_IDENTIFIER",
        f"{side} must be an object with exactly one of external_id (a string), user_alias (alias_name and "
        "alias_label), email or phone (a string, with prioritization).",
    )
    for side in _MERGE_SIDES
}


def check_delete_identifier(
    array: str, obj: object, encoded_size: int, limits: Limits = DEFAULT_LIMITS
) -> Problem | None:
    """First problem Braze would have with ``obj`` as an item of /users/delete's ``array``, or None.

    external_ids and braze_ids hold strings; user_aliases {alias_name, alias_label}; email_addresses
    and phone_numbers {email|phone, prioritization}. Same contract as check_track_object otherwise.
    """
    if array == "external_ids":
        return _check_external_id(obj) if type(obj) is str else _deep_or(obj, _EXTERNAL_ID_NOT_STRING, limits)
    if array == "braze_ids":
        return _check_braze_id(obj) if type(obj) is str else _deep_or(obj, _BAD_BRAZE_ID, limits)
    if array not in DELETE_ARRAYS:
        raise ValueError(f"array must be one of {DELETE_ARRAYS}")
    if type(obj) is not dict:
        return _not_an_object(obj, limits)
    if array == "user_aliases":
        problem = _check_user_alias(obj)
    elif array == "email_addresses":
        if obj.keys() != {"email", "prioritization"}:
            problem = _DELETE_EMAIL_SHAPE
        elif not _is_email(obj["email"]):
            problem = _BAD_EMAIL
        else:
            problem = _check_prioritization(obj["prioritization"], _DELETE_PRIORITIES, _BAD_DELETE_PRIORITIZATION)
    elif obj.keys() != {"phone", "prioritization"}:
        problem = _DELETE_PHONE_SHAPE
    elif type(obj["phone"]) is not str or not obj["phone"]:
        problem = _BAD_PHONE
    else:
        problem = _check_prioritization(obj["prioritization"], _DELETE_PRIORITIES, _BAD_DELETE_PRIORITIZATION)
    return _deep_or(obj, problem, limits) if problem is not None else None


def check_alias_object(array: str, obj: object, encoded_size: int, limits: Limits = DEFAULT_LIMITS) -> Problem | None:
    """First problem Braze would have with ``obj`` as an item of /users/alias/new's user_aliases, or None."""
    if array not in ALIAS_ARRAYS:
        raise ValueError(f"array must be one of {ALIAS_ARRAYS}")
    if type(obj) is not dict:
        return _not_an_object(obj, limits)
    problem: Problem | None
    if not obj.keys() <= _ALIAS_NEW_FIELDS:
        problem = _ALIAS_NEW_UNKNOWN_FIELD
    elif not (_is_short_string(obj.get("alias_name")) and _is_short_string(obj.get("alias_label"))):
        problem = _ALIAS_NEW_BAD_ALIAS
    else:
        problem = _check_external_id(obj["external_id"]) if "external_id" in obj else None
    return _deep_or(obj, problem, limits) if problem is not None else None


def check_merge_object(array: str, obj: object, encoded_size: int, limits: Limits = DEFAULT_LIMITS) -> Problem | None:
    """First problem Braze would have with ``obj`` as an item of /users/merge's merge_updates, or None.

    Beyond Braze's shape rules, a user merged into itself is refused: Braze documents no outcome for it.
    """
    if array not in MERGE_ARRAYS:
        raise ValueError(f"array must be one of {MERGE_ARRAYS}")
    if type(obj) is not dict:
        return _not_an_object(obj, limits)
    problem: Problem | None = None
    if obj.keys() != set(_MERGE_SIDES):
        problem = _MERGE_ONLY_TWO_KEYS
    else:
        for side in _MERGE_SIDES:
            if not _is_merge_identifier(obj[side]):
                problem = _BAD_MERGE_IDENTIFIER[side]
                break
        else:
            if _merge_identity(obj["identifier_to_merge"]) == _merge_identity(obj["identifier_to_keep"]):
                problem = _MERGE_INTO_ITSELF
    return _deep_or(obj, problem, limits) if problem is not None else None


def _is_merge_identifier(value: object) -> bool:
    if type(value) is not dict:
        return False
    named = [name for name in _MERGE_IDENTIFIERS if name in value]
    if len(named) != 1:
        return False
    name = named[0]
    if name == "external_id":
        return len(value) == 1 and _check_external_id(value[name]) is None
    if name == "user_alias":
        return len(value) == 1 and _check_user_alias(value[name]) is None
    if value.keys() != {name, "prioritization"} or _check_prioritization(value["prioritization"]) is not None:
        return False
    return _is_email(value[name]) if name == "email" else type(value[name]) is str and bool(value[name])


def _merge_identity(identifier: dict) -> tuple[str, object]:
    name = next(name for name in _MERGE_IDENTIFIERS if name in identifier)
    value = identifier[name]
    if name == "user_alias":
        return name, (value["alias_name"], value["alias_label"])
    return name, value


def _deep_or(value: object, problem: Problem, limits: Limits) -> Problem:
    """The problem, unless the value nests too deep (NestingTooDeep wins, as everywhere)."""
    if isinstance(value, dict | list):
        _raise_if_too_deep(value, 0, limits.max_object_depth)
    return problem


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------

_NOT_AN_OBJECT = Problem("INVALID_OBJECT", "Each item of the array must be a JSON object.")


def _not_an_object(value: object, limits: Limits) -> Problem:
    if type(value) is list:
        _raise_if_too_deep(value, 0, limits.max_object_depth)
    return _NOT_AN_OBJECT


_TRACK_CHECKS: dict[str, Callable[[dict, int, Limits], Problem | None]] = {
    "attributes": _check_attributes,
    "events": _check_event,
    "purchases": _check_purchase,
}
_IDENTIFY_CHECKS: dict[str, Callable[[dict], Problem | None]] = {
    "aliases_to_identify": _check_alias_to_identify,
    "emails_to_identify": _check_email_to_identify,
    "phone_numbers_to_identify": _check_phone_to_identify,
}


def check_track_object(array: str, obj: object, encoded_size: int, limits: Limits = DEFAULT_LIMITS) -> Problem | None:
    """First problem Braze would have with ``obj`` as an item of /users/track's ``array``, or None.

    ``encoded_size`` is the byte length of ``obj`` as compact, ASCII-escaped JSON; it lets objects
    under a size cap skip measuring their parts. Raises NestingTooDeep (whatever else is wrong) when
    anything nests deeper than ``limits.max_object_depth``, and ValueError for an unknown ``array``.
    """
    check = _TRACK_CHECKS.get(array)
    if check is None:
        raise ValueError(f"array must be one of {TRACK_ARRAYS}")
    if type(obj) is not dict:
        return _not_an_object(obj, limits)
    problem = check(obj, encoded_size, limits)
    if problem is not None:
        _raise_if_too_deep(obj, 0, limits.max_object_depth)
    return problem


def check_identify_object(
    array: str, obj: object, encoded_size: int, limits: Limits = DEFAULT_LIMITS
) -> Problem | None:
    """First problem Braze would have with ``obj`` as an item of /users/identify's ``array``, or None.

    Same contract as check_track_object; identify objects have no part with a size cap, so
    ``encoded_size`` is taken for symmetry and unused.
    """
    check = _IDENTIFY_CHECKS.get(array)
    if check is None:
        raise ValueError(f"array must be one of {IDENTIFY_ARRAYS}")
    if type(obj) is not dict:
        return _not_an_object(obj, limits)
    problem = check(obj)
    if problem is not None:
        _raise_if_too_deep(obj, 0, limits.max_object_depth)
    return problem

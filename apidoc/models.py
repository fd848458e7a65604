"""Request and answer bodies, as pydantic models used only to write their JSON Schema.

The API does not validate with these: braze_forwarder.braze.validation does, object by object, and
answers Braze's own error shape (see its docstring for every rule). These models describe the same
shapes at the level a client needs — fields, types, limits, the operations on custom attributes —
and tests/apidoc checks the documented examples against both the schemas and the real handlers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_STRING = 255  # Braze's limit for names, strings and property values


def _no_null_defaults(schema: dict[str, Any]) -> None:
    # An optional field here means "may be left out", not "defaults to null": drop pydantic's default.
    for field in schema.get("properties", {}).values():
        if field.get("default", ...) is None:
            del field["default"]


_PRIMARY = ("external_id", "user_alias", "braze_id")


def _one_user(schema: dict[str, Any]) -> None:
    # What validation enforces object by object (a refused object is listed in errors, never queued):
    # at least one identifier (else MISSING_IDENTIFIER), at most one primary (MULTIPLE_PRIMARY_IDENTIFIERS).
    _no_null_defaults(schema)
    schema["anyOf"] = [{"required": [name]} for name in (*_PRIMARY, "email", "phone")]
    pairs = [[a, b] for i, a in enumerate(_PRIMARY) for b in _PRIMARY[i + 1 :]]
    schema["not"] = {"anyOf": [{"required": pair} for pair in pairs]}


def _at_least_one_object(*arrays: str) -> Any:
    # A body without an object in any array is refused whole: 400 empty_request.
    def extra(schema: dict[str, Any]) -> None:
        _no_null_defaults(schema)
        schema["anyOf"] = [
            {"required": [array], "properties": {array: {"type": "array", "minItems": 1}}} for array in arrays
        ]

    return extra


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null_defaults, populate_by_name=True)


# -- identifiers -----------------------------------------------------------------------------------


class UserAlias(_Doc):
    """A user alias: Braze finds (or creates) the alias-only profile it names."""

    alias_name: str = Field(min_length=1, examples=["device-8c1f"])
    alias_label: str = Field(min_length=1, examples=["device_id"])


class _Identified(_Doc):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_user, populate_by_name=True)

    external_id: str = Field(
        None, min_length=1, description="Your user id: at most 987 bytes of UTF-8.", examples=["user-1001"]
    )
    user_alias: UserAlias = None
    braze_id: str = Field(None, min_length=1, description="Braze's own id of the profile.")
    email: str = Field(
        None,
        max_length=254,
        description="Identifies the user by email (an attributes object may also set it, with an identifier).",
    )
    phone: str = Field(None, min_length=1, description="E.164 recommended, e.g. +15555555555.")
    update_existing_only: bool = Field(
        None,
        alias="_update_existing_only",
        description="true: only update an existing profile, never create one (Braze's default for attributes).",
    )


_ONE_USER = (
    " Exactly one user: one of external_id, user_alias and braze_id, or email or phone alone "
    "(more than one primary identifier is MULTIPLE_PRIMARY_IDENTIFIERS)."
)


# -- /users/track -----------------------------------------------------------------------------------


class SubscriptionGroup(_Doc):
    subscription_group_id: str = Field(
        description="The group's id (a UUID).", examples=["3f2d5e8a-0b4c-4f1e-9d7a-2c6b8e1f0a93"]
    )
    subscription_state: Literal["subscribed", "unsubscribed"]
    use_double_opt_in_logic: bool = None


class Location(_Doc):
    longitude: float = Field(ge=-180, le=180)
    latitude: float = Field(ge=-90, le=90)


class PushToken(_Doc):
    app_id: str = Field(min_length=1)
    token: str = Field(min_length=1)
    device_id: str = Field(None, description="8 to 255 bytes.")


class AttributesObject(_Identified):
    """A user's profile fields and custom attributes.

    Reserved field names are lower-case: every other key is a custom attribute, whose value is a
    string (≤ 255 characters), number, boolean, date string, null (unsets it), an array of scalars,
    a nested object, an array of objects, or an operation: `{"inc": n}`, `{"add": [...]}`,
    `{"remove": [...]}`, `{"$add": [...]}`, `{"$remove": [...]}`, `{"$update": [...]}` (with
    `"_merge_objects": true` beside it). Names are 1-255 characters and do not start with `$`.
    """

    model_config = ConfigDict(extra="allow", json_schema_extra=_one_user, populate_by_name=True)

    # Beside a primary identifier, email and phone are profile fields: null removes them.
    email: str | None = Field(
        None,
        max_length=254,
        description="Identifies the user by email alone, or, beside an identifier, sets it (null removes it).",
    )
    phone: str | None = Field(
        None, description="Identifies the user by phone alone, or, beside an identifier, sets it (null removes it)."
    )
    first_name: str | None = Field(None, max_length=_STRING)
    last_name: str | None = Field(None, max_length=_STRING)
    gender: Literal["M", "F", "O", "N", "P"] | None = Field(
        None, description="M, F, O (other), N (not applicable), P (prefer not to say)."
    )
    dob: str | None = Field(None, description="Date of birth, YYYY-MM-DD.", examples=["1990-04-17"])
    country: str | None = Field(
        None,
        pattern="^[A-Z]{2}$",
        description="ISO 3166-1 alpha-2 (stricter than Braze, which stores unknown codes as null).",
    )
    language: str | None = Field(None, pattern="^[a-z]{2}$", description="ISO 639-1.")
    time_zone: str | None = Field(None, description="IANA time zone name.", examples=["Europe/Berlin"])
    home_city: str | None = Field(None, max_length=_STRING)
    email_subscribe: Literal["opted_in", "subscribed", "unsubscribed"] = None
    push_subscribe: Literal["opted_in", "subscribed", "unsubscribed"] = None
    subscription_groups: list[SubscriptionGroup] = None
    current_location: Location = None
    push_tokens: list[PushToken] = None
    push_token_import: bool = Field(
        None, description="true: import push tokens for an anonymous user (no external_id or braze_id)."
    )
    date_of_first_session: str = None
    date_of_last_session: str = None
    marked_email_as_spam_at: str = None
    email_open_tracking_disabled: bool = None
    email_click_tracking_disabled: bool = None
    merge_objects: bool = Field(
        None, alias="_merge_objects", description="true: nested objects are merged into the stored ones."
    )


AttributesObject.__doc__ = (AttributesObject.__doc__ or "") + _ONE_USER

_TIME = Field(
    description="When it happened: ISO 8601 date and time, e.g. 2026-11-22T07:39:12Z (an offset or Z recommended).",
    examples=["2026-11-22T07:39:12Z"],
)
_PROPERTIES = Field(
    None,
    description=(
        "Up to 256 properties (names 1-255 characters, not starting with $, not time or event_name; string "
        "values ≤ 255 characters; nested objects and arrays allowed; at most 50 KB of JSON)."
    ),
)


class EventObject(_Identified):
    """A custom event."""

    app_id: str = Field(None, min_length=1)
    name: str = Field(min_length=1, max_length=_STRING, pattern=r"^[^$]", examples=["played_track"])
    time: str = _TIME
    properties: dict[str, Any] = _PROPERTIES


EventObject.__doc__ = (EventObject.__doc__ or "") + _ONE_USER


class PurchaseObject(_Identified):
    """A purchase: Braze counts quantity n as n purchases of price each."""

    app_id: str = Field(None, min_length=1)
    product_id: str = Field(min_length=1, max_length=_STRING, examples=["premium_monthly"])
    currency: str = Field(pattern="^[A-Z]{3}$", description="ISO 4217, upper case.", examples=["EUR"])
    price: float = Field(description="Major units (9.99 EUR is 9.99); negative for a refund.", examples=[9.99])
    quantity: int = Field(None, ge=1, le=100, description="1 when left out.")
    time: str = _TIME
    properties: dict[str, Any] = _PROPERTIES


PurchaseObject.__doc__ = (PurchaseObject.__doc__ or "") + _ONE_USER


class TrackRequest(_Doc):
    """Braze's /users/track body. At least one object in total; any number of objects per request
    (the body is at most MaxBodyBytes, 4 MB by default): the sender batches them for Braze."""

    attributes: list[AttributesObject] | None = None
    events: list[EventObject] | None = None
    purchases: list[PurchaseObject] | None = None
    api_key: Any = Field(
        None,
        deprecated=True,
        description=(
            "Braze's legacy way to pass its key: any JSON value, accepted and dropped, never queued or logged. "
            "It authenticates nothing: the key goes in the Authorization header."
        ),
    )

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=_at_least_one_object("attributes", "events", "purchases")
    )


# -- /users/identify --------------------------------------------------------------------------------

_PRIORITIZATION = Field(
    description=(
        "Which profile to merge into when several match: distinct values from identified, unidentified, "
        "most_recently_updated, least_recently_updated; at most one of identified and unidentified."
    ),
    min_length=1,
    examples=[["unidentified", "most_recently_updated"]],
)


class AliasToIdentify(_Doc):
    external_id: str = Field(min_length=1, examples=["user-1003"])
    user_alias: UserAlias


class EmailToIdentify(_Doc):
    external_id: str = Field(min_length=1)
    email: str = Field(max_length=254)
    prioritization: list[Literal["identified", "unidentified", "most_recently_updated", "least_recently_updated"]] = (
        _PRIORITIZATION
    )


class PhoneToIdentify(_Doc):
    external_id: str = Field(min_length=1)
    phone: str = Field(min_length=1)
    prioritization: list[Literal["identified", "unidentified", "most_recently_updated", "least_recently_updated"]] = (
        _PRIORITIZATION
    )


class IdentifyRequest(_Doc):
    """Braze's /users/identify body: merge alias-only (or email-, phone-only) profiles into the user
    with this external_id. At least one object; any number per request (the sender sends 50 a call)."""

    aliases_to_identify: list[AliasToIdentify] | None = None
    emails_to_identify: list[EmailToIdentify] | None = None
    phone_numbers_to_identify: list[PhoneToIdentify] | None = None
    api_key: Any = Field(None, deprecated=True, description="Any JSON value, accepted and dropped, as on /users/track.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_at_least_one_object(
            "aliases_to_identify", "emails_to_identify", "phone_numbers_to_identify"
        ),
    )


# -- /users/delete, /users/alias/new, /users/merge -------------------------------------------------

_DELETE_PRIORITIZATION = Field(
    description=(
        "Which profile to delete when several have the address: distinct values from identified, unidentified, "
        "most_recently_updated; at most one of identified and unidentified. Braze deletes nothing while more "
        "than one profile still matches."
    ),
    min_length=1,
    examples=[["identified", "most_recently_updated"]],
)


class EmailToDelete(_Doc):
    email: str = Field(max_length=254, examples=["leaving@example.com"])
    prioritization: list[Literal["identified", "unidentified", "most_recently_updated"]] = _DELETE_PRIORITIZATION


class PhoneToDelete(_Doc):
    phone: str = Field(min_length=1, examples=["+15555550100"])
    prioritization: list[Literal["identified", "unidentified", "most_recently_updated"]] = _DELETE_PRIORITIZATION


_DELETE_ARRAYS = ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers")


def _one_identifier_type(schema: dict[str, Any]) -> None:
    # One array per request, with at least one identifier in it; the others absent or null (even an
    # empty second array is a second type: 400 mixed_identifier_types).
    _no_null_defaults(schema)
    schema["oneOf"] = [
        {
            "required": [array],
            "properties": {
                other: {"type": "array", "minItems": 1} if other == array else {"type": "null"}
                for other in _DELETE_ARRAYS
            },
        }
        for array in _DELETE_ARRAYS
    ]


class DeleteRequest(_Doc):
    """Braze's /users/delete body: exactly one identifier type per request (400 mixed_identifier_types).
    At most 50 identifiers per request (more is refused whole: 400 too_many_objects)."""

    external_ids: list[str] | None = Field(None, max_length=50, examples=[["user-1001"]])
    user_aliases: list[UserAlias] | None = Field(None, max_length=50)
    braze_ids: list[str] | None = Field(None, max_length=50)
    email_addresses: list[EmailToDelete] | None = Field(None, max_length=50)
    phone_numbers: list[PhoneToDelete] | None = Field(None, max_length=50)
    api_key: Any = Field(None, deprecated=True, description="Any JSON value, accepted and dropped, as on /users/track.")

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_identifier_type)


class AliasToCreate(_Doc):
    """With external_id: the alias is added to that user. Without: a new alias-only user."""

    alias_name: str = Field(min_length=1, max_length=_STRING, examples=["device-8c1f"])
    alias_label: str = Field(min_length=1, max_length=_STRING, examples=["device_id"])
    external_id: str = Field(None, min_length=1, description="At most 987 bytes of UTF-8.")


class AliasNewRequest(_Doc):
    """Braze's /users/alias/new body. At most 50 aliases per request (more is refused whole: 400
    too_many_objects)."""

    user_aliases: list[AliasToCreate] = Field(min_length=1, max_length=50)
    api_key: Any = Field(None, deprecated=True, description="Any JSON value, accepted and dropped, as on /users/track.")


class _MergeSide(_Doc):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra=None)

    external_id: str = Field(None, min_length=1)
    user_alias: UserAlias = None
    email: str = Field(None, max_length=254)
    phone: str = Field(None, min_length=1)
    prioritization: list[Literal["identified", "unidentified", "most_recently_updated", "least_recently_updated"]] = (
        Field(None, min_length=1, description="Required with email or phone: which profile when several match.")
    )


def _one_merge_identifier(schema: dict[str, Any]) -> None:
    _no_null_defaults(schema)
    schema["oneOf"] = [
        {"required": ["external_id"], "maxProperties": 1},
        {"required": ["user_alias"], "maxProperties": 1},
        {"required": ["email", "prioritization"], "maxProperties": 2},
        {"required": ["phone", "prioritization"], "maxProperties": 2},
    ]


class MergeIdentifier(_MergeSide):
    """Exactly one of external_id, user_alias, or email or phone with prioritization (BAD_MERGE_IDENTIFIER)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra=_one_merge_identifier)


class MergeUpdate(_Doc):
    """Merge one user into another (two different users: MERGE_INTO_ITSELF otherwise)."""

    identifier_to_merge: MergeIdentifier
    identifier_to_keep: MergeIdentifier


class MergeRequest(_Doc):
    """Braze's /users/merge body. At most 50 merge updates per request (more is refused whole: 400
    too_many_objects)."""

    merge_updates: list[MergeUpdate] = Field(min_length=1, max_length=50)
    api_key: Any = Field(None, deprecated=True, description="Any JSON value, accepted and dropped, as on /users/track.")


# -- answers ----------------------------------------------------------------------------------------


class ObjectError(_Doc):
    """One refused object, in Braze's own non-fatal error shape. Refused objects are not queued."""

    input_array: str = Field(description="The array the object was in.", examples=["events"])
    index: int = Field(ge=0, description="Its position in that array.")
    type: str = Field(
        description="Braze's own code where it has one (EXTERNAL_USER_ID_TOO_LARGE…), else ours (BAD_EVENT_NAME…).",
        examples=["BAD_EVENT_NAME"],
    )
    reason: str = Field(description="What is wrong and what is accepted; never the refused value itself.")


_ERRORS = Field(description="The refused objects, at most 1,000.")
_NOT_LISTED = Field(None, ge=1, description="How many more refused objects there were, when over 1,000.")


class TrackAccepted(_Doc):
    """The valid objects are queued for Braze (and confirmed only now); the invalid ones are listed."""

    message: Literal["success"]
    attributes_queued: int = Field(ge=0)
    events_queued: int = Field(ge=0)
    purchases_queued: int = Field(ge=0)
    errors: list[ObjectError] = _ERRORS
    errors_not_listed: int = _NOT_LISTED


class IdentifyAccepted(_Doc):
    """The valid objects are queued for Braze; the invalid ones are listed."""

    message: Literal["success"]
    aliases_queued: int = Field(ge=0, description="Objects queued, across the three arrays.")
    errors: list[ObjectError] = _ERRORS
    errors_not_listed: int = _NOT_LISTED


class DeleteAccepted(_Doc):
    """The tombstones are written and the deletes queued: sent to Braze once the ordering fence has passed,
    after everything accepted before them; nothing accepted before reaches Braze after them."""

    message: Literal["success"]
    deleted: int = Field(ge=0, description="Identifiers queued for deletion (Braze's own field and meaning).")
    errors: list[ObjectError] = _ERRORS
    errors_not_listed: int = _NOT_LISTED


class AliasNewAccepted(_Doc):
    """The aliases are queued (and recorded: objects accepted after them wait until Braze has them)."""

    message: Literal["success"]
    aliases_queued: int = Field(ge=0)
    errors: list[ObjectError] = _ERRORS
    errors_not_listed: int = _NOT_LISTED


class MergeAccepted(_Doc):
    """The merges are queued behind the ordering fence, after the objects accepted before them."""

    message: Literal["success"]
    merge_updates_queued: int = Field(ge=0)
    errors: list[ObjectError] = _ERRORS
    errors_not_listed: int = _NOT_LISTED


class Error(_Doc):
    """Every error answer: Braze's message for the status, a stable, machine-readable type and one
    human sentence."""

    message: str = Field(
        description=(
            "Braze's fatal-error message for the status, as Braze words it: 400 Bad Request, 401 Unauthorized, "
            "403 Forbidden, 404 Not Found, 429 Rate Limited, 500 Internal Server Error; any other status its "
            "HTTP reason phrase (405 Method Not Allowed, 409 Conflict, 413 Request Entity Too Large, 415 Unsupported "
            "Media Type, 422 Unprocessable Entity, 503 Service Unavailable). Clients written for Braze read it."
        ),
        examples=["Bad Request"],
    )
    type: str = Field(description="Stable and machine-readable.")
    reason: str = Field(description="What was wrong and what is accepted; never echoes secrets or personal data.")


class NoValidObjects(_Doc):
    """Every object of the request was refused: nothing was queued."""

    message: Literal["Bad Request"] = Field(description="Braze's message for a 400.")
    type: Literal["no_valid_objects"]
    reason: str
    errors: list[ObjectError] = _ERRORS
    errors_not_listed: int = _NOT_LISTED


class WebhookAnswer(_Doc):
    """The provider may forget the event: what it became is queued (or kept for an operator), or it
    was deliberately ignored, or it was accepted before."""

    message: Literal["queued", "kept", "ignored", "duplicate"] = Field(
        description=(
            "queued: its Braze objects are in the queue; kept: in the rejected-objects bucket with the reason "
            "(no Braze user, or unreadable); ignored: a type the forwarder does not map, or a payment already "
            "counted; duplicate: this event id was accepted before."
        )
    )
    reason: str = Field(None, description="Why it was kept or ignored.")
    attributes_queued: int = Field(None, ge=0)
    events_queued: int = Field(None, ge=0)
    purchases_queued: int = Field(None, ge=0)


class ExportCallbackBody(_Doc):
    """What Braze posts when an export is ready. Only a hint: the export's files are found by listing
    the export bucket, never taken from the request."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_no_null_defaults)

    success: bool = Field(None, description="false: Braze reports the export failed.")
    url: str = Field(
        None, description="Without own storage: where to download the export (only allowed hosts are fetched)."
    )


class ExportCallbackAnswer(_Doc):
    message: Literal["success", "already received", "export failed"] = Field(
        description="success: one copy task per file is queued; already received: a repeated callback; export failed."
    )
    job_id: str = Field(examples=["gcg-20261122T060000Z"])
    files: int = Field(None, ge=0, description="Files queued for copying into the lake.")
    status: str = Field(None, description="The job's status, on a repeated or failed callback.")


class GatewayMessage(_Doc):
    """An answer of API Gateway itself, before any function runs."""

    message: str = Field(examples=["Too Many Requests"])


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    TrackRequest,
    IdentifyRequest,
    DeleteRequest,
    AliasNewRequest,
    MergeRequest,
    ExportCallbackBody,
)
ANSWER_MODELS: tuple[type[BaseModel], ...] = (
    TrackAccepted,
    IdentifyAccepted,
    DeleteAccepted,
    AliasNewAccepted,
    MergeAccepted,
    NoValidObjects,
    Error,
    WebhookAnswer,
    ExportCallbackAnswer,
    GatewayMessage,
)

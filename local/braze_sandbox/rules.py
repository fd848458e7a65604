"""Braze's numbers and names, as the sandbox models them (§n: /work/shared/BRAZE_API.md)."""

import re

TRACK_PATH = "/users/track"
IDENTIFY_PATH = "/users/identify"
GCG_EXPORT_PATH = "/users/export/global_control_group"
DELETE_PATH = "/users/delete"
ALIAS_NEW_PATH = "/users/alias/new"
MERGE_PATH = "/users/merge"
# §2.9: these share one 20,000 requests/minute budget ("the user-data family"); /users/track has its
# own 3,000 per 3 s window, and every other route shares the default one with it.
USER_DATA_FAMILY_PATHS = frozenset({IDENTIFY_PATH, DELETE_PATH, ALIAS_NEW_PATH, MERGE_PATH})

# §2.1: attributes are processed first, then events, then purchases.
TRACK_ARRAYS = ("attributes", "events", "purchases")
IDENTIFY_ARRAYS = ("aliases_to_identify", "emails_to_identify", "phone_numbers_to_identify")

PRIMARY_IDENTIFIERS = ("external_id", "user_alias", "braze_id")  # §2.2: at most one per object
SECONDARY_IDENTIFIERS = ("email", "phone")  # §2.2: lookup only without a primary; email wins

HISTORY_LIMIT = 10_000  # history entries a profile keeps (the newest)
MAX_EXTERNAL_ID_BYTES = 987  # §2.10 EXTERNAL_USER_ID_TOO_LARGE, §11.10 (UTF-8 bytes)
MAX_NAME_CHARS = 255  # §2.6 event names and property keys, §2.7 product_id
MAX_PURCHASE_QUANTITY = 100  # §2.7
EVENT_PROPERTIES_MAX_BYTES = 100 * 1024  # §2.6 [newer]
PURCHASE_PROPERTIES_MAX_BYTES = 50 * 1024  # §2.7 (purchase-object page)
RESERVED_PROPERTY_KEYS = frozenset({"time", "event_name"})  # §2.6
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # §2.8 "payloads up to 4 MB" (413 above); MiB assumed

SUBSCRIPTION_STATES = frozenset({"opted_in", "subscribed", "unsubscribed"})  # §2.4, §2.10
SUBSCRIPTION_GROUP_STATES = frozenset({"subscribed", "unsubscribed"})  # §2.10
PRIORITIZATION_VALUES = frozenset(
    {"identified", "unidentified", "most_recently_updated", "least_recently_updated"}  # §5
)
# /users/delete documents only these three (no least_recently_updated) for email and phone deletes.
DELETE_PRIORITIZATION_VALUES = frozenset({"identified", "unidentified", "most_recently_updated"})
# §6 /users/delete: exactly one of these arrays per request; the last two take {email|phone, prioritization}.
DELETE_ARRAYS = ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers")
# §6 /users/merge: what identifier_to_merge / identifier_to_keep may name a user by.
MERGE_IDENTIFIERS = ("external_id", "user_alias", "email", "phone")

# Keys of an attributes object that steer processing instead of being written to the profile.
CONTROL_KEYS = frozenset(
    {"external_id", "user_alias", "braze_id", "_update_existing_only", "push_token_import", "_merge_objects"}
)
# §10: subscription state changes (global and per group) are not billable; push tokens are data
# Braze collects by default, also not billable.
FREE_ATTRIBUTES = frozenset({"email_subscribe", "push_subscribe", "subscription_groups", "push_tokens"})

# §2.4 reserved profile fields; everything else an attributes object sets is a custom attribute.
RESERVED_ATTRIBUTES = frozenset(
    {
        "first_name", "last_name", "home_city", "email", "country", "language", "dob", "gender",
        "phone", "time_zone", "email_subscribe", "push_subscribe", "subscription_groups",
        "current_location", "date_of_first_session", "date_of_last_session",
        "marked_email_as_spam_at", "email_open_tracking_disabled", "email_click_tracking_disabled",
        "push_tokens", "image_url", "facebook", "twitter", "bio", "external_id", "braze_id",
        "alias_name", "alias_label",
    }
)  # fmt: skip
# §7: reserved fields that the export writes at the top level of each user object.
EXPORTED_PROFILE_FIELDS = (
    "first_name", "last_name", "email", "dob", "home_city", "country", "phone", "language",
    "time_zone", "gender", "attributed_campaign", "attributed_source", "attributed_adgroup",
    "attributed_ad",
)  # fmt: skip
# §7: the values `fields_to_export` accepts for the global control group export.
GCG_EXPORT_FIELDS = frozenset(
    {
        "apps", "attributed_campaign", "attributed_source", "attributed_adgroup", "attributed_ad",
        "braze_id", "country", "created_at", "custom_attributes", "custom_events", "devices", "dob",
        "email", "external_id", "first_name", "gender", "home_city", "language", "last_coordinates",
        "last_name", "phone", "purchases", "random_bucket", "time_zone", "total_revenue",
        "uninstalled_at", "user_aliases",
    }
)  # fmt: skip
# §7: the GCG export lands under segment-export/<SEGMENT_ID>/...; the id below is the sandbox's own.
DEFAULT_GCG_SEGMENT_ID = "7f3c1e52-0d4b-4c6a-9e21-5b8d0a6f3c90"
CONTROL_GROUP_ATTRIBUTE = "global_control_group"

# Error codes Braze documents (§2.10) that the sandbox emits.
BRAZE_ERROR_TYPES = frozenset(
    {
        "BAD_EMAIL_SUBSCRIPTION_STATE", "BAD_LOCATION_UPDATE", "BAD_PUSH_SUBSCRIPTION_STATE",
        "BAD_PUSH_TOKEN_IMPORT", "BAD_PUSH_TOKEN_STRING", "BAD_PUSH_TOKEN_VALUE",
        "BAD_SUBSCRIPTION_GROUP_ARRAY", "BAD_SUBSCRIPTION_GROUP_HASH", "BAD_SUBSCRIPTION_GROUP_ID",
        "BAD_SUBSCRIPTION_GROUP_STATE", "BLACKLISTED_EXTERNAL_USER_ID", "EMAIL_BAD_FORMAT",
        "EXTERNAL_USER_ID_TOO_LARGE",
    }
)  # fmt: skip
# [inf] Rules Braze documents without naming an error code; these names are the sandbox's own.
SANDBOX_ERROR_TYPES = frozenset(
    {
        "NO_USER_IDENTIFIER", "MULTIPLE_PRIMARY_IDENTIFIERS", "BAD_USER_IDENTIFIER",
        "BAD_EVENT_NAME", "BAD_EVENT_TIME", "BAD_EVENT_PROPERTIES", "BAD_PRODUCT_ID",
        "BAD_CURRENCY", "BAD_PRICE", "BAD_QUANTITY", "BAD_PURCHASE_TIME",
        "BAD_PURCHASE_PROPERTIES", "BAD_PRIORITIZATION",
    }
)  # fmt: skip

TRACK_BATCH_MODES = ("total", "per_array")
RATE_LIMIT_HEADER_STYLES = ("retry_after", "reset_epoch", "reset_seconds", "none")
# Not a variant of Braze's but a sandbox mode: each 429 takes the next style in turn, so one run
# meets every variant a client must understand (other answers carry the epoch X-RateLimit-Reset).
RATE_LIMIT_HEADER_ROTATION = "rotate"
RATE_LIMIT_HEADER_CHOICES = (*RATE_LIMIT_HEADER_STYLES, RATE_LIMIT_HEADER_ROTATION)
EXPORT_OUTPUT_FORMATS = ("zip", "gzip")

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")  # §2.7 ISO 4217 alphabetic; case not documented
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# §2.6: Braze's legacy event time format yyyy-MM-dd'T'HH:mm:ss:SSSZ (colon before the milliseconds).
_LEGACY_TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}):(\d{3})(Z|[+-]\d{2}:?\d{2})$")

"""What a /users/track object costs in Braze data points (BRAZE_API.md §10), and how Braze reads an
attribute value (§2.4, §2.5) — the two things coalescing and delta sending need to know.

§10 in short: every attribute written to a profile is billable; subscription states (global and per
group) and push tokens are not; identifiers and the flags that steer processing are not written. A
whole array is 1; `add`/`remove` 1 per value; a nested object 1 per key, recursively (setting it to
null is 1); an array of objects 1 per key per object on create, `$update` 1 per property, `$remove`
1 per criterion; `inc` 1; every event and every purchase 1.

`email` and `phone` are counted even when they identify the user (no primary identifier): Braze
writes them onto the profile it finds or creates.
"""

from __future__ import annotations

from typing import Any, Literal

# Keys that say whom an object is about or how to process it; Braze writes none of them.
CONTROL_KEYS = frozenset(
    {"external_id", "user_alias", "braze_id", "_update_existing_only", "_merge_objects", "push_token_import"}
)
# §10: subscription state changes are not billable; push tokens are data Braze collects by default.
FREE_ATTRIBUTES = frozenset({"email_subscribe", "push_subscribe", "subscription_groups", "push_tokens"})

Operation = Literal["inc", "array", "object_array"]


def operation(value: Any) -> Operation | None:
    """The operation an attribute value asks for, or None for a value that is written as it is.

    Shapes as Braze (and the ingest validation) read them: exactly `{"inc": n}`; only `add`/`remove`
    (scalar arrays, no `$`); only `$add`/`$remove`/`$update` (arrays of objects). Any other object is
    a nested object.
    """
    if type(value) is not dict or not value:
        return None
    keys = value.keys()
    if len(keys) == 1 and "inc" in keys:
        return "inc"
    if keys <= {"add", "remove"}:
        return "array"
    if keys <= {"$add", "$remove", "$update"}:
        return "object_array"
    return None


def is_plain(value: Any, merge_objects: bool) -> bool:
    """Whether the value replaces whatever the profile holds: a scalar, null, a whole array, or a
    nested object without `_merge_objects` (with it, a nested object is merged into the stored one)."""
    if type(value) is not dict:
        return True
    return operation(value) is None and not merge_objects


def attribute_points(name: str, value: Any) -> int:
    """Data points one attribute write costs (name is neither an identifier nor a control key)."""
    if name in FREE_ATTRIBUTES:
        return 0
    if type(value) is list:
        objects = [item for item in value if type(item) is dict]
        return max(1, sum(_keys(item) for item in objects)) if objects else 1
    if type(value) is not dict:
        return 1  # a scalar, or null (unsetting counts too)
    kind = operation(value)
    if kind == "inc":
        return 1
    if kind == "array":
        return max(1, sum(len(items) for items in value.values() if type(items) is list))
    if kind == "object_array":
        added = sum(_keys(item) for item in value.get("$add", []))
        updated = sum(_keys(update.get("$new_object")) for update in value.get("$update", []) if type(update) is dict)
        return max(1, added + updated + len(value.get("$remove", [])))
    return max(1, _keys(value))


def data_points(array: str, obj: dict[str, Any]) -> int:
    """Data points a /users/track object costs when Braze applies it (identify objects cost none)."""
    if array in ("events", "purchases"):
        return 1
    if array != "attributes":
        return 0
    return sum(attribute_points(name, value) for name, value in obj.items() if name not in CONTROL_KEYS)


def _keys(value: Any) -> int:
    """Keys of a nested value, at every level (an object inside an object costs its key and its own keys)."""
    if type(value) is dict:
        return sum(1 + _keys(child) for child in value.values())
    if type(value) is list:
        return sum(_keys(child) for child in value)
    return 0

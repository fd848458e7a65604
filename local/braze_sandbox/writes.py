"""Applying /users/track objects to a profile, and the data points each write costs (§2.4-§2.7, §10)."""

import copy
from datetime import datetime
from typing import Any

from local.braze_sandbox.checks import _is_number, _parse_time
from local.braze_sandbox.profiles import _now, _Profile, _Tally
from local.braze_sandbox.rules import CONTROL_KEYS, FREE_ATTRIBUTES


def _apply_attributes(profile: _Profile, obj: dict[str, Any]) -> int:
    """Write one attributes object; return the data points it consumed (§10)."""
    merge_objects = obj.get("_merge_objects") is True
    points = 0
    for name, value in obj.items():
        if name in CONTROL_KEYS:
            continue
        if name == "subscription_groups":
            profile.subscription_groups.update({g["subscription_group_id"]: g["subscription_state"] for g in value})
        elif name == "push_tokens":
            _merge_push_tokens(profile.push_tokens, value)
        elif _apply_attribute(profile.attributes, name, value, merge_objects):
            points += _attribute_data_points(name, value)
    return points


def _apply_attribute(attributes: dict[str, Any], name: str, value: Any, merge_objects: bool) -> bool:
    """Apply one attribute write; False when Braze would drop it (then it costs nothing)."""
    if value is None:  # §2.4: null removes the attribute
        attributes.pop(name, None)
        return True
    if isinstance(value, list):
        # §2.5: scalar arrays hold unique values; arrays of objects are stored as given.
        attributes[name] = copy.deepcopy(value) if any(isinstance(v, dict | list) for v in value) else _unique(value)
        return True
    if not isinstance(value, dict):
        attributes[name] = value
        return True
    kind = _operation_kind(value)
    if kind == "inc":
        return _increment(attributes, name, value["inc"])
    if kind == "scalar_array":
        return _scalar_array_update(attributes, name, value)
    if kind == "object_array":
        return _object_array_update(attributes, name, value, merge_objects)
    if _contains_null(value):
        return False  # §2.5 FAQ: an invalid (e.g. null) nested value drops the whole nested update
    current = attributes.get(name)
    if merge_objects and isinstance(current, dict):
        attributes[name] = _deep_merge(current, value)
    else:  # §2.5: a nested object replaces the stored one unless _merge_objects is true
        attributes[name] = copy.deepcopy(value)
    return True


def _operation_kind(value: dict[str, Any]) -> str:
    keys = set(value)
    if keys == {"inc"}:
        return "inc"
    if keys and keys <= {"add", "remove"}:
        return "scalar_array"
    if keys and keys <= {"$add", "$remove", "$update"}:
        return "object_array"
    return "nested"


def _increment(attributes: dict[str, Any], name: str, amount: Any) -> bool:
    current = attributes.get(name)
    if not _is_number(amount) or (current is not None and not _is_number(current)):
        return False  # [inf] incrementing a non-number is not applied
    attributes[name] = amount if current is None else current + amount
    return True


def _scalar_array_update(attributes: dict[str, Any], name: str, operations: dict[str, Any]) -> bool:
    if not all(isinstance(items, list) for items in operations.values()):
        return False
    current = attributes.get(name)
    values = list(current) if isinstance(current, list) else []
    for operation, items in operations.items():
        if operation == "add":
            for item in items:  # §2.5: unique values; re-adding moves an item to the end
                if item in values:
                    values.remove(item)
                values.append(item)
        else:
            values = [v for v in values if v not in items]
    attributes[name] = values
    return True


def _object_array_update(
    attributes: dict[str, Any], name: str, operations: dict[str, Any], merge_objects: bool
) -> bool:
    if not all(isinstance(items, list) and all(isinstance(i, dict) for i in items) for items in operations.values()):
        return False
    current = attributes.get(name)
    items = copy.deepcopy(current) if isinstance(current, list) else []
    for operation, arguments in operations.items():
        if operation == "$add":
            items.extend(copy.deepcopy(arguments))
        elif operation == "$remove":  # §2.5: removes every match
            for criterion in arguments:
                items = [item for item in items if not _matches(item, criterion)]
        else:  # $update: merged with _merge_objects, otherwise overwritten (§2.5)
            for update in arguments:
                new_object = update.get("$new_object")
                if not isinstance(new_object, dict):
                    continue
                items = [
                    (_deep_merge(item, new_object) if merge_objects else copy.deepcopy(new_object))
                    if _matches(item, update) else item
                    for item in items
                ]  # fmt: skip
    attributes[name] = items
    return True


def _matches(item: Any, criterion: dict[str, Any]) -> bool:
    key = criterion.get("$identifier_key")
    return (
        isinstance(key, str)
        and isinstance(item, dict)
        and key in item
        and item[key] == criterion.get("$identifier_value")
    )


def _merge_push_tokens(tokens: list[dict[str, Any]], new_tokens: list[dict[str, Any]]) -> None:
    known = {token.get("token") for token in tokens}
    tokens.extend(copy.deepcopy(t) for t in new_tokens if t.get("token") not in known)


def _attribute_data_points(name: str, value: Any) -> int:
    """§10: 1 per attribute set; add/remove 1 per value; nested objects and arrays of objects 1 per key;
    subscription states are free."""
    if name in FREE_ATTRIBUTES:
        return 0
    if isinstance(value, list):
        objects = [v for v in value if isinstance(v, dict)]
        return max(1, sum(_count_keys(o) for o in objects)) if objects else 1
    if not isinstance(value, dict):
        return 1
    kind = _operation_kind(value)
    if kind == "inc":
        return 1
    if kind == "scalar_array":
        return max(1, sum(len(items) for items in value.values()))
    if kind == "object_array":
        added = sum(_count_keys(o) for o in value.get("$add", []))
        updated = sum(_count_keys(u.get("$new_object")) for u in value.get("$update", []))
        return max(1, added + updated + len(value.get("$remove", [])))
    return max(1, _count_keys(value))


def _apply_event(profile: _Profile, obj: dict[str, Any]) -> int:
    profile.events.setdefault(obj["name"], _Tally()).record(_event_time(obj["time"]))
    return 1  # §10: each custom event is one data point


def _apply_purchase(profile: _Profile, obj: dict[str, Any]) -> int:
    quantity = obj.get("quantity", 1)
    revenue = obj["price"] * quantity  # §2.7: revenue = price × quantity, recorded as X purchases of 1
    profile.purchases.setdefault(obj["product_id"], _Tally()).record(_event_time(obj["time"]), quantity, revenue)
    profile.total_revenue = round(profile.total_revenue + revenue, 6)
    return 1  # §10: each purchase object is one data point


def _event_time(value: str) -> datetime:
    parsed = _parse_time(value) or _now()
    return min(parsed, _now())  # §2.6: future times become "now"


def _count_keys(value: Any) -> int:
    if isinstance(value, dict):
        return sum(1 + _count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _contains_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_contains_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_null(v) for v in value)
    return False


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _unique(values: list[Any]) -> list[Any]:
    unique: list[Any] = []
    for value in values:
        if value not in unique:
            unique.append(value)
    return unique

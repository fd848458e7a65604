"""POST /users/track (§2): the route, its request limits and per-object validation."""

import json
import math
import threading
from collections.abc import Callable
from typing import Any

from local.braze_sandbox.answers import _Answer
from local.braze_sandbox.checks import (
    _external_id_issue,
    _is_alias,
    _is_integer,
    _is_number,
    _is_text,
    _Issue,
    _one_of,
    _parse_time,
)
from local.braze_sandbox.config import SandboxConfig
from local.braze_sandbox.profiles import _ProfileStore
from local.braze_sandbox.rules import (
    _CURRENCY_RE,
    _EMAIL_RE,
    _UUID_RE,
    CONTROL_KEYS,
    EVENT_PROPERTIES_MAX_BYTES,
    MAX_NAME_CHARS,
    MAX_PURCHASE_QUANTITY,
    PRIMARY_IDENTIFIERS,
    PURCHASE_PROPERTIES_MAX_BYTES,
    RESERVED_PROPERTY_KEYS,
    SECONDARY_IDENTIFIERS,
    SUBSCRIPTION_GROUP_STATES,
    SUBSCRIPTION_STATES,
    TRACK_ARRAYS,
)
from local.braze_sandbox.writes import _apply_attributes, _apply_event, _apply_purchase


class _TrackRoute:
    """The /users/track route, mixed into `BrazeSandbox` (core.py): it uses the sandbox's config, lock and store."""

    # BrazeSandbox's state that this mixin uses (core.py sets it).
    config: SandboxConfig
    _lock: threading.RLock
    _store: _ProfileStore

    def _track(self, body: Any, excluded: frozenset[tuple[Any, Any]]) -> "_Answer":
        arrays, problem = _track_arrays(body)
        if problem is not None:
            return problem
        limit_problem = _track_limit_problem(arrays, self.config)
        if limit_problem is not None:
            return limit_problem
        blocked = frozenset(self.config.blocked_external_ids)
        errors: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        with self._lock:
            for array in TRACK_ARRAYS:
                objects = arrays.get(array)
                if not objects:
                    continue
                counts[f"{array}_processed"] = 0
                for index, obj in enumerate(objects):
                    if (array, index) in excluded:
                        continue
                    issue = _validate_track_object(array, obj, blocked)
                    if issue is not None:
                        errors.append(issue.entry(array, index))
                        continue
                    self._apply_track_object(array, obj)
                    counts[f"{array}_processed"] += 1
        answer: dict[str, Any] = {"message": "success", **counts}
        if errors:
            answer["errors"] = errors  # §2.10: non-fatal errors; the rest was processed
        return _Answer(201, answer)

    def _apply_track_object(self, array: str, obj: dict[str, Any]) -> None:
        profile = self._store.resolve(obj, create_alias_profile=array == "attributes")
        if profile is None:
            return  # update-only object for an unknown user: accepted, nothing written (§2.3)
        if array == "attributes":
            points = _apply_attributes(profile, obj)
            self._store.note(profile, "attributes", keys=sorted(set(obj) - CONTROL_KEYS))
        elif array == "events":
            points = _apply_event(profile, obj)
            self._store.note(profile, "event", name=obj.get("name"), time=obj.get("time"))
        else:
            points = _apply_purchase(profile, obj)
            self._store.note(profile, "purchase", product_id=obj.get("product_id"), time=obj.get("time"))
        self._store.charge(profile, points)


def _track_arrays(body: Any) -> tuple[dict[str, list[Any]], "_Answer | None"]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return {}, _Answer(400, {"message": "Bad Request: the body must be a JSON object"})
    arrays: dict[str, list[Any]] = {}
    for array in TRACK_ARRAYS:
        value = body.get(array)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return {}, _Answer(400, {"message": f"Bad Request: '{array}' must be an array of objects"})
        arrays[array] = value
    if not any(arrays.values()):  # §3 "400 No Recipients"
        return {}, _Answer(400, {"message": "No Recipients: no attributes, events or purchases in the request"})
    return arrays, None


def _track_limit_problem(arrays: dict[str, list[Any]], config: SandboxConfig) -> "_Answer | None":
    limit = config.track_batch_limit
    if config.track_batch_mode == "total":  # §2.8 newest default: 75 objects combined
        total = sum(len(objects) for objects in arrays.values())
        if total <= limit:
            return None
        errors = [{"type": "MAX_INPUT_LENGTH_EXCEEDED", "count": total, "limit": limit}]
        message = (f"Max Input Length Exceeded: {total} objects in one request; at most {limit} "
                   "attributes, events and purchases combined")  # fmt: skip
        return _Answer(400, {"message": message, "errors": errors})
    errors = [
        {"type": "MAX_INPUT_LENGTH_EXCEEDED", "input_array": array, "count": len(objects), "limit": limit}
        for array, objects in arrays.items()
        if len(objects) > limit
    ]  # §2.8 legacy contracts: 75 per array
    if not errors:
        return None
    message = f"Max Input Length Exceeded: at most {limit} objects per array"
    return _Answer(400, {"message": message, "errors": errors})


def _validate_track_object(array: str, obj: dict[str, Any], blocked: frozenset[str]) -> _Issue | None:
    checks: tuple[Callable[[dict[str, Any]], _Issue | None], ...]
    if array == "attributes":
        checks = (_check_push_token_import, _check_email, _check_subscriptions, _check_subscription_groups,
                  _check_location, _check_push_tokens)  # fmt: skip
    elif array == "events":
        checks = (_check_email, _check_event)
    else:
        checks = (_check_email, _check_purchase)
    if not (array == "attributes" and obj.get("push_token_import") is True):
        issue = _check_identifier(obj, blocked)
        if issue is not None:
            return issue
    for check in checks:
        issue = check(obj)
        if issue is not None:
            return issue
    return None


def _check_identifier(obj: dict[str, Any], blocked: frozenset[str]) -> _Issue | None:
    primaries = [name for name in PRIMARY_IDENTIFIERS if obj.get(name) is not None]
    if len(primaries) > 1:  # §2.2 / §11.9
        return _Issue("MULTIPLE_PRIMARY_IDENTIFIERS", f"only one of {', '.join(primaries)} may be given")
    if primaries == ["external_id"]:
        return _external_id_issue(obj["external_id"], blocked)
    if primaries == ["user_alias"]:
        return (
            None
            if _is_alias(obj["user_alias"])
            else _Issue("BAD_USER_IDENTIFIER", "user_alias needs string alias_name and alias_label")
        )
    if primaries == ["braze_id"]:
        return None if _is_text(obj["braze_id"]) else _Issue("BAD_USER_IDENTIFIER", "braze_id must be a string")
    secondaries = [name for name in SECONDARY_IDENTIFIERS if obj.get(name) is not None]
    if not secondaries:
        return _Issue("NO_USER_IDENTIFIER", "one of external_id, user_alias, braze_id, email, phone is required")
    if not all(_is_text(obj[name]) for name in secondaries):
        return _Issue("BAD_USER_IDENTIFIER", "email and phone must be strings")
    return None


def _check_email(obj: dict[str, Any]) -> _Issue | None:
    email = obj.get("email")
    if email is None or (isinstance(email, str) and _EMAIL_RE.match(email)):
        return None
    return _Issue("EMAIL_BAD_FORMAT", "email is not a valid address")


def _check_subscriptions(obj: dict[str, Any]) -> _Issue | None:
    for name, code in (("email_subscribe", "BAD_EMAIL_SUBSCRIPTION_STATE"),
                       ("push_subscribe", "BAD_PUSH_SUBSCRIPTION_STATE")):  # fmt: skip
        if name in obj and not _one_of(obj[name], SUBSCRIPTION_STATES):
            return _Issue(code, f"{name} must be one of {', '.join(sorted(SUBSCRIPTION_STATES))}")
    return None


def _check_subscription_groups(obj: dict[str, Any]) -> _Issue | None:
    if "subscription_groups" not in obj:
        return None
    groups = obj["subscription_groups"]
    if not isinstance(groups, list):
        return _Issue("BAD_SUBSCRIPTION_GROUP_ARRAY", "subscription_groups must be an array")
    for group in groups:
        if not isinstance(group, dict) or not {"subscription_group_id", "subscription_state"} <= group.keys():
            return _Issue(
                "BAD_SUBSCRIPTION_GROUP_HASH", "each group needs subscription_group_id and subscription_state"
            )
        if not isinstance(group["subscription_group_id"], str) or not _UUID_RE.match(group["subscription_group_id"]):
            return _Issue("BAD_SUBSCRIPTION_GROUP_ID", "subscription_group_id must be a subscription group UUID")
        if not _one_of(group["subscription_state"], SUBSCRIPTION_GROUP_STATES):
            return _Issue("BAD_SUBSCRIPTION_GROUP_STATE", "subscription_state must be subscribed or unsubscribed")
    return None


def _check_location(obj: dict[str, Any]) -> _Issue | None:
    location = obj.get("current_location")
    if location is None or (
        isinstance(location, dict) and all(_is_number(location.get(k)) for k in ("longitude", "latitude"))
    ):
        return None
    return _Issue("BAD_LOCATION_UPDATE", "current_location needs numeric longitude and latitude")


def _check_push_tokens(obj: dict[str, Any]) -> _Issue | None:
    if "push_tokens" not in obj:
        return None
    tokens = obj["push_tokens"]
    if not isinstance(tokens, list) or not all(isinstance(token, dict) for token in tokens):
        return _Issue("BAD_PUSH_TOKEN_VALUE", "push_tokens must be an array of objects")
    if not all(_is_text(token.get("token")) for token in tokens):
        return _Issue("BAD_PUSH_TOKEN_STRING", "each push token must be a string")
    return None


def _check_push_token_import(obj: dict[str, Any]) -> _Issue | None:
    if obj.get("push_token_import") is not True:
        return None
    # §2.4: a token import carries tokens and no external_id/braze_id.
    if obj.get("external_id") is not None or obj.get("braze_id") is not None or not obj.get("push_tokens"):
        return _Issue("BAD_PUSH_TOKEN_IMPORT", "push token import needs push_tokens and no external_id/braze_id")
    return None


def _check_event(obj: dict[str, Any]) -> _Issue | None:
    name = obj.get("name")
    if not _is_text(name) or len(name) > MAX_NAME_CHARS or name.startswith("$"):  # §2.6
        return _Issue("BAD_EVENT_NAME", "name is required: 1-255 characters, not starting with '$'")
    if _parse_time(obj.get("time")) is None:
        return _Issue("BAD_EVENT_TIME", "time is required as an ISO 8601 string")
    return _properties_issue(obj, "BAD_EVENT_PROPERTIES", EVENT_PROPERTIES_MAX_BYTES)


def _check_purchase(obj: dict[str, Any]) -> _Issue | None:
    product_id = obj.get("product_id")
    if not _is_text(product_id) or len(product_id) > MAX_NAME_CHARS:  # §2.7
        return _Issue("BAD_PRODUCT_ID", "product_id is required: 1-255 characters")
    currency = obj.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        return _Issue("BAD_CURRENCY", "currency is required: a three-letter ISO 4217 code")
    price = obj.get("price")
    if not _is_number(price) or not math.isfinite(price):
        return _Issue("BAD_PRICE", "price is required: a number in major units")
    quantity = obj.get("quantity", 1)
    if not _is_integer(quantity) or not 1 <= quantity <= MAX_PURCHASE_QUANTITY:
        return _Issue("BAD_QUANTITY", f"quantity must be an integer from 1 to {MAX_PURCHASE_QUANTITY}")
    if _parse_time(obj.get("time")) is None:
        return _Issue("BAD_PURCHASE_TIME", "time is required as an ISO 8601 string")
    return _properties_issue(obj, "BAD_PURCHASE_PROPERTIES", PURCHASE_PROPERTIES_MAX_BYTES)


def _properties_issue(obj: dict[str, Any], code: str, max_bytes: int) -> _Issue | None:
    properties = obj.get("properties")
    if properties is None:
        return None
    if not isinstance(properties, dict):
        return _Issue(code, "properties must be an object")
    for key in properties:
        if not key or len(key) > MAX_NAME_CHARS or key.startswith("$") or key in RESERVED_PROPERTY_KEYS:
            return _Issue(code, f"property key {key[:40]!r} is empty, too long, '$'-prefixed or reserved")
    if len(json.dumps(properties).encode("utf-8")) > max_bytes:
        return _Issue(code, f"properties exceed {max_bytes} bytes")
    return None

"""POST /users/merge (§6): the route and its validation; the merge itself is the store's.

Braze's page (braze.com/docs/api/endpoints/user_data/post_users_merge): `merge_updates`, up to 50
objects of exactly `identifier_to_merge` and `identifier_to_keep`, each naming a user by
external_id, user_alias, email or phone (email and phone with an ordered `prioritization`; no merge
when more than one user still matches). Fields are copied only where the kept user has none; the
merged user is then gone. Answers: 202 `{"message": "success"}`, or 400 with the messages below.
Braze merges asynchronously and in no guaranteed order; the sandbox merges before it answers, in
order, so a test sees the result at once.
"""

import threading
from typing import Any

from local.braze_sandbox.answers import _Answer
from local.braze_sandbox.checks import _is_alias, _is_text, _prioritization_ok
from local.braze_sandbox.config import SandboxConfig
from local.braze_sandbox.profiles import _ProfileStore
from local.braze_sandbox.rules import MERGE_IDENTIFIERS, PRIORITIZATION_VALUES

# Braze's messages (the page's Troubleshooting table).
NOT_AN_ARRAY = "'merge_updates' must be an array of objects"
ONLY_TWO_KEYS = "'merge_updates' must only have 'identifier_to_merge' and 'identifier_to_keep'"
BAD_IDENTIFIER = (
    "identifiers must be objects with an 'external_id' property that is a string, 'user_alias' property "
    "that is an object, 'email' property that is a string, or 'phone' property that is a string"
)
_SIDES = ("identifier_to_merge", "identifier_to_keep")


class _MergeRoute:
    """The /users/merge route, mixed into `BrazeSandbox` (core.py): it uses the sandbox's config, lock and store."""

    # BrazeSandbox's state that this mixin uses (core.py sets it).
    config: SandboxConfig
    _lock: threading.RLock
    _store: _ProfileStore

    def _merge_users(self, body: Any, excluded: frozenset[tuple[Any, Any]]) -> "_Answer":
        updates, problem = _merge_request(body, self.config.merge_batch_limit)
        if problem is not None:
            return problem
        with self._lock:
            for index, update in enumerate(updates):
                if ("merge_updates", index) in excluded:
                    continue
                to_merge, to_keep = (_identifier(update[side]) for side in _SIDES)
                self._store.merge_users(to_merge, to_keep)
        return _Answer(202, {"message": "success"})


def _merge_request(body: Any, limit: int) -> tuple[list[dict[str, Any]], "_Answer | None"]:
    if not isinstance(body, dict):
        return [], _Answer(400, {"message": "Bad Request: the body must be a JSON object"})
    updates = body.get("merge_updates")
    if not isinstance(updates, list) or not updates or not all(isinstance(u, dict) for u in updates):
        return [], _Answer(400, {"message": NOT_AN_ARRAY})
    if len(updates) > limit:
        return [], _Answer(400, {"message": f"a single request may not contain more than {limit} merge updates"})
    for update in updates:
        if set(update) != set(_SIDES):
            return [], _Answer(400, {"message": ONLY_TWO_KEYS})
        for side in _SIDES:
            issue = _merge_identifier_issue(update[side])
            if issue is not None:
                return [], _Answer(400, {"message": issue})
    return updates, None


def _merge_identifier_issue(identifier: Any) -> str | None:
    if not isinstance(identifier, dict):
        return BAD_IDENTIFIER
    named = [kind for kind in MERGE_IDENTIFIERS if kind in identifier]
    if len(named) != 1:
        return BAD_IDENTIFIER  # [inf] none, or several: Braze's message covers both
    kind = named[0]
    if kind == "user_alias":
        return None if _is_alias(identifier[kind]) else BAD_IDENTIFIER
    if not _is_text(identifier[kind]):
        return BAD_IDENTIFIER
    if kind in ("email", "phone") and not _prioritization_ok(identifier.get("prioritization"), PRIORITIZATION_VALUES):
        # [inf] Braze documents the rule ("an additional prioritization value is required") but no message.
        allowed = ", ".join(sorted(PRIORITIZATION_VALUES))
        return f"'{kind}' needs a 'prioritization' ordered array of {allowed} (not identified and unidentified)"
    return None


def _identifier(identifier: dict[str, Any]) -> tuple[str, Any]:
    """(kind, value) as the store's find() takes it: email/phone keep the whole object."""
    kind = next(kind for kind in MERGE_IDENTIFIERS if kind in identifier)
    return (kind, identifier) if kind in ("email", "phone") else (kind, identifier[kind])

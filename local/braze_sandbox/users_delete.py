"""POST /users/delete (§6): the route and its validation; the deletion itself is the store's.

Braze's page (braze.com/docs/api/endpoints/user_data/post_user_delete): up to 50 `external_ids`,
`user_aliases`, `braze_ids`, `email_addresses` or `phone_numbers`, only one of them per request;
an email or phone is an object with an ordered `prioritization` (identified | unidentified |
most_recently_updated, not both of the first two) and nothing is deleted when more than one user
still matches; the answer is `{"deleted": n}`, "the number of user IDs queued for deletion".
"""

import threading
from typing import Any

from local.braze_sandbox.answers import _Answer
from local.braze_sandbox.checks import _is_alias, _is_text, _prioritization_ok
from local.braze_sandbox.config import SandboxConfig
from local.braze_sandbox.profiles import _ProfileStore
from local.braze_sandbox.rules import _EMAIL_RE, DELETE_ARRAYS, DELETE_PRIORITIZATION_VALUES

# The store's identifier kind for each array.
_KINDS = {
    "external_ids": "external_id",
    "user_aliases": "user_alias",
    "braze_ids": "braze_id",
    "email_addresses": "email",
    "phone_numbers": "phone",
}


class _DeleteRoute:
    """The /users/delete route, mixed into `BrazeSandbox` (core.py): it uses the sandbox's config, lock and store."""

    # BrazeSandbox's state that this mixin uses (core.py sets it).
    config: SandboxConfig
    _lock: threading.RLock
    _store: _ProfileStore

    def _delete(self, body: Any, excluded: frozenset[tuple[Any, Any]]) -> "_Answer":
        array, identifiers, problem = _delete_request(body, self.config.delete_batch_limit)
        if problem is not None:
            return problem
        queued = 0
        with self._lock:
            for index, identifier in enumerate(identifiers):
                if (array, index) in excluded:
                    continue
                self._store.delete(_KINDS[array], identifier)
                queued += 1
        # [inf] "queued for deletion": every identifier accepted counts, found or not (Braze deletes
        # asynchronously and cannot know yet); `sandbox.deletions` says which ones found a profile.
        return _Answer(200, {"deleted": queued, "message": "success"})  # [inf] the status is not documented


def _delete_request(body: Any, limit: int) -> tuple[str, list[Any], "_Answer | None"]:
    """The one array of identifiers, or the 400 Braze gives for the request (nothing is deleted)."""
    if not isinstance(body, dict):
        return "", [], _Answer(400, {"message": "Bad Request: the body must be a JSON object"})
    given = [array for array in DELETE_ARRAYS if body.get(array) is not None]
    if not given:
        return "", [], _Answer(400, {"message": f"No Recipients: one of {', '.join(DELETE_ARRAYS)} is required"})
    if len(given) > 1:  # "Only one of external_ids, user_aliases, ... can be included in a single request"
        message = f"only one of {', '.join(DELETE_ARRAYS)} may be included in a single request (got {', '.join(given)})"
        return "", [], _Answer(400, {"message": message})
    array = given[0]
    identifiers = body[array]
    if not isinstance(identifiers, list) or not identifiers:
        return "", [], _Answer(400, {"message": f"'{array}' must be a non-empty array"})
    if len(identifiers) > limit:  # "Up to 50 ... can be included in a single request"
        message = f"a single request may not contain more than {limit} identifiers ({len(identifiers)} given)"
        return "", [], _Answer(400, {"message": message})
    for index, identifier in enumerate(identifiers):
        issue = _identifier_issue(array, identifier)
        if issue is not None:
            return "", [], _Answer(400, {"message": f"'{array}'[{index}]: {issue}"})
    return array, identifiers, None


def _identifier_issue(array: str, identifier: Any) -> str | None:
    if array in ("external_ids", "braze_ids"):
        return None if _is_text(identifier) else "must be a non-empty string"
    if array == "user_aliases":
        return None if _is_alias(identifier) else "must be an object with string alias_name and alias_label"
    contact = "email" if array == "email_addresses" else "phone"
    # [inf] The parameter table says "array of strings", the text and example an object with a
    # required prioritization: the sandbox takes the object, which is what Braze can act on.
    if not isinstance(identifier, dict) or not _is_text(identifier.get(contact)):
        return f"must be an object with a string '{contact}' and a 'prioritization' array"
    if contact == "email" and not _EMAIL_RE.match(identifier["email"]):
        return "email is not a valid address"
    if not _prioritization_ok(identifier.get("prioritization"), DELETE_PRIORITIZATION_VALUES):
        allowed = ", ".join(sorted(DELETE_PRIORITIZATION_VALUES))
        return f"prioritization must be an ordered array of {allowed} (not both identified and unidentified)"
    return None

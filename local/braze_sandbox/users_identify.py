"""POST /users/identify (§5): the route and its validation; the merge itself is the store's."""

import threading
from typing import Any

from local.braze_sandbox.answers import _Answer
from local.braze_sandbox.checks import _external_id_issue, _is_alias, _is_text, _Issue, _one_of
from local.braze_sandbox.config import SandboxConfig
from local.braze_sandbox.profiles import _ProfileStore
from local.braze_sandbox.rules import _EMAIL_RE, IDENTIFY_ARRAYS, PRIORITIZATION_VALUES


class _IdentifyRoute:
    """The /users/identify route, mixed into `BrazeSandbox` (core.py): it uses the sandbox's config, lock and store."""

    # BrazeSandbox's state that this mixin uses (core.py sets it).
    config: SandboxConfig
    _lock: threading.RLock
    _store: _ProfileStore

    def _identify(self, body: Any, excluded: frozenset[tuple[Any, Any]]) -> "_Answer":
        arrays, problem = _identify_arrays(body, self.config.identify_batch_limit)
        if problem is not None:
            return problem
        blocked = frozenset(self.config.blocked_external_ids)
        errors: list[dict[str, Any]] = []
        processed = 0
        with self._lock:
            for array in IDENTIFY_ARRAYS:
                for index, entry in enumerate(arrays.get(array, [])):
                    if (array, index) in excluded:
                        continue
                    issue = _validate_identify_entry(array, entry, blocked)
                    if issue is not None:
                        errors.append(issue.entry(array, index))
                        continue
                    self._store.identify(array, entry)
                    processed += 1
        # [inf] Braze documents only "aliases_processed"; the sandbox counts every entry in it.
        answer: dict[str, Any] = {"aliases_processed": processed, "message": "success"}
        if errors:
            answer["errors"] = errors
        return _Answer(201, answer)


def _identify_arrays(body: Any, limit: int) -> tuple[dict[str, list[Any]], "_Answer | None"]:
    if not isinstance(body, dict):
        return {}, _Answer(400, {"message": "Bad Request: the body must be a JSON object"})
    arrays: dict[str, list[Any]] = {}
    for array in IDENTIFY_ARRAYS:
        value = body.get(array)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return {}, _Answer(400, {"message": f"Bad Request: '{array}' must be an array of objects"})
        arrays[array] = value
    total = sum(len(entries) for entries in arrays.values())
    if total == 0:  # §5: one of the three arrays is required
        return {}, _Answer(400, {"message": f"No Recipients: one of {', '.join(IDENTIFY_ARRAYS)} is required"})
    if total > limit:  # §5 up to 50; §3 message
        message = f"The max number of external_ids and aliases per request was exceeded ({total} > {limit})"
        return {}, _Answer(400, {"message": message})
    return arrays, None


def _validate_identify_entry(array: str, entry: dict[str, Any], blocked: frozenset[str]) -> _Issue | None:
    issue = _external_id_issue(entry.get("external_id"), blocked)
    if issue is not None:
        return issue
    if array == "aliases_to_identify":
        if not _is_alias(entry.get("user_alias")):
            return _Issue("BAD_USER_IDENTIFIER", "user_alias needs string alias_name and alias_label")
        return None
    contact = "email" if array == "emails_to_identify" else "phone"
    if not _is_text(entry.get(contact)):
        return _Issue("BAD_USER_IDENTIFIER", f"{contact} must be a non-empty string")
    if contact == "email" and not _EMAIL_RE.match(entry["email"]):
        return _Issue("EMAIL_BAD_FORMAT", "email is not a valid address")
    prioritization = entry.get("prioritization")
    if (
        not isinstance(prioritization, list)
        or not prioritization
        or not all(_one_of(value, PRIORITIZATION_VALUES) for value in prioritization)
        or {"identified", "unidentified"} <= set(prioritization)
    ):  # §5: required, known values, only one of identified/unidentified
        return _Issue("BAD_PRIORITIZATION", "prioritization must be an array of known values")
    return None

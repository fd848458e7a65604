"""POST /users/alias/new (§6): the route and its validation; the alias itself is the store's.

Braze's page (braze.com/docs/api/endpoints/user_data/post_user_alias): up to 50 `user_aliases`,
each {alias_name, alias_label} with an optional external_id. With an external_id the alias is added
to that user, and to nobody if no user has it; without one a new alias-only user is created. A
name/label pair that already exists on any user still answers success and changes nothing. The
answer is `{"aliases_processed": n, "message": "success"}`.
"""

import threading
from typing import Any

from local.braze_sandbox.answers import _Answer
from local.braze_sandbox.checks import _external_id_issue, _is_text
from local.braze_sandbox.config import SandboxConfig
from local.braze_sandbox.profiles import _ProfileStore


class _AliasNewRoute:
    """The /users/alias/new route, mixed into `BrazeSandbox` (core.py): it uses the sandbox's config, lock and store."""

    # BrazeSandbox's state that this mixin uses (core.py sets it).
    config: SandboxConfig
    _lock: threading.RLock
    _store: _ProfileStore

    def _alias_new(self, body: Any, excluded: frozenset[tuple[Any, Any]]) -> "_Answer":
        aliases, problem = _alias_request(
            body, self.config.alias_batch_limit, frozenset(self.config.blocked_external_ids)
        )
        if problem is not None:
            return problem
        processed = 0
        with self._lock:
            for index, entry in enumerate(aliases):
                if ("user_aliases", index) in excluded:
                    continue
                self._store.alias_new(entry)
                processed += 1
        # [inf] status 201 as /users/identify; Braze's page shows only the body.
        return _Answer(201, {"aliases_processed": processed, "message": "success"})


def _alias_request(body: Any, limit: int, blocked: frozenset[str]) -> tuple[list[dict[str, Any]], "_Answer | None"]:
    if not isinstance(body, dict):
        return [], _Answer(400, {"message": "Bad Request: the body must be a JSON object"})
    aliases = body.get("user_aliases")
    if aliases is None or aliases == []:
        return [], _Answer(400, {"message": "No Recipients: 'user_aliases' is required"})
    if not isinstance(aliases, list) or not all(isinstance(entry, dict) for entry in aliases):
        return [], _Answer(400, {"message": "'user_aliases' must be an array of objects"})
    if len(aliases) > limit:  # "Up to 50 user aliases may be specified per request"
        message = f"a single request may not contain more than {limit} user aliases ({len(aliases)} given)"
        return [], _Answer(400, {"message": message})
    for index, entry in enumerate(aliases):
        # [inf] Braze documents no per-alias errors: a malformed alias fails the request, as the
        # older page put it ("if the external_id is present but not a valid ID, the process will fail").
        if not _is_text(entry.get("alias_name")) or not _is_text(entry.get("alias_label")):
            return [], _Answer(400, {"message": f"'user_aliases'[{index}] needs string alias_name and alias_label"})
        if entry.get("external_id") is not None:
            issue = _external_id_issue(entry["external_id"], blocked)
            if issue is not None:
                return [], _Answer(400, {"message": f"'user_aliases'[{index}]: {issue.message}"})
    return aliases, None

"""What tests and the demo read back: profiles, stats, reset, exports — in Python and over the
/sandbox/* control routes (no auth, not recorded).
"""

import copy
import random
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from local.braze_sandbox.answers import _Answer
from local.braze_sandbox.config import RecordedRequest
from local.braze_sandbox.profiles import _ProfileStore
from local.braze_sandbox.rate_limit import _FixedWindowLimiter
from local.braze_sandbox.rules import (
    ALIAS_NEW_PATH,
    DELETE_ARRAYS,
    DELETE_PATH,
    IDENTIFY_ARRAYS,
    IDENTIFY_PATH,
    MERGE_PATH,
    TRACK_ARRAYS,
    TRACK_PATH,
)
from local.braze_sandbox.server import _Incoming
from local.braze_sandbox.stats import _Stats

if TYPE_CHECKING:
    from local.braze_sandbox.exports import CallbackRecord, ExportRecord
    from local.braze_sandbox.scripts import ScriptedResponse


class _Inspection:
    """Read-back helpers and the /sandbox/* routes, mixed into `BrazeSandbox` (core.py)."""

    # BrazeSandbox's state that this mixin uses (core.py sets it).
    requests: list[RecordedRequest]
    callbacks: list["CallbackRecord"]
    exports: list["ExportRecord"]
    _lock: threading.RLock
    _store: _ProfileStore
    _stats: "_Stats"
    _limiter: _FixedWindowLimiter
    _user_data_limiter: _FixedWindowLimiter
    _scripts: list["ScriptedResponse"]
    _export_files: dict[tuple[str, str], bytes]
    _data_rng: random.Random

    def profile(self, external_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._store.by_external_id(external_id)
            return found.to_json() if found else None

    def alias_profile(self, alias_name: str, alias_label: str) -> dict[str, Any] | None:
        """The profile holding this alias (identified or not)."""
        with self._lock:
            found = self._store.by_alias(alias_name, alias_label)
            return found.to_json() if found else None

    def history(self, external_id: str) -> list[dict[str, Any]]:
        """What reached the profile that has this external_id now, in order ({"seq", "at", "op", ...});
        [] if nobody has it. A deleted profile's history is in its `deletions` record; a profile keeps
        its newest HISTORY_LIMIT entries."""
        with self._lock:
            found = self._store.by_external_id(external_id)
            return copy.deepcopy(list(found.history)) if found else []

    def alias_history(self, alias_name: str, alias_label: str) -> list[dict[str, Any]]:
        with self._lock:
            found = self._store.by_alias(alias_name, alias_label)
            return copy.deepcopy(list(found.history)) if found else []

    @property
    def deletions(self) -> list[dict[str, Any]]:
        """/users/delete, one record per identifier, in order: {"seq", "at", "identifier_type",
        "identifier", "found" (profiles matched; 1 = deleted), and for a deleted profile "braze_id",
        "external_id", "user_aliases", "history"}."""
        with self._lock:
            return copy.deepcopy(self._store.deletions)

    @property
    def merges(self) -> list[dict[str, Any]]:
        """/users/merge, one record per merge update, in order: {"seq", "at", "identifier_to_merge",
        "identifier_to_keep", "outcome" (merged, not_found, ambiguous, same_profile, control_group),
        and when merged "merged_braze_id", "kept_braze_id", "merged_external_id", "kept_external_id",
        "copied" (attribute names), "merged_history"}."""
        with self._lock:
            return copy.deepcopy(self._store.merges)

    def since_deletion(self, external_id: str) -> list[dict[str, Any]] | None:
        """What reached the current profile of this external_id after its last deletion: None if it
        was never deleted, [] if nothing arrived since (or nobody has it now)."""
        with self._lock:
            deleted = [d["seq"] for d in self._store.deletions if d.get("external_id") == external_id]
            if not deleted:
                return None
            return [entry for entry in self.history(external_id) if entry["seq"] > deleted[-1]]

    def profiles(self) -> dict[str, dict[str, Any]]:
        """All profiles: identified ones by external_id, others by "alias:<name>:<label>",
        "email:<address>", "phone:<number>" or "braze_id:<id>"."""
        with self._lock:
            found: dict[str, dict[str, Any]] = {}
            for profile in self._store.all():
                key = profile.key()
                # Two anonymous profiles can share an email or phone; the second gets its braze_id.
                found[f"braze_id:{profile.braze_id}" if key in found else key] = profile.to_json()
            return found

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats.to_json(profiles=len(self._store), data_points=self._store.data_points)

    def reset(self) -> None:
        """Forget profiles, requests, scripts, callbacks, exports and counters; reseed the faults."""
        with self._lock:
            self.requests.clear()
            self.callbacks.clear()
            self.exports.clear()
            self._scripts.clear()
            self._export_files.clear()
            self._stats = _Stats()
            self._limiter.reset()
            self._user_data_limiter.reset()
            self._seed_random()
            self._store.clear(self._data_rng)

    def wait_for_exports(self, timeout: float = 10.0) -> bool:
        """Block until every accepted export has finished (files written, callback sent)."""
        deadline = time.monotonic() + timeout
        return all(record.finished.wait(max(0.0, deadline - time.monotonic())) for record in list(self.exports))

    def _answer_control(self, incoming: "_Incoming") -> "_Answer":
        parts = incoming.path.split("/")[2:]  # "/sandbox/users/x" → ["users", "x"]
        if incoming.method == "GET" and parts == ["users"]:
            return _Answer(200, self.profiles())
        if incoming.method == "GET" and len(parts) == 2 and parts[0] == "users":
            found = self.profile(unquote(parts[1]))
            return _Answer(200, found) if found else _Answer(404, {"message": "no such profile"})
        if incoming.method == "GET" and len(parts) == 3 and parts[0] == "users" and parts[2] == "history":
            return _Answer(200, self.history(unquote(parts[1])))
        if incoming.method == "GET" and parts == ["deletions"]:
            return _Answer(200, self.deletions)
        if incoming.method == "GET" and parts == ["merges"]:
            return _Answer(200, self.merges)
        if incoming.method == "GET" and parts == ["stats"]:
            return _Answer(200, self.stats())
        if incoming.method == "POST" and parts == ["reset"]:
            self.reset()
            return _Answer(200, {"message": "reset"})
        if incoming.method == "GET" and len(parts) == 3 and parts[0] == "exports":
            with self._lock:
                payload = self._export_files.get((unquote(parts[1]), unquote(parts[2])))
            if payload is None:  # §7: the url only becomes valid once the export is ready
                return _Answer(404, {"message": "export not ready or unknown"})
            return _Answer(200, payload, content_type="application/zip")
        return _Answer(404, {"message": "Not Found"})


_COUNTED_ARRAYS = {
    TRACK_PATH: TRACK_ARRAYS,
    IDENTIFY_PATH: IDENTIFY_ARRAYS,
    DELETE_PATH: DELETE_ARRAYS,
    ALIAS_NEW_PATH: ("user_aliases",),
    MERGE_PATH: ("merge_updates",),
}


def _object_count(path: str, body: Any) -> int | None:
    if not isinstance(body, dict):
        return None
    arrays = _COUNTED_ARRAYS.get(path, ())
    if not arrays:
        return None
    return sum(len(body[a]) for a in arrays if isinstance(body.get(a), list))

"""Value checks that more than one route's validation uses (pure functions)."""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from local.braze_sandbox.rules import _LEGACY_TIME_RE, MAX_EXTERNAL_ID_BYTES


class _Issue(NamedTuple):
    type: str
    message: str

    def entry(self, array: str, index: int) -> dict[str, Any]:
        return {"type": self.type, "input_array": array, "index": index, "message": self.message}


def _external_id_issue(external_id: Any, blocked: frozenset[str]) -> _Issue | None:
    if not _is_text(external_id):
        return _Issue("BAD_USER_IDENTIFIER", "external_id must be a non-empty string")
    if len(external_id.encode("utf-8")) > MAX_EXTERNAL_ID_BYTES:
        return _Issue(
            "EXTERNAL_USER_ID_TOO_LARGE",
            f"'external_id' must be fewer than {MAX_EXTERNAL_ID_BYTES + 1} bytes",
        )
    if external_id in blocked:
        return _Issue("BLACKLISTED_EXTERNAL_USER_ID", "provided external_id is blacklisted and disallowed")
    return None


def _one_of(value: Any, allowed: Iterable[str]) -> bool:
    return isinstance(value, str) and value in allowed  # JSON lists/objects are unhashable


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_alias(alias: Any) -> bool:
    return isinstance(alias, dict) and _is_text(alias.get("alias_name")) and _is_text(alias.get("alias_label"))


def _prioritization_ok(prioritization: Any, allowed: Iterable[str]) -> bool:
    """§5/§6: a non-empty ordered array of known values, at most one of identified/unidentified."""
    return (
        isinstance(prioritization, list)
        and bool(prioritization)
        and all(_one_of(value, allowed) for value in prioritization)
        and not {"identified", "unidentified"} <= set(prioritization)
    )


def _parse_time(value: Any) -> datetime | None:
    """§2.6: ISO 8601, or Braze's legacy yyyy-MM-dd'T'HH:mm:ss:SSSZ. No zone means UTC."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    legacy = _LEGACY_TIME_RE.match(text)
    if legacy:
        text = f"{legacy.group(1)}.{legacy.group(2)}{legacy.group(3)}"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

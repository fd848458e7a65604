"""An answer the sandbox sends, and Braze's usual bodies."""

import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from local.braze_sandbox.rules import (
    ALIAS_NEW_PATH,
    DELETE_ARRAYS,
    DELETE_PATH,
    GCG_EXPORT_PATH,
    IDENTIFY_ARRAYS,
    IDENTIFY_PATH,
    TRACK_ARRAYS,
    TRACK_PATH,
)


@dataclass
class _Answer:
    status: int
    body: Any  # dict/list → JSON; str/bytes → sent verbatim
    headers: dict[str, str] = field(default_factory=dict)
    rate_limit_style: str | None = None  # a 429's header style (RATE_LIMIT_HEADER_STYLES)
    content_type: str = "application/json"


def _unauthorized(headers: dict[str, str]) -> _Answer:
    # Never echo the key: it may be a real one sent to the wrong place.
    if "authorization" not in headers:
        reason = "no 'Authorization: Bearer <REST API key>' header"
    else:
        reason = "the key is unknown here (check the key, the instance's REST host, and unquoted Bearer value)"
    return _Answer(401, {"message": f"Invalid API key: {reason}"})


def _default_body(status: int, path: str, body: Any) -> Any:
    """Braze's usual body for a status, used by scripted answers that give none."""
    if 200 <= status < 300:
        answer: dict[str, Any] = {"message": "success"}
        if path == TRACK_PATH and isinstance(body, dict):
            for array in TRACK_ARRAYS:
                if isinstance(body.get(array), list) and body[array]:
                    answer[f"{array}_processed"] = len(body[array])
        elif path == IDENTIFY_PATH and isinstance(body, dict):
            answer["aliases_processed"] = sum(len(v) for a in IDENTIFY_ARRAYS if isinstance(v := body.get(a), list))
        elif path == DELETE_PATH and isinstance(body, dict):
            answer["deleted"] = sum(len(v) for a in DELETE_ARRAYS if isinstance(v := body.get(a), list))
        elif path == ALIAS_NEW_PATH and isinstance(body, dict):
            answer["aliases_processed"] = len(v) if isinstance(v := body.get("user_aliases"), list) else 0
        elif path == GCG_EXPORT_PATH:
            answer["object_prefix"] = f"{uuid.uuid4()}-{int(time.time())}"
        return answer
    if status == 429:
        return {"message": "Rate limit exceeded"}
    if status == 401:
        return {"message": "Invalid API key"}
    try:
        return {"message": HTTPStatus(status).phrase}
    except ValueError:
        return {"message": "Error"}

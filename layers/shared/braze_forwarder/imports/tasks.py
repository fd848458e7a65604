"""Import tasks: the messages the starter (and a worker out of time) puts on ImportTasksQueue.

    {"v": 1, "import_id": "imp-…", "range": 3}

Everything else — the file, its ranges, how far each got — is in the ImportsTable: a task only says
which range to carry on with, so a duplicate or a late task is harmless.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

VERSION = 1
IMPORT_ID = re.compile(r"imp-[0-9a-f]{24}")
MAX_RANGES = 100_000


class TaskError(ValueError):
    """A message that is not an import task of a version this code understands."""


@dataclass(frozen=True)
class RangeTask:
    import_id: str
    range: int


def encode(task: RangeTask) -> str:
    return json.dumps({"v": VERSION, "import_id": task.import_id, "range": task.range}, separators=(",", ":"))


def decode(body: str) -> RangeTask:
    try:
        data = json.loads(body)
    except ValueError:
        raise TaskError("the message is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise TaskError(f"the message is not a version-{VERSION} import task")
    import_id, index = data.get("import_id"), data.get("range")
    if not isinstance(import_id, str) or not IMPORT_ID.fullmatch(import_id):
        raise TaskError("import_id is missing or malformed")
    if type(index) is not int or not 0 <= index < MAX_RANGES:
        raise TaskError(f"range must be an integer from 0 to {MAX_RANGES - 1}")
    return RangeTask(import_id, index)

"""Copy tasks: the messages the callback puts on CopyTasksQueue and the copier takes off it.

    {"v": 1, "job_id": "...", "kind": "file", "index": 3, "key": "segment-export/.../x.json.gz", "size": 123}
    {"v": 1, "job_id": "...", "kind": "url", "index": 0}
    {"v": 1, "job_id": "...", "kind": "finalize"}

One `file` task per object found in the export bucket (the bucket itself is the copier's setting,
never the message's); one `url` task when Braze delivers the export as a download (the url stays
in the job record: it is a credential, and queue messages get logged and redriven); one
`finalize` task for an export with no files, so that the copier alone writes to the lake.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

VERSION = 1
Kind = Literal["file", "url", "finalize"]
KINDS = ("file", "url", "finalize")
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_MAX_KEY_BYTES = 1024  # S3's own limit


class TaskError(ValueError):
    """A message that is not a copy task of a version this code understands."""


@dataclass(frozen=True)
class CopyTask:
    job_id: str
    kind: Kind
    index: int = 0
    key: str | None = None
    size: int | None = None


def encode(task: CopyTask) -> str:
    body: dict[str, Any] = {"v": VERSION, "job_id": task.job_id, "kind": task.kind}
    if task.kind != "finalize":
        body["index"] = task.index
    if task.key is not None:
        body["key"] = task.key
    if task.size is not None:
        body["size"] = task.size
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"))


def decode(body: str) -> CopyTask:
    try:
        data = json.loads(body)
    except ValueError:
        raise TaskError("the message is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise TaskError(f"the message is not a version-{VERSION} copy task")
    job_id, kind, index = data.get("job_id"), data.get("kind"), data.get("index", 0)
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise TaskError("job_id is missing or malformed")
    if kind not in KINDS:
        raise TaskError(f"kind must be one of {', '.join(KINDS)}")
    if type(index) is not int or not 0 <= index <= 99_999:
        raise TaskError("index must be an integer from 0 to 99999")
    key, size = data.get("key"), data.get("size")
    if kind == "file" and (
        not isinstance(key, str) or not key or len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES
    ):
        raise TaskError("a file task needs the object's key")
    if size is not None and (type(size) is not int or size < 0):
        raise TaskError("size must be a non-negative integer")
    return CopyTask(job_id=job_id, kind=kind, index=index, key=key if kind == "file" else None, size=size)

"""The one exception the ingest API turns into a non-2xx answer."""

from __future__ import annotations


class RequestRejected(Exception):
    """A request answered with `status` and the JSON body {"type": ..., "reason": ...}.

    `type` is machine-readable and stable; `reason` is one human sentence that says what was wrong
    and what is accepted, and never echoes secrets or personal data.
    """

    def __init__(self, status: int, type: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {type}: {reason}")
        self.status = status
        self.type = type
        self.reason = reason
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"type": self.type, "reason": self.reason}

"""The HTTP answers every entry point shares: the one error type, the JSON answer, and the one
mapping of errors to answers that each HTTP handler installs on its resolver.

Every non-2xx answer is a `RequestRejected(status, type, reason[, headers])`, raised by the logic
or, for an unexpected error, named by the handler (`JsonAnswers(..., unexpected=RequestRejected(...))`),
so apidoc finds every answer as a literal RequestRejected call in the modules a route runs.

Every error answer also carries Braze's own `message` for its status (BRAZE_API.md §3), as Braze
answers every refusal: clients written for Braze read `message` first (the braze-client library
raises BrazeClientError(message, errors) and fails with KeyError without it). The wording is mapped
here and only here (`braze_message`), for every answer JsonAnswers writes.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from braze_forwarder.observability import MetricUnit, logger, metrics

# Braze's fatal-error messages (BRAZE_API.md §3, _docs/_api/errors.md), by status. A status Braze
# does not word answers its HTTP reason phrase, as API Gateway's own answers do ({"message": "Not
# Found"}); written out for the statuses the functions answer, since Python 3.13 renamed some.
BRAZE_MESSAGES: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Rate Limited",
    500: "Internal Server Error",
    # Not worded by Braze: the HTTP reason phrase.
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    503: "Service Unavailable",
}


def braze_message(status: int) -> str:
    """Braze's `message` for an error answer of this status."""
    message = BRAZE_MESSAGES.get(status)
    if message is None:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
    return message


class RequestRejected(Exception):
    """A request answered with `status` and the JSON body {"message": ..., "type": ..., "reason": ...}.

    `message` is Braze's wording for the status (`braze_message`), so Braze's clients read it.

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
        return {"message": braze_message(self.status), "type": self.type, "reason": self.reason}


class JsonAnswers:
    """The JSON answers of one HTTP function, installed on its resolver: RequestRejected becomes its
    own answer, any other exception is logged and becomes `unexpected`.

    correlation_header: every answer carries X-Correlation-Id (the logger's correlation id).
    rejected_metric: a metric counted once per RequestRejected answer.
    """

    def __init__(
        self,
        app: APIGatewayHttpResolver,
        *,
        unexpected: RequestRejected,
        correlation_header: bool = False,
        rejected_metric: str | None = None,
    ) -> None:
        self._unexpected = unexpected
        self._correlation_header = correlation_header
        self._rejected_metric = rejected_metric
        app.exception_handler(RequestRejected)(self.rejected)
        app.exception_handler(Exception)(self.unexpected)

    def json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
        """The JSON answer; an error answer without a `message` gets Braze's for its status."""
        if status >= 400 and "message" not in body:
            body = {"message": braze_message(status), **body}
        if self._correlation_header:
            headers = {**(headers or {}), "X-Correlation-Id": logger.get_correlation_id() or ""}
        return Response(status, content_types.APPLICATION_JSON, body, headers=headers or {})

    def rejected(self, error: RequestRejected) -> Response:
        if self._rejected_metric:
            metrics.add_metric(name=self._rejected_metric, unit=MetricUnit.Count, value=1)
        return self.json(error.status, error.body(), error.headers)

    def unexpected(self, _error: Exception) -> Response:
        logger.exception("unexpected error")
        return self.answer(self._unexpected)

    def answer(self, error: RequestRejected) -> Response:
        """The answer for an error the handler maps itself (not counted as a rejection)."""
        return self.json(error.status, error.body(), error.headers)

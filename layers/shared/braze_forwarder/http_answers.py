"""The HTTP answers every entry point shares: the one error type, the JSON answer, and the one
mapping of errors to answers that each HTTP handler installs on its resolver.

Every non-2xx answer is a `RequestRejected(status, type, reason[, headers])`, raised by the logic
or, for an unexpected error, named by the handler (`JsonAnswers(..., unexpected=RequestRejected(...))`),
so apidoc finds every answer as a literal RequestRejected call in the modules a route runs.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from braze_forwarder.observability import MetricUnit, logger, metrics


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

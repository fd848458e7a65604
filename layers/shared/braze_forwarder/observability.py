"""The one Logger, Tracer and Metrics of every function.

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE (set in template.yaml's Globals), so every module logs and counts
under the same names. Modules import these objects; nobody creates another.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

logger = Logger()

# At DEBUG, botocore logs whole response bodies — a Secrets Manager answer is the secret itself.
# Lambda's log-level controls can turn the root logger to DEBUG, so the SDK's loggers are pinned.
for _library in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_library).setLevel(logging.WARNING)


class DisabledTracer:
    """Tracer's decorators and annotations when tracing is off, without loading the X-Ray SDK.

    Powertools' Tracer imports the SDK even when disabled, and the SDK builds an X-Ray client as it
    loads: about 150 ms of every cold start (`make bench`) for traces nobody asked for.
    """

    def capture_lambda_handler(self, lambda_handler: Callable | None = None, **_options: Any) -> Callable:
        return lambda_handler if lambda_handler is not None else _unchanged

    def capture_method(self, method: Callable | None = None, **_options: Any) -> Callable:
        return method if method is not None else _unchanged

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        pass


def _unchanged(function: Callable) -> Callable:
    return function


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Powertools' own switch: template.yaml sets POWERTOOLS_TRACE_DISABLED from TracingEnabled."""
    return environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() not in {"true", "1"}


def _tracer() -> Tracer | DisabledTracer:
    if not tracing_enabled():
        return DisabledTracer()
    from aws_lambda_powertools import Tracer

    return Tracer()


tracer = _tracer()
metrics = Metrics()

# Powertools warns on every flush without an application metric. In each function here such an
# invocation is normal, not a sign of a missing count: a webhook publishes its counts with the
# provider as a dimension (single_metric), an unknown route or a repeated schedule counts nothing,
# a copy task for a finished export has nothing to do. Left on, the warning would be most of some
# log streams (and of the `make run` demo). Powertools' documentation silences it this way.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

__all__ = ["MetricUnit", "logger", "metrics", "single_metric", "tracer", "tracing_enabled"]

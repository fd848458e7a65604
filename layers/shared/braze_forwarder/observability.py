"""The one Logger, Tracer and Metrics of every function.

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE (set in template.yaml's Globals), so every module logs and counts
under the same names. Modules import these objects; nobody creates another.
"""

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()

# At DEBUG, botocore logs whole response bodies — a Secrets Manager answer is the secret itself.
# Lambda's log-level controls can turn the root logger to DEBUG, so the SDK's loggers are pinned.
for _library in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_library).setLevel(logging.WARNING)

tracer = Tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "single_metric", "tracer"]

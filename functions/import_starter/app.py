"""ImportStarterFunction: a file dropped in ImportBucket (an S3 event), or named by `braze-forwarder
import start` (an invocation), split into ranges and fanned out on ImportTasksQueue; also `cancel`."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.config import ImportSettings, settings
from braze_forwarder.imports.commands import handle
from braze_forwarder.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle(settings(ImportSettings), event)

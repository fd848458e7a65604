"""ExportStarterFunction: on the EventBridge Scheduler schedule, ask Braze for the global control group export."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.exports.start import start_export
from braze_forwarder.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return start_export(event, lambda: context.get_remaining_time_in_millis() / 1000)

"""RejectsEraserFunction: daily, take the objects of users deleted since they were accepted out of the
rejected-objects store (braze_forwarder/erasure.py, docs/personal-data.md)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.config import ErasureSettings, settings
from braze_forwarder.erasure import scheduled_run
from braze_forwarder.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return scheduled_run(settings(ErasureSettings), lambda: context.get_remaining_time_in_millis() / 1000)

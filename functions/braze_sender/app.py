"""BrazeSenderFunction: queue batches into full /users/track and /users/identify calls."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.delivery.sender import deliver_records
from braze_forwarder.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # Packing spans the whole batch, so delivery runs once for all records and reports which
    # messages go back to the queue (ReportBatchItemFailures); the objects they delivered are in
    # the ledger. A batch where every message failed is reported the same way, not raised: the
    # messages return to the queue either way, and MaximumConcurrency already bounds Braze's load.
    records = [(record["messageId"], record["body"]) for record in event["Records"]]
    outcome = deliver_records(records, lambda: context.get_remaining_time_in_millis() / 1000)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in outcome.failed_message_ids]}

"""ExportCopierFunction: each CopyTasksQueue message → one export file streamed into the lake."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.exports.copier import copy_task
from braze_forwarder.observability import MetricUnit, logger, metrics, tracer

# Every record stands alone (one export file each): a failed one goes back to the queue on its own,
# and reporting it is enough — raising for a batch that failed whole would only repeat the log.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def copy_record(record: SQSRecord, lambda_context: LambdaContext) -> str:
    # Powertools passes the context to a record handler that names a `lambda_context` parameter.
    try:
        return copy_task(record.body, lambda: lambda_context.get_remaining_time_in_millis() / 1000)
    except Exception:
        # Counted: a handled failure is not a Lambda error, and the DLQ alarm sees only the fifth try.
        metrics.add_metric(name="ExportCopyTasksRetried", unit=MetricUnit.Count, value=1)
        logger.exception("copy task failed; it goes back to the queue", extra={"sqs_message_id": record.message_id})
        raise


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=copy_record, processor=processor, context=context)

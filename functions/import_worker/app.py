"""ImportWorkerFunction: each ImportTasksQueue message → one range of an import's file queued for the sender."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.config import ImportSettings, settings
from braze_forwarder.imports.worker import real_parts, run_task
from braze_forwarder.observability import MetricUnit, logger, metrics, tracer

# One range a record; a failed one goes back to the queue alone and resumes from its last chunk.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def run_record(record: SQSRecord, lambda_context: LambdaContext) -> str:
    config = settings(ImportSettings)
    try:
        return run_task(
            record.body, config, real_parts(config), lambda: lambda_context.get_remaining_time_in_millis() / 1000
        )
    except Exception:
        metrics.add_metric(name="ImportTasksRetried", unit=MetricUnit.Count, value=1)
        logger.exception("import range failed; it goes back to the queue", extra={"sqs_message_id": record.message_id})
        raise


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=run_record, processor=processor, context=context)

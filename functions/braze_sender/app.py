"""BrazeSenderFunction: queue batches into full /users/track and /users/identify calls."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.delivery.sender import deliver_records
from braze_forwarder.observability import logger, metrics, tracer

# A batch where every message failed (Braze down, wrong key) is reported like any other: the
# messages go back to the queue. Raising instead would only add a stack trace to an expected case;
# MaximumConcurrency already bounds the load on Braze.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class NotDelivered(Exception):
    """The message goes back to the queue; the objects already delivered are in the ledger."""


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # Packing spans the whole batch, so delivery runs once for all records; Powertools then builds
    # the partial-failure response from its outcome.
    records = [(record["messageId"], record["body"]) for record in event["Records"]]
    outcome = deliver_records(records, lambda: context.get_remaining_time_in_millis() / 1000)
    failed = set(outcome.failed_message_ids)

    def settle(record: SQSRecord) -> None:
        if record.message_id in failed:
            raise NotDelivered(record.message_id)

    return process_partial_response(event=event, record_handler=settle, processor=processor, context=context)

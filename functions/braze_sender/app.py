"""BrazeSenderFunction: queue batches into full /users/track, /users/identify, /users/alias/new,
/users/delete and /users/merge calls, in each user's order (docs/ordering.md)."""

import functools

from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.braze import credentials
from braze_forwarder.braze.client import client_for
from braze_forwarder.braze.credentials import api_key_for
from braze_forwarder.config import SenderSettings, settings
from braze_forwarder.delivery import ordering
from braze_forwarder.delivery.attribute_state import DynamoAttributeStore
from braze_forwarder.delivery.ledger import DynamoLedger
from braze_forwarder.delivery.rate_budget import RateBudget, budget_for
from braze_forwarder.delivery.sender import SenderParts, deliver_records
from braze_forwarder.observability import logger, metrics, tracer
from braze_forwarder.rejects import S3Rejects
from braze_forwarder.user_order import OrderStore


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext, parts: SenderParts | None = None) -> dict:
    # Packing spans the whole batch, so delivery runs once for all records and reports which
    # messages go back to the queue (ReportBatchItemFailures); the objects they delivered are in
    # the ledger. A batch where every message failed is reported the same way, not raised: the
    # messages return to the queue either way, and MaximumConcurrency already bounds Braze's load.
    # Lambda passes no `parts`: the real ones. A harness (the soak) passes its own, around them.
    records = [(record["messageId"], record["body"]) for record in event["Records"]]
    outcome = deliver_records(records, lambda: context.get_remaining_time_in_millis() / 1000, parts or sender_parts())
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in outcome.failed_message_ids]}


def sender_parts() -> SenderParts:
    """The real Braze client and key, ledger, rejected-objects, attribute and order stores, each created
    on first use and kept for the execution environment (as boto3 clients are)."""
    config = settings(SenderSettings)
    client = client_for(
        config.braze_rest_endpoint,
        config.braze_max_in_flight,
        config.braze_connect_timeout_seconds,
        config.braze_read_timeout_seconds,
    )
    api_key = api_key_for(config.braze_api_key_secret_arn, config.braze_api_key_max_age_seconds)
    ledger, rejects, attributes, order = _stores(config)
    return SenderParts(client, api_key, ledger, rejects, attributes, order=order, budget=_budget(config))


@functools.cache
def _stores(config: SenderSettings) -> tuple[DynamoLedger, S3Rejects, DynamoAttributeStore | None, OrderStore]:
    attributes = None
    if config.delta_sending_enabled:
        attributes = DynamoAttributeStore(config.attribute_state_table, config.attribute_state_ttl_seconds)
    return (
        DynamoLedger(config.ledger_table, config.ledger_ttl_seconds),
        S3Rejects(config.rejected_bucket, config.rejected_prefix),
        attributes,
        OrderStore(config.user_order_table),
    )


@functools.cache
def _budget(config: SenderSettings) -> RateBudget:
    # Kept for the execution environment: requests leased in the current window serve its next invocation.
    return budget_for(config)


def reset() -> None:
    """Forget the pooled Braze client, the key holder and the stores (tests switch endpoints and
    secrets; the soak replaces a killed environment)."""
    credentials.reset()
    _stores.cache_clear()
    ordering.forget_snapshots()
    _budget.cache_clear()

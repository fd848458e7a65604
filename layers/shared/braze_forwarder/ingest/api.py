"""One API request, from API Gateway's event to an answer: authenticate, read, accept once."""

from __future__ import annotations

import hashlib

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.config import IngestSettings, settings
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest import auth, idempotency, partial, service, user_data
from braze_forwarder.ingest.service import Answer, Retries, accept
from braze_forwarder.observability import MetricUnit, logger, metrics
from braze_forwarder.queue import Kind
from braze_forwarder.request_body import parse_json_deferring_keys, read_body
from braze_forwarder.user_order import OrderStore

ROUTES = {**service.ROUTES, **user_data.ROUTES}


def receive(event: APIGatewayProxyEventV2, kind: Kind, lambda_context: LambdaContext | None) -> tuple[Answer, bool]:
    """Answer one Braze user-data request (track, identify, delete, alias, merge); return the answer and
    whether it is a replay."""
    config = settings(IngestSettings)
    headers = event.headers  # Powertools matches names whatever their case; built on each access, so once
    try:
        client = auth.authenticate(
            headers.get("authorization"), config.ingest_keys_secret_arn, config.ingest_keys_max_age_seconds
        )
    except RequestRejected:
        metrics.add_metric(name="Unauthorized", unit=MetricUnit.Count, value=1)
        raise
    logger.append_keys(client=client)
    metrics.add_metadata(key="client", value=client)
    key = idempotency.checked_key(headers.get("idempotency-key"))
    data = read_body(event.body, event.is_base64_encoded, config.max_body_bytes)
    route = ROUTES[kind]
    correlation_id = logger.get_correlation_id()
    retries = Retries(
        config.idempotency_table,
        client,
        kind,
        key,
        data,
        config.idempotency_ttl_seconds if key is not None else partial.UNKEYED_WINDOW_SECONDS,
    )
    ordering = (
        user_data.Ordering(OrderStore(config.user_order_table), config.order_fence_seconds)
        if route.order_records is not None
        else None
    )

    def compute() -> Answer:
        return accept(
            route,
            parse_json_deferring_keys(data),
            client=client,
            correlation_id=correlation_id,
            queue_url=config.events_queue_url,
            max_message_bytes=config.max_message_bytes,
            max_json_depth=config.max_json_depth,
            retries=retries,
            ordering=ordering,
        )

    if key is None:
        answered = compute(), False
    else:
        answered = idempotency.once(
            key,
            client=client,
            route=kind,
            body_sha256=hashlib.sha256(data).hexdigest(),
            table=config.idempotency_table,
            ttl_seconds=config.idempotency_ttl_seconds,
            lambda_context=lambda_context,
            compute=compute,
        )
    answer, replayed = answered
    logger.debug(
        "request answered",
        extra={"status": answer.status, "replayed": replayed, "errors": len(answer.body.get("errors", []))},
    )
    return answered

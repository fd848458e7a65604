"""One webhook request, from API Gateway's event to an answer: verify, map, accept once.

    404  unknown provider
    400  bad body, malformed signature header, not an event, livemode of the other environment
    401  unsigned, no matching signature, timestamp outside the window
    409  the same event (or another event of the same payment) is being processed right now
    503  the queue, the dedupe store, the rejected store or the secrets cannot be reached (Retry-After)
    200  {"message": "queued" | "kept" | "ignored" | "duplicate", ...}

2xx means the provider can forget the event: what it became is in SQS (or, when no Braze user can
be found or the event cannot be read, in the rejected-objects store with the reason), or it was
deliberately ignored, or it was accepted before. Nothing of the body or the signature is logged:
only the provider, the event's id and type, and the outcome.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder import queue, rejects
from braze_forwarder.braze.validation import Limits, NestingTooDeep, Problem, check_track_object
from braze_forwarder.config import WebhookSettings, settings
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest.service import Answer
from braze_forwarder.ingest.webhooks import PROVIDERS, once, signing_secrets
from braze_forwarder.ingest.webhooks.base import (
    BrazeObject,
    Ignored,
    Mapped,
    MappingError,
    Outcome,
    Provider,
    ProviderEvent,
    UserNotFound,
)
from braze_forwarder.observability import MetricUnit, logger, metrics, single_metric
from braze_forwarder.request_body import read_body

REJECTED_PREFIX = "rejected/webhooks/"
# Without a Lambda context (tests, tools) an unfinished marker blocks redeliveries this long.
_DEFAULT_IN_PROGRESS_SECONDS = 60.0


def receive_webhook(
    event: APIGatewayProxyEventV2, provider_name: str, lambda_context: LambdaContext | None = None
) -> Answer:
    """Answer one POST /webhooks/{provider}."""
    provider = PROVIDERS.get(provider_name)
    if provider is None:
        raise RequestRejected(
            404, "unknown_provider", f"no webhook provider by that name; POST /webhooks/{{{'|'.join(PROVIDERS)}}}"
        )
    config = settings(WebhookSettings)
    body = read_body(event.body, event.is_base64_encoded, config.max_body_bytes)
    headers = {str(name).lower(): value for name, value in (event.headers or {}).items() if isinstance(value, str)}
    verified = _verify(provider, body, headers, config)
    log = {"provider": provider.name, "event_id": verified.id, "event_type": verified.type}

    expected = provider.expected_livemode(config)
    if expected is not None and verified.livemode is not None and verified.livemode != expected:
        logger.warning("webhook event of the other mode refused", extra=log)
        raise RequestRejected(
            400,
            "livemode_mismatch",
            f"this deployment takes {'live' if expected else 'test'}-mode events only; "
            "register a separate endpoint for the other mode",
        )

    try:
        outcome: Outcome | MappingError = provider.map(verified, config)
    except MappingError as exc:
        outcome = exc
    if isinstance(outcome, Ignored):
        _count("WebhookEventsIgnored", provider.name)
        logger.info("webhook event ignored", extra={**log, "reason": outcome.reason})
        return Answer(200, {"message": "ignored", "reason": outcome.reason})

    key = once.event_key(provider.name, verified.id)
    owner = uuid.uuid4().hex
    claim = once.claim_event(
        config.idempotency_table,
        key,
        owner,
        in_progress_seconds=_remaining_seconds(lambda_context),
        ttl_seconds=config.webhook_dedupe_ttl_seconds,
    )
    if claim is once.Claim.DUPLICATE:
        _count("WebhookDuplicates", provider.name)
        logger.info("webhook event already accepted", extra=log)
        return Answer(200, {"message": "duplicate"})
    if claim is once.Claim.IN_PROGRESS:
        raise RequestRejected(
            409, "event_in_progress", "this event is being processed by another delivery; retry", {"Retry-After": "5"}
        )
    try:
        answer, result = _accept(verified, outcome, config)
    except BaseException:
        once.release_event(config.idempotency_table, key, owner)
        raise
    once.complete_event(config.idempotency_table, key, owner, result)
    logger.info("webhook event accepted", extra={**log, "outcome": result})
    return answer


def _verify(provider: Provider, body: bytes, headers: dict[str, str], config: WebhookSettings) -> ProviderEvent:
    if not getattr(provider, "uses_signing_secrets", True) or not getattr(
        provider.signature, "uses_signing_secrets", True
    ):
        # Checked against a certificate chain (the App Store's JWS) or keys the provider publishes
        # (Google's OIDC push token), not a shared secret: the webhook-secrets secret is not read.
        return provider.verify(body, headers, (), time.time(), config)
    arn, max_age = config.webhook_secrets_arn, config.webhook_secrets_max_age_seconds
    secrets = signing_secrets.secrets_for(provider.name, arn, max_age)
    try:
        return provider.verify(body, headers, secrets, time.time(), config)
    except RequestRejected as rejected:
        # A secret just added or rolled is not in the cache yet: read the secret again, at most
        # every few seconds, before refusing.
        if rejected.type != "invalid_signature" or not signing_secrets.may_refresh_on_miss(provider.name):
            raise
    secrets = signing_secrets.secrets_for(provider.name, arn, max_age, force_fetch=True)
    return provider.verify(body, headers, secrets, time.time(), config)


def _accept(
    event: ProviderEvent, outcome: Mapped | UserNotFound | MappingError, config: WebhookSettings
) -> tuple[Answer, str]:
    """Queue (or keep) what the event became; return the answer and the outcome to record."""
    origin = {"provider": event.provider, "event_id": event.id, "event_type": event.type}
    if isinstance(outcome, MappingError):
        _keep(config, [_record(origin, "UNREADABLE_EVENT", str(outcome), None)])
        _count("WebhookEventsKept", event.provider)
        return Answer(200, {"message": "kept", "reason": str(outcome)}), "kept"
    if isinstance(outcome, UserNotFound):
        _keep(config, [_record(origin, "USER_NOT_FOUND", outcome.reason, o) for o in outcome.objects])
        _count("WebhookUsersNotFound", event.provider)
        return Answer(200, {"message": "kept", "reason": outcome.reason}), "kept"

    keys = tuple(once.payment_key(event.provider, payment) for payment in outcome.payment_keys)
    shared = tuple(once.payment_key(event.provider, payment) for payment in outcome.shared_keys)
    absent = tuple(once.payment_key(event.provider, payment) for payment in outcome.absent_keys)
    if keys and not once.claim_payments(
        config.idempotency_table,
        keys,
        event.id,
        ttl_seconds=config.webhook_dedupe_ttl_seconds,
        shared=shared,
        absent=absent,
    ):
        _count("WebhookEventsIgnored", event.provider)
        reason = "another event for the same payment already counted it"
        return Answer(200, {"message": "ignored", "reason": reason}), "already_counted"
    try:
        return _queue(event, outcome.objects, origin, config)
    except BaseException:
        if keys:
            once.release_payments(config.idempotency_table, (*keys, *shared), event.id)
        raise


def _queue(
    event: ProviderEvent, objects: tuple[BrazeObject, ...], origin: dict[str, Any], config: WebhookSettings
) -> tuple[Answer, str]:
    correlation_id = logger.get_correlation_id()
    limits = Limits(max_object_depth=config.max_json_depth - 3)
    max_object_bytes = queue.max_object_bytes(config.max_message_bytes, event.provider, correlation_id)
    items: list[queue.EncodedItem] = []
    invalid: list[dict[str, Any]] = []
    positions = {"attributes": 0, "events": 0, "purchases": 0}
    for braze_object in objects:
        index = positions[braze_object.array]
        positions[braze_object.array] += 1
        encoded = queue.encode_object(braze_object.object)
        try:
            problem = check_track_object(braze_object.array, braze_object.object, len(encoded), limits)
        except NestingTooDeep:
            problem = Problem("NESTING_TOO_DEEP", "the object nests deeper than the configured limit")
        if problem is None and len(encoded) > max_object_bytes:
            problem = Problem("OBJECT_TOO_LARGE", f"the object is {len(encoded)} bytes; at most {max_object_bytes} fit")
        if problem is not None:
            # A mapping that builds an object Braze would refuse is a bug; the object is kept with
            # the reason, never dropped and never sent.
            invalid.append(_record(origin, problem[0], problem[1], braze_object))
            continue
        items.append((braze_object.array, index, encoded))
    if invalid:
        logger.error("a webhook mapping built objects Braze would refuse", extra={**origin, "objects": len(invalid)})
        _keep(config, invalid)
        _count("WebhookObjectsRejected", event.provider, len(invalid))
    counts = {f"{array}_queued": sum(1 for item in items if item[0] == array) for array in positions}
    if not counts["events_queued"] and not counts["purchases_queued"]:
        # Only the alias-creating attributes object is left: not worth a profile on its own.
        return Answer(200, {"message": "kept", "reason": "no object of this event passed validation"}), "kept"

    # The values were true at the provider's event time, not when this delivery (maybe a retry
    # days later) arrived: the sender orders one user's values by it, so a late retry cannot
    # overwrite newer data.
    messages = queue.build_messages(
        "track",
        items,
        source=event.provider,
        correlation_id=correlation_id,
        max_message_bytes=config.max_message_bytes,
        received_at=event.occurred_at,
    )
    try:
        queue.send_messages(config.events_queue_url, messages)
    except queue.QueueUnavailable as exc:
        logger.error("queue refused a webhook event", extra={**origin, "queued": exc.queued, "total": exc.total})
        raise RequestRejected(
            503,
            "queue_unavailable",
            "the events queue did not accept the event; nothing is confirmed, retry",
            {"Retry-After": "5"},
        ) from None
    _count("WebhookEventsQueued", event.provider)
    return Answer(200, {"message": "queued", **counts}), "queued"


def _record(origin: dict[str, Any], error_type: str, reason: str, braze_object: BrazeObject | None) -> dict[str, Any]:
    return {
        "rejected_at": queue.utc_now_iso(),
        "reason": {"type": error_type, "message": reason},
        "braze": None,
        "origin": {**origin, "array": braze_object.array if braze_object else None},
        "object": braze_object.object if braze_object else None,
    }


def _keep(config: WebhookSettings, records: list[dict[str, Any]]) -> None:
    try:
        rejects.keep(config.rejected_bucket, REJECTED_PREFIX, records)
    except Exception as exc:
        logger.error("could not keep a webhook event as rejected", extra={"error": type(exc).__name__})
        raise RequestRejected(
            503,
            "rejected_store_unavailable",
            "the event could not be kept for an operator; nothing was accepted, retry",
            {"Retry-After": "30"},
        ) from None


def _remaining_seconds(lambda_context: LambdaContext | None) -> float:
    if lambda_context is None:
        return _DEFAULT_IN_PROGRESS_SECONDS
    return lambda_context.get_remaining_time_in_millis() / 1000 + 1


def _count(name: str, provider: str, value: int = 1) -> None:
    with single_metric(
        name=name, unit=MetricUnit.Count, value=value, default_dimensions=metrics.default_dimensions
    ) as metric:
        metric.add_dimension(name="provider", value=provider)

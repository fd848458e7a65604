"""Once: each provider event is acted on once, and each payment is counted once.

Both are DynamoDB conditional writes in the ingest API's IdempotencyTable (partition key `id`, TTL
attribute `expiration`), under key prefixes that cannot meet Powertools' own records:

    webhook#<provider>#<event id>      the event marker, in two steps:
        1. claim     IN_PROGRESS, with an owner token and `in_progress_until` (the invocation's
                     deadline): a concurrent delivery of the same event answers 409 and is retried;
        2. complete  COMPLETE, only after SQS (and the rejected store) accepted what the event
                     became; a redelivery then answers 200 "duplicate" and queues nothing.
        On failure before step 2 the marker is deleted, so the provider's retry runs again.

    payment#<provider>#<payment id>    the payment claim (PaymentIntent or invoice id) of the event
                                       that counts that money; another event for the same money finds
                                       it and queues no second purchase.
    payment#stripe#money#<kind>#...    Stripe's money keys, for API versions whose PaymentIntent and
                                       invoice do not name each other (stripe.py).

The one window left (ARCHITECTURE.md "at-least-once"): the function dies after SQS accepted the
message and before step 2 is written. The marker is then IN_PROGRESS; the provider, having had no
2xx, retries; once `in_progress_until` has passed, the retry queues the event again. The window is
the few milliseconds between SendMessageBatch returning and UpdateItem returning (or a timeout in
between). Writing the marker before queueing instead would lose the event in that window, which
is worse than a duplicate; writing it only after queueing, without step 1, would let two
concurrent deliveries both queue. If step 2 fails with the message queued, the answer is still
200 (the provider does not retry a 2xx), and the marker expires on its own.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from braze_forwarder import aws
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.observability import logger

IN_PROGRESS = "IN_PROGRESS"
COMPLETE = "COMPLETE"


class Claim(enum.Enum):
    CLAIMED = "claimed"
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in_progress"


def event_key(provider: str, event_id: str) -> str:
    return f"webhook#{provider}#{event_id}"


def payment_key(provider: str, payment_id: str) -> str:
    return f"payment#{provider}#{payment_id}"


def claim_event(table: str, key: str, owner: str, *, in_progress_seconds: float, ttl_seconds: int) -> Claim:
    now = int(time.time())
    try:
        aws.client("dynamodb").put_item(
            TableName=table,
            Item={
                "id": {"S": key},
                "status": {"S": IN_PROGRESS},
                "owner": {"S": owner},
                "in_progress_until": {"N": str(now + max(1, int(in_progress_seconds)))},
                "expiration": {"N": str(now + ttl_seconds)},
            },
            # Free: no marker; one whose TTL passed (DynamoDB deletes expired items up to 48 h late);
            # or one left IN_PROGRESS by an invocation that died.
            ConditionExpression=(
                "attribute_not_exists(id) OR expiration < :now OR (#status = :in_progress AND in_progress_until < :now)"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":now": {"N": str(now)}, ":in_progress": {"S": IN_PROGRESS}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if _code(exc) != "ConditionalCheckFailedException":
            raise _store_unavailable(exc) from None
        existing = exc.response.get("Item") or _get(table, key)
        status = (existing or {}).get("status", {}).get("S")
        return Claim.DUPLICATE if status == COMPLETE else Claim.IN_PROGRESS
    except BotoCoreError as exc:
        raise _store_unavailable(exc) from None
    return Claim.CLAIMED


def complete_event(table: str, key: str, owner: str, outcome: str) -> None:
    """Mark the event done; a failure here is logged, not raised (what it became is already kept)."""
    try:
        aws.client("dynamodb").update_item(
            TableName=table,
            Key={"id": {"S": key}},
            UpdateExpression="SET #status = :complete, outcome = :outcome REMOVE in_progress_until",
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
            ExpressionAttributeValues={
                ":complete": {"S": COMPLETE},
                ":outcome": {"S": outcome},
                ":owner": {"S": owner},
            },
        )
    except (BotoCoreError, ClientError) as exc:
        logger.warning(
            "could not mark the webhook event complete; a redelivery after its in-progress window would repeat it",
            extra={"error": type(exc).__name__},
        )


def release_event(table: str, key: str, owner: str) -> None:
    """Delete our IN_PROGRESS marker so the provider's retry runs again."""
    try:
        aws.client("dynamodb").delete_item(
            TableName=table,
            Key={"id": {"S": key}},
            ConditionExpression="#owner = :owner AND #status = :in_progress",
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}, ":in_progress": {"S": IN_PROGRESS}},
        )
    except (BotoCoreError, ClientError) as exc:
        # The marker then expires at in_progress_until, after which the retry runs.
        logger.warning("could not release the webhook event marker", extra={"error": type(exc).__name__})


def claim_payments(
    table: str,
    keys: Sequence[str],
    event_id: str,
    *,
    ttl_seconds: int,
    shared: Sequence[str] = (),
    absent: Sequence[str] = (),
) -> bool:
    """Claim every payment key for this event, all or none; False when another event holds one.

    The claim names the event, so a retry of the same event (after a crash) finds its own claim and
    goes on: the money is counted by whichever event claimed it, exactly once. `shared` keys are
    written whoever holds them (events of one kind share them); `absent` keys must not exist, or the
    money was counted by another kind of event (Stripe's money keys, see stripe.py).
    """
    now = int(time.time())
    expiration = {"N": str(now + ttl_seconds)}
    claims: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": table,
                "Item": {"id": {"S": key}, "event_id": {"S": event_id}, "expiration": expiration},
                "ConditionExpression": "attribute_not_exists(id) OR event_id = :event OR expiration < :now",
                "ExpressionAttributeValues": {":event": {"S": event_id}, ":now": {"N": str(now)}},
            }
        }
        for key in keys
    ]
    claims += [
        {"Put": {"TableName": table, "Item": {"id": {"S": key}, "event_id": {"S": event_id}, "expiration": expiration}}}
        for key in shared
    ]
    claims += [
        {
            "ConditionCheck": {
                "TableName": table,
                "Key": {"id": {"S": key}},
                "ConditionExpression": "attribute_not_exists(id) OR expiration < :now",
                "ExpressionAttributeValues": {":now": {"N": str(now)}},
            }
        }
        for key in absent
    ]
    try:
        aws.client("dynamodb").transact_write_items(TransactItems=claims)
    except ClientError as exc:
        if _code(exc) != "TransactionCanceledException":
            raise _store_unavailable(exc) from None
        reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
        if "ConditionalCheckFailed" in reasons:
            return False
        # Two events of the same payment at the same moment: answer 409, the provider retries.
        raise RequestRejected(
            409,
            "payment_in_progress",
            "another event for the same payment is being processed; retry",
            {"Retry-After": "5"},
        ) from None
    except BotoCoreError as exc:
        raise _store_unavailable(exc) from None
    return True


def release_payments(table: str, keys: Sequence[str], event_id: str) -> None:
    for key in keys:
        try:
            aws.client("dynamodb").delete_item(
                TableName=table,
                Key={"id": {"S": key}},
                ConditionExpression="event_id = :event",
                ExpressionAttributeValues={":event": {"S": event_id}},
            )
        except (BotoCoreError, ClientError) as exc:
            # Left behind, the claim still names this event: its retry finds it and goes on.
            logger.warning("could not release a payment claim", extra={"error": type(exc).__name__})


def _get(table: str, key: str) -> dict | None:
    try:
        return aws.client("dynamodb").get_item(TableName=table, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")
    except (BotoCoreError, ClientError) as exc:
        raise _store_unavailable(exc) from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _store_unavailable(exc: Exception) -> RequestRejected:
    logger.error("the webhook dedupe store failed", extra={"error": type(exc).__name__})
    return RequestRejected(
        503,
        "dedupe_store_unavailable",
        "the store that keeps events from being counted twice cannot be reached; nothing was accepted, retry",
        {"Retry-After": "5"},
    )

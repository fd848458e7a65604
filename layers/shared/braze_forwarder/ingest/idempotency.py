"""`Idempotency-Key`: a retried request answers what the first one answered and queues nothing.

Built on Powertools idempotency (DynamoDB). Keys are scoped to the client and route, so one
client's key can neither collide with nor read another's answer; the body's SHA-256 is the
payload that must not change under the same key (a different body answers 422).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder import aws
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest.service import Answer
from braze_forwarder.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def checked_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise RequestRejected(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 printable ASCII characters without spaces",
        )
    return value


def once(
    key: str,
    *,
    client: str,
    route: str,
    body_sha256: str,
    table: str,
    ttl_seconds: int,
    lambda_context: LambdaContext | None,
    compute: Callable[[], Answer],
) -> tuple[Answer, bool]:
    """Run compute once per (client, route, key); return its answer and whether this was a replay."""
    # Powertools' idempotency utility is imported by the requests that carry a key, not at cold
    # start: most requests have none and never use it (~7 ms of CPU in every cold start, `make bench`).
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    run = _idempotent_runner(table, ttl_seconds)
    # None on purpose (the config is shared): it clears the last request's context, Powertools' own default.
    run.config.register_lambda_context(lambda_context)  # type: ignore[arg-type]  # its hint omits None
    computed: list[Answer] = []

    def compute_and_keep() -> dict[str, Any]:
        answer = compute()
        computed.append(answer)
        return {"status": answer.status, "body": answer.body}

    request = {"client": client, "route": route, "key": key, "body_sha256": body_sha256}
    try:
        stored = run(request=request, compute=compute_and_keep)
    except IdempotencyValidationError:
        raise RequestRejected(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different body in the last 24 hours",
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise RequestRejected(
            409,
            "request_in_progress",
            "a request with this Idempotency-Key is still being processed",
            {"Retry-After": "1"},
        ) from None
    except IdempotencyPersistenceLayerError:
        if computed:
            # The objects are queued; only remembering the answer failed. Answer truthfully rather
            # than invite a retry that would queue everything again.
            logger.warning("could not save the idempotency record after queueing")
            return computed[0], False
        raise RequestRejected(
            503,
            "idempotency_store_unavailable",
            "the idempotency store cannot be reached; retry",
            {"Retry-After": "5"},
        ) from None
    return Answer(stored["status"], stored["body"]), stored.get("replayed", False)


if TYPE_CHECKING:  # only for the type checker: no class to build at cold start

    class _Runner(Protocol):
        """The idempotent function, with its config kept on it (each call registers the Lambda context)."""

        config: IdempotencyConfig

        def __call__(self, *, request: dict[str, str], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]: ...


@functools.cache
def _idempotent_runner(table: str, ttl_seconds: int) -> _Runner:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    config = IdempotencyConfig(
        event_key_jmespath="[client, route, key]",
        payload_validation_jmespath="body_sha256",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=ttl_seconds,
        response_hook=lambda response, _record: {**response, "replayed": True},
    )
    persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=aws.client("dynamodb"))

    @idempotent_function(data_keyword_argument="request", config=config, persistence_store=persistence)
    def run(*, request: dict[str, str], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return compute()

    run.config = config
    return run


def reset() -> None:
    _idempotent_runner.cache_clear()

"""Lazily created, cached boto3 clients, all from one session.

Clients are built on first use, not at import, so a cold start pays only for the clients it needs
and moto can patch them in tests. Endpoints come from boto3's own configuration
(AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, ...): the local stack points them at moto's server and
no code here knows the difference.

One session for every client: a session loads botocore's endpoint rules, partitions and service
list once and keeps them, so each further client only loads its own service model. A session per
client (and Powertools' get_secret makes its own) loaded them again each time: about 50 ms of CPU
per client on a cold start (`make bench`, cold-start table). The session reads DynamoDB's model
from this package's cut-down copy (botocore_models/, written by `make models`): only the operations
called here, no documentation, a quarter of the parse.

Also here: DynamoDB's batch calls with their retries of what DynamoDB leaves unprocessed, written
once for the ledger, the attribute state and the import records.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

_CLIENT_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=32,
)
# A session is not thread-safe (its clients are): the sender's Braze threads may create clients.
_session_lock = threading.Lock()


# Service models cut to the operations this package calls (layers/shared/trim_botocore_models.py):
# DynamoDB's full model took ~9 ms of CPU to parse on the first client of every cold start.
_MODELS = Path(__file__).resolve().parent / "botocore_models"


@functools.cache
def _session() -> boto3.session.Session:
    core = botocore.session.Session()
    searched_too = core.get_config_variable("data_path")  # AWS_DATA_PATH, if someone set it
    core.set_config_variable("data_path", os.pathsep.join(filter(None, (str(_MODELS), searched_too))))
    return boto3.session.Session(botocore_session=core)


_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    try:
        return _clients[service]
    except KeyError:
        pass
    with _session_lock:  # checked again under the lock: threads that missed together make one client
        if service not in _clients:
            _clients[service] = _session().client(service, config=_CLIENT_CONFIG)
        return _clients[service]


def share_session_with_powertools() -> None:
    """Give Powertools' get_secret this session's Secrets Manager client, unless it already has one.

    Call before parameters.get_secret: its default provider would otherwise build its client in a
    session of its own. Cheap when already done; after parameters.clear_caches() it is done again.
    """
    from aws_lambda_powertools.utilities.parameters import secrets

    if "secrets" not in secrets.DEFAULT_PROVIDERS:
        secrets.DEFAULT_PROVIDERS["secrets"] = secrets.SecretsProvider(boto3_client=client("secretsmanager"))


def reset() -> None:
    """Forget every cached client and the session (tests switch between moto mocks)."""
    with _session_lock:
        _clients.clear()
        _session.cache_clear()


# ---------------------------------------------------------------------- DynamoDB batches

BATCH_GET_KEYS = 100  # BatchGetItem's limit
BATCH_WRITE_ITEMS = 25  # BatchWriteItem's limit
_BATCH_ATTEMPTS = 5


def batch_get(dynamodb: Any, table: str, keys: Sequence[dict[str, Any]], **read: Any) -> Iterator[dict[str, Any]]:
    """Every item of `table` found for `keys`, BatchGetItem by BatchGetItem; what DynamoDB leaves
    unprocessed (throttling) is asked again with backoff. `read`: ConsistentRead, ProjectionExpression."""
    for start in range(0, len(keys), BATCH_GET_KEYS):
        request: dict[str, Any] = {table: {"Keys": list(keys[start : start + BATCH_GET_KEYS]), **read}}
        for attempt in range(_BATCH_ATTEMPTS):
            response = dynamodb.batch_get_item(RequestItems=request)
            yield from response.get("Responses", {}).get(table, [])
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.05 * 2**attempt)
        else:
            raise RuntimeError(f"DynamoDB left keys of {table} unread after {_BATCH_ATTEMPTS} attempts")


def batch_put(dynamodb: Any, table: str, items: Sequence[dict[str, Any]], attempts: int = _BATCH_ATTEMPTS) -> None:
    """Put every item, BatchWriteItem by BatchWriteItem; unprocessed ones are written again with backoff."""
    for start in range(0, len(items), BATCH_WRITE_ITEMS):
        request: dict[str, Any] = {
            table: [{"PutRequest": {"Item": item}} for item in items[start : start + BATCH_WRITE_ITEMS]]
        }
        for attempt in range(attempts):
            response = dynamodb.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}
            if not request:
                break
            time.sleep(0.05 * 2**attempt)
        else:
            raise RuntimeError(f"DynamoDB left items of {table} unwritten after {attempts} attempts")

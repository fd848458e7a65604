"""Lazily created, cached boto3 clients.

Clients are built on first use, not at import, so a cold start pays only for the clients it needs
and moto can patch them in tests. Endpoints come from boto3's own configuration
(AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, ...): the local stack points them at moto's server and
no code here knows the difference.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

_CLIENT_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=32,
)


@functools.cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CLIENT_CONFIG)


def reset() -> None:
    """Forget every cached client (tests switch between moto mocks)."""
    client.cache_clear()

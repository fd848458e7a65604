"""The sender's half of the store delivery tests (test_app_store_delivery.py, test_google_play_delivery.py):
take what the webhook queued, hand it to the sender as SQS delivers it, and let SQS deliver it again
after a failed attempt."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from local.braze_sandbox import BrazeSandbox, ScriptedResponse
from local.resources import LocalStack
from tests.conftest import LambdaContextStub, load_event, use_sender_environment


def queued_messages(queue_url: str) -> list[dict[str, Any]]:
    """Every message in the queue, received (and so hidden) but not deleted, as SQS hands them out."""
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        messages += batch
    return messages


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The SQS event that hands `messages` to the sender."""
    event = load_event("braze_sender_sqs.json")
    template = event["Records"][0]
    event["Records"] = [{**template, "messageId": m["MessageId"], "body": m["Body"]} for m in messages]
    return event


def deliver(sender: Any, messages: list[dict[str, Any]]) -> list[str]:
    """One sender invocation for `messages`; the ids of those it failed back to SQS, sorted."""
    answer = sender.lambda_handler(sqs_event(messages), LambdaContextStub(remaining_millis=60_000))
    return sorted(failure["itemIdentifier"] for failure in answer["batchItemFailures"])


def deliver_after_a_failed_delivery(
    monkeypatch: pytest.MonkeyPatch,
    stack: LocalStack,
    braze: BrazeSandbox,
    braze_key: str,
    messages: list[dict[str, Any]],
    faults: list[ScriptedResponse],
) -> None:
    """The sender against `braze`, whose next answers are `faults`, one for each of the sender's attempts
    (use_sender_environment allows 3): the first delivery fails every message back to SQS, which
    delivers them all again, and the second delivers them."""
    use_sender_environment(monkeypatch, stack, braze.url, braze_key)
    from functions.braze_sender import app as sender

    sender.reset()
    braze.script(*faults)
    try:
        assert deliver(sender, messages) == sorted(m["MessageId"] for m in messages)
        assert deliver(sender, messages) == []
    finally:
        sender.reset()

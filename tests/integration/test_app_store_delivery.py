"""App Store notifications from Apple's POST to a Braze profile, under Apple's retries, two notifications
of one transaction and Braze faults with SQS's redelivery: every payment arrives, none twice. Ingest and
sender in-process (moto), Braze the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from local.app_store_ca import build_chain
from local.braze_sandbox import BrazeSandbox, SandboxConfig, ScriptedResponse
from tests.app_store_notifications import APP_ACCOUNT_TOKEN, ORIGINAL_TRANSACTION, notification_body, settings_for
from tests.conftest import use_function_environment
from tests.store_delivery import deliver_after_a_failed_delivery, queued_messages
from tests.webhook_signing import api_event

pytestmark = pytest.mark.clock

BRAZE_KEY = "braze-rest-key-app-store-0000"
CHAIN = build_chain()


@pytest.fixture
def braze() -> Iterator[BrazeSandbox]:
    with BrazeSandbox(SandboxConfig(api_key=BRAZE_KEY, seed=7)) as sandbox:
        yield sandbox


def test_payments_under_apples_retries_and_braze_faults_arrive_once_each(aws_stack, monkeypatch, lambda_context, braze):
    use_function_environment(monkeypatch, aws_stack, "IngestApiFunction", **settings_for(CHAIN))
    from functions.ingest_api import app as ingest

    renewals = [
        notification_body(CHAIN, "DID_RENEW", transaction_fields={"transactionId": f"20000000000001{n:02d}"})
        for n in range(4)
    ]
    offer_code = {"transactionId": "2000000000000200"}
    first_buy = [
        notification_body(CHAIN, "SUBSCRIBED", "INITIAL_BUY", transaction_fields=offer_code),
        notification_body(CHAIN, "OFFER_REDEEMED", "INITIAL_BUY", transaction_fields=offer_code),
    ]
    no_token = {"appAccountToken": None, "transactionId": "2000000000000300"}
    anonymous = notification_body(CHAIN, "DID_RENEW", transaction_fields=no_token, renewal_fields=no_token)
    answers = []
    for body in [*renewals, *renewals, *first_buy, anonymous]:  # Apple retries every renewal once
        result = ingest.lambda_handler(api_event("app_store", body, None), lambda_context)
        answers.append(json.loads(result["body"])["message"])
    assert answers == ["queued"] * 4 + ["duplicate"] * 4 + ["queued", "ignored", "queued"]

    messages = queued_messages(aws_stack.refs["EventsQueue"])
    assert len(messages) == 6

    faults = [
        ScriptedResponse(status=500),
        ScriptedResponse(drop_connection=True),
        ScriptedResponse(status=503),
    ]
    # Braze fails every attempt of the first delivery (500, a dropped connection, 503): each message is
    # failed back to SQS, which delivers it again.
    deliver_after_a_failed_delivery(monkeypatch, aws_stack, braze, BRAZE_KEY, messages, faults)

    user = braze.profile(APP_ACCOUNT_TOKEN)
    assert user is not None
    assert user["purchases"]["pro.monthly"]["count"] == 5  # four renewals and one first purchase
    assert user["total_revenue"] == pytest.approx(5 * 4.99)
    assert user["custom_events"]["subscription_renewed"]["count"] == 4
    assert user["custom_events"]["subscription_started"]["count"] == 1
    assert user["attributes"]["app_store_subscription_status"] == "active"
    alias = braze.alias_profile(ORIGINAL_TRANSACTION, "app_store_original_transaction_id")
    assert alias is not None and alias["purchases"]["pro.monthly"]["count"] == 1

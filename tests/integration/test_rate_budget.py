"""The rate budget every sender invocation shares: its DynamoDB counter (moto), and several senders
at once against the Braze sandbox enforcing a scaled-down limit, with the budget and without."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from braze_forwarder.delivery.rate_budget import WINDOW_SECONDS, DynamoBudgetStore, Lease, SharedRateBudget
from braze_forwarder.delivery.sender import Sender
from local.braze_sandbox import BrazeSandbox, SandboxConfig, ScriptedResponse
from local.rate_budget_drill import backlog, drill, drill_settings, invocation_parts
from tests.conftest import metric_values

# Budget windows are epoch-aligned and "blocked until" is an epoch time: run on other days too.
pytestmark = pytest.mark.clock

BRAZE_KEY = "braze-rest-key-0123456789"
# Braze's /users/track limit scaled down 40×: 75 requests per 3 s (25/s). The budget is 20/s, 0.8 of it.
SANDBOX_LIMIT = {"rate_limit_requests": 75, "rate_limit_window_seconds": 3.0}
BUDGET_PER_SECOND = 20.0
RATE = {"track_requests_per_second": BUDGET_PER_SECOND}


@pytest.fixture
def braze() -> Iterator[BrazeSandbox]:
    config = SandboxConfig(api_key=BRAZE_KEY, seed=1, latency_seconds=0.01, **SANDBOX_LIMIT)
    with BrazeSandbox(config) as sandbox:
        yield sandbox


@pytest.fixture
def stack(aws_stack):
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws_stack.refs["BrazeApiKeySecret"], SecretString=BRAZE_KEY
    )
    return aws_stack


@pytest.fixture
def store(stack) -> DynamoBudgetStore:
    return DynamoBudgetStore(stack.refs["RateBudgetTable"])


# ---------------------------------------------------------------- the counter


def test_a_window_grants_its_budget_and_no_more_then_the_next_window_starts_afresh(store):
    now = 500.1  # in budget window 1000 of the half-second track windows
    granted = [store.lease("track", 1000, 4, 10, now).granted for _ in range(4)]

    assert granted == [4, 4, 2, 0]  # the last lease gets what was left, then nothing
    assert store.lease("track", 1000, 4, 10, now) == Lease(0, retry_at=500.5)
    assert store.lease("track", 1001, 4, 10, 500.5) == Lease(4)


def test_families_count_apart(store):
    assert store.lease("track", 1000, 5, 5, 1000.5) == Lease(5)

    assert store.lease("user_data", 100, 5, 5, 1000.5) == Lease(5)
    assert store.lease("track", 1000, 1, 5, 1000.5).granted == 0


def test_blocked_until_refuses_every_lease_before_it_and_a_shorter_block_does_not_shorten_it(store):
    store.block("track", 1003.5)
    store.block("track", 1002.0)

    assert store.lease("track", 1001, 4, 10, 1001.0) == Lease(0, retry_at=1003.5)
    assert store.lease("track", 1003, 4, 10, 1003.4) == Lease(0, retry_at=1003.5)
    assert store.lease("track", 1003, 4, 10, 1003.5) == Lease(4)
    assert store.lease("user_data", 100, 4, 10, 1001.0) == Lease(4)  # another family is not blocked


def test_window_items_carry_a_ttl(store, stack):
    now = time.time()
    store.lease("track", int(now // WINDOW_SECONDS["track"]), 1, 10, now)

    [item] = boto3.client("dynamodb").scan(TableName=stack.refs["RateBudgetTable"])["Items"]
    assert time.time() < float(item["expires_at"]["N"]) <= time.time() + 2 * 3600


# ---------------------------------------------------------------- several senders at once


def test_concurrent_senders_drain_a_backlog_at_the_budget_without_bouncing_off_429s(stack, braze):
    # 10 objects a call rather than 75: the same calls for Braze's limit, less work for a shared machine.
    shared = drill(stack, braze, budget_enabled=True, senders=4, calls_per_sender=30, objects_per_call=10, **RATE)
    braze.reset()
    alone = drill(stack, braze, budget_enabled=False, senders=4, calls_per_sender=30, objects_per_call=10, **RATE)

    for result in (shared, alone):
        assert result.objects_delivered == 4 * 30 * 10 and result.objects_failed == 0
    assert shared.delivered_calls_per_second >= 0.8 * BUDGET_PER_SECOND
    assert shared.rate_limited <= 0.01 * shared.calls
    assert alone.rate_limited >= 10 * max(1, shared.rate_limited)  # each sender alone learns from its own 429s
    # A write per lease of 2 calls (a fifth of this small budget's window, 10); per window, each
    # invocation waiting for the next one a refused write (billed all the same), and the window's opening.
    windows = shared.seconds / WINDOW_SECONDS["track"] + 2
    assert 0 < shared.budget_writes <= shared.calls / 2 + (4 + 2) * windows
    assert alone.budget_writes == 0


def test_a_429_seen_by_one_sender_holds_back_the_others(stack, braze):
    refused, other_calls = _one_told_429_then_another_sends(stack, braze, budget_enabled=True)

    assert [r.status for r in other_calls] == [201]
    assert other_calls[0].time - refused.time >= 1.9  # it waited for Braze's reset without a 429 of its own


def test_without_the_budget_the_other_sender_is_not_held_back(stack, braze):
    refused, other_calls = _one_told_429_then_another_sends(stack, braze, budget_enabled=False)

    assert [r.status for r in other_calls] == [201]
    assert other_calls[0].time - refused.time < 1.0


def _one_told_429_then_another_sends(stack, braze, *, budget_enabled: bool):
    """One sender gets a 429 asking for 2 s; a second sender, its own environment, then sends one
    object. The 429 and the second sender's calls, as the sandbox saw them."""
    config = drill_settings(stack, braze.url, budget_enabled=budget_enabled, objects_per_call=1, in_flight=1)
    braze.script(
        ScriptedResponse(status=429, body={"message": "Rate limit exceeded"}, headers={"X-Ratelimit-Retry-After": "2"})
    )
    told = threading.Thread(
        target=lambda: Sender(config, invocation_parts(config)).deliver(backlog("told", 1), lambda: 30.0)
    )
    told.start()
    [refused] = _wait_for(lambda: [r for r in braze.requests if r.status == 429])
    Sender(config, invocation_parts(config)).deliver(backlog("other", 1), lambda: 30.0)
    told.join()
    return refused, [r for r in braze.requests if _users(r) == {"other-0"}]


def test_a_sender_whose_deadline_comes_before_the_block_ends_fails_its_messages_back_to_the_queue(stack, braze):
    config = drill_settings(stack, braze.url, budget_enabled=True, objects_per_call=1, in_flight=1)
    DynamoBudgetStore(config.rate_budget_table).block("track", time.time() + 20)

    outcome = Sender(config, invocation_parts(config)).deliver(backlog("late", 1), lambda: 5.0)

    assert outcome.failed == 1 and outcome.failed_message_ids == ["late-0"]
    assert braze.requests == []


# ---------------------------------------------------------------- the store failing


class _BrokenStore:
    def __init__(self) -> None:
        self.calls = 0

    def lease(self, family: str, window: int, requests: int, window_requests: int, now: float) -> Lease:
        self.calls += 1
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    def block(self, family: str, until: float) -> None:
        self.calls += 1
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


def test_a_failing_store_does_not_stop_delivery_and_is_counted(stack, braze, capsys):
    from braze_forwarder.observability import metrics

    config = drill_settings(stack, braze.url, budget_enabled=True, objects_per_call=1, in_flight=2)
    broken = _BrokenStore()
    parts = invocation_parts(config)
    budget = SharedRateBudget(broken, {"track": 20, "user_data": 20}, 10)
    parts = type(parts)(parts.client, parts.api_key, parts.ledger, parts.rejects, order=parts.order, budget=budget)

    outcome = Sender(config, parts).deliver(backlog("store-down", 6), lambda: 30.0)
    metrics.flush_metrics()

    assert outcome.delivered == 6 and outcome.failed_message_ids == []
    assert broken.calls == 1  # it steps aside after the first failure instead of trying on every call
    assert metric_values(capsys.readouterr().out, "RateBudgetUnavailable") == [1.0]


def _wait_for(found, timeout: float = 10.0):
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        result = found()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError("not seen in time")


def _users(request) -> set[str]:
    body = request.json if isinstance(request.json, dict) else {}
    return {obj.get("external_id") for objects in body.values() if isinstance(objects, list) for obj in objects}


# ---------------------------------------------------------------- one environment's holder


class _CountingStore:
    """The moto-backed store, with the calls it was asked for."""

    def __init__(self, store: DynamoBudgetStore) -> None:
        self.store = store
        self.leases: list[int] = []
        self.blocks: list[float] = []

    def lease(self, family: str, window: int, requests: int, window_requests: int, now: float) -> Lease:
        lease = self.store.lease(family, window, requests, window_requests, now)
        self.leases.append(lease.granted)
        return lease

    def block(self, family: str, until: float) -> None:
        self.blocks.append(until)
        self.store.block(family, until)


def test_the_calls_of_one_environment_spend_one_lease_before_writing_again(store):
    counting = _CountingStore(store)
    budget = SharedRateBudget(counting, {"track": 400, "user_data": 100}, 10, clock=lambda: 500.1)
    deadline = time.monotonic() + 10
    # Nine calls from several threads at once, all in budget window 1000.
    threads = [threading.Thread(target=budget.take, args=("track", deadline)) for _ in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert counting.leases == [10]


def test_a_hold_drops_what_was_leased_and_blocks_the_family_for_everyone(store):
    told = SharedRateBudget(_CountingStore(store), {"track": 400, "user_data": 100}, 10)
    other = SharedRateBudget(store, {"track": 400, "user_data": 100}, 10)
    assert told.take("identify", time.monotonic() + 1) is not None

    told.hold("merge", 5.0)  # the user-data family: identify, delete, alias and merge together

    for budget in (told, other):
        assert budget.take("delete", time.monotonic() + 1) is None  # not before the block ends
        assert budget.take("track", time.monotonic() + 1) is not None  # another family goes on


def test_after_the_store_failed_the_budget_tries_it_again_later(store, monkeypatch):
    from braze_forwarder.delivery import rate_budget

    monkeypatch.setattr(rate_budget, "STORE_RETRY_SECONDS", 0.2)
    broken = _BrokenStore()
    budget = SharedRateBudget(broken, {"track": 400, "user_data": 100}, 10)

    assert budget.take("track", time.monotonic() + 1) == pytest.approx(0, abs=0.1)
    assert budget.take("track", time.monotonic() + 1) == pytest.approx(0, abs=0.1)
    assert broken.calls == 1
    time.sleep(0.25)
    budget.take("track", time.monotonic() + 1)
    assert broken.calls == 2


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"rate_budget_enabled": True, "rate_budget_table": ""}, "RATE_BUDGET_TABLE"),
        ({"braze_track_requests_per_second": 1500}, "BRAZE_TRACK_REQUESTS_PER_SECOND"),  # Braze allows 1,000
        ({"braze_user_data_requests_per_minute": 25_000}, "BRAZE_USER_DATA_REQUESTS_PER_MINUTE"),  # and 20,000
    ],
)
def test_budget_settings_that_cannot_work_fail_the_cold_start(stack, settings, named):
    from braze_forwarder.config import ConfigurationError

    valid = drill_settings(stack, "http://127.0.0.1:9", budget_enabled=True)
    with pytest.raises(ConfigurationError, match=named):
        dataclasses.replace(valid, **settings)

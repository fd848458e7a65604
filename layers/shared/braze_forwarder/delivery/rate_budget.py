"""One Braze request budget per endpoint family, shared by every concurrent sender invocation.

Braze counts requests per workspace: /users/track 3,000 per 3 s, the identify/delete/alias/merge
family 20,000 per minute (BRAZE_API.md §2.9). Invocations that each learn the limit from their own
429s waste calls and drain a backlog in bursts; here they draw from one counter instead.

The counter is one DynamoDB item per family holding the current budget window (a fixed window of
`window_seconds`, aligned to the epoch), the requests leased in it, and "blocked until" — a time
Braze named in a 429 (or in a success that spent its window), before which nobody leases. An
invocation leases a block of requests per write (RATE_BUDGET_LEASE_REQUESTS), not one per call; a lease is good only
in its window, so what an invocation leased and did not use lapses with the window.

The budget windows are a sixth of Braze's own (0.5 s of its 3 s, 10 s of its minute). Braze's
window starts at a moment we cannot see, so one of its windows can hold all of six of ours plus
the part of a seventh: 7/6 of the budget, which stays under Braze's figure while the budget is at
most 6/7 (86 %) of it. With windows as long as Braze's the worst case would be twice the budget.

A failing store must not stop delivery: the budget then steps aside for a while (each invocation
alone again, its own rate gate and Braze's 429s), logs it and counts `RateBudgetUnavailable`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from botocore.exceptions import ClientError

from braze_forwarder import aws
from braze_forwarder.config import SenderSettings
from braze_forwarder.observability import MetricUnit, logger, metrics

TRACK = "track"
USER_DATA = "user_data"
# Which budget each kind of call draws from: kinds Braze counts together share a family.
FAMILY_OF_KIND: Mapping[str, str] = {
    "track": TRACK,
    "identify": USER_DATA,
    "delete": USER_DATA,
    "alias": USER_DATA,
    "merge": USER_DATA,
}
# Budget window per family: a sixth of Braze's 3-second track window and of its user-data minute.
WINDOW_SECONDS: Mapping[str, float] = {TRACK: 0.5, USER_DATA: 10.0}
# After the store failed, how long every call goes ahead without it before the store is tried again.
STORE_RETRY_SECONDS = 30.0
# A lease takes at most this share of a window's budget, so a few invocations can share a small one.
_LEASE_SHARE_OF_WINDOW = 5
_LEASE_ATTEMPTS = 4
_NOT_BLOCKED = "(attribute_not_exists(blocked_until) OR blocked_until <= :now)"
# Window items outlive their window by this much before DynamoDB's TTL may delete them.
_ITEM_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Lease:
    """Requests granted in a window; when none were, the epoch time worth trying again."""

    granted: int
    retry_at: float = 0.0


class BudgetStore(Protocol):
    def lease(self, family: str, window: int, requests: int, window_requests: int, now: float) -> Lease:
        """Take up to `requests` of the family's `window_requests` in budget window `window`."""
        ...

    def block(self, family: str, until: float) -> None:
        """Nobody leases in the family before `until` (epoch seconds)."""
        ...


class DynamoBudgetStore:
    """The counters in the stack's RateBudgetTable: one item per family, keyed `family`."""

    def __init__(self, table: str, window_seconds: Mapping[str, float] = WINDOW_SECONDS) -> None:
        self.table = table
        self.window_seconds = window_seconds

    def lease(self, family: str, window: int, requests: int, window_requests: int, now: float) -> Lease:
        window_end = (window + 1) * self.window_seconds[family]
        values = {":now": _n(now), ":window": _n(window), ":expires": _n(int(window_end) + _ITEM_TTL_SECONDS)}
        for _ in range(_LEASE_ATTEMPTS):
            # Add to the window's count if it stays within budget; else learn why not from the item.
            old = self._update(
                family,
                "ADD used :requests SET expires_at = :expires",
                f"window_id = :window AND used <= :room AND {_NOT_BLOCKED}",
                {**values, ":requests": _n(requests), ":room": _n(window_requests - requests)},
            )
            if old is None:
                return Lease(requests)
            blocked_until = _number(old, "blocked_until")
            if blocked_until > now:
                return Lease(0, blocked_until)
            current = int(_number(old, "window_id", -1))
            if current > window:  # another host's clock is ahead: its window is the current one
                return Lease(0, current * self.window_seconds[family])
            if current == window:
                room = window_requests - int(_number(old, "used"))
                if room <= 0:
                    return Lease(0, window_end)
                requests = min(requests, room)
                continue
            # A window before this one: start this window's count, unless another invocation just did.
            opened = self._update(
                family,
                "SET window_id = :window, used = :requests, expires_at = :expires",
                f"(attribute_not_exists(window_id) OR window_id < :window) AND {_NOT_BLOCKED}",
                {**values, ":requests": _n(requests)},
            )
            if opened is None:
                return Lease(requests)
        return Lease(0, now + 0.05)  # the item changed under every attempt: others are leasing

    def block(self, family: str, until: float) -> None:
        # Refused when it is already blocked at least as long.
        self._update(
            family,
            "SET blocked_until = :until, expires_at = :expires",
            "attribute_not_exists(blocked_until) OR blocked_until < :until",
            {":until": _n(until), ":expires": _n(int(until) + _ITEM_TTL_SECONDS)},
        )

    def _update(
        self, family: str, update: str, condition: str, values: dict[str, dict[str, str]]
    ) -> dict[str, dict[str, str]] | None:
        """One conditional UpdateItem of the family's item: None when applied, else the item as it was."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self.table,
                Key={"family": {"S": family}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return dict(exc.response.get("Item") or {})
        return None


class RateBudget(Protocol):
    def take(self, kind: str, deadline: float) -> float | None:
        """Wait for a request of `kind` in the budget; the seconds waited, or None if not before
        `deadline` (time.monotonic)."""
        ...

    def hold(self, kind: str, seconds: float) -> None:
        """Braze said to wait `seconds` before the next request of this kind's family."""
        ...


class NoBudget:
    """The budget switched off: every invocation alone with its own rate gate and Braze's 429s."""

    def take(self, kind: str, deadline: float) -> float | None:
        return 0.0

    def hold(self, kind: str, seconds: float) -> None:
        pass


@dataclass
class _Tokens:
    window: int = -1
    count: int = 0


class SharedRateBudget:
    """One execution environment's share of the budget: requests leased from the store, per family.

    Thread-safe: the calls of an invocation in flight take from the same leased block, and one of
    them at a time leases the next block (or waits for the next window) while the others queue.
    """

    def __init__(
        self,
        store: BudgetStore,
        window_requests: Mapping[str, int],
        lease_requests: int,
        *,
        window_seconds: Mapping[str, float] = WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.window_requests = dict(window_requests)
        self.window_seconds = window_seconds
        self.lease_requests = {
            family: max(1, min(lease_requests, requests // _LEASE_SHARE_OF_WINDOW))
            for family, requests in self.window_requests.items()
        }
        self._clock = clock
        self._locks = {family: threading.Lock() for family in self.window_requests}
        self._tokens = {family: _Tokens() for family in self.window_requests}
        self._state_lock = threading.Lock()
        self._store_failed_at: float | None = None  # time.monotonic of the last failure

    def take(self, kind: str, deadline: float) -> float | None:
        family = FAMILY_OF_KIND.get(kind)
        if family not in self._locks or self._stepped_aside():
            return 0.0
        started = time.monotonic()
        seconds = self.window_seconds[family]
        with self._locks[family]:
            while True:
                now = self._clock()
                window = int(now // seconds)
                tokens = self._tokens[family]
                if tokens.window == window and tokens.count > 0:
                    tokens.count -= 1
                    return time.monotonic() - started
                try:
                    lease = self.store.lease(
                        family, window, self.lease_requests[family], self.window_requests[family], now
                    )
                except Exception:
                    self._step_aside("lease")
                    return time.monotonic() - started
                if lease.granted:
                    self._tokens[family] = _Tokens(window, lease.granted)
                    continue
                pause = max(0.0, lease.retry_at - self._clock())
                if time.monotonic() + pause > deadline:
                    return None
                time.sleep(pause)

    def hold(self, kind: str, seconds: float) -> None:
        family = FAMILY_OF_KIND.get(kind)
        if family not in self._locks:
            return
        # What this environment leased in the window Braze calls spent would only draw more 429s.
        self._tokens[family] = _Tokens()
        if seconds <= 0 or self._stepped_aside():
            return
        try:
            self.store.block(family, self._clock() + seconds)
        except Exception:
            self._step_aside("block")

    def _stepped_aside(self) -> bool:
        with self._state_lock:
            failed_at = self._store_failed_at
            if failed_at is None:
                return False
            if time.monotonic() - failed_at < STORE_RETRY_SECONDS:
                return True
            self._store_failed_at = None
            return False

    def _step_aside(self, operation: str) -> None:
        with self._state_lock:
            already = self._store_failed_at is not None
            self._store_failed_at = time.monotonic()
        if not already:
            logger.warning(
                "the shared rate budget is unavailable; sending without it for a while",
                extra={"operation": operation, "retry_after_seconds": STORE_RETRY_SECONDS},
                exc_info=True,
            )
            metrics.add_metric(name="RateBudgetUnavailable", unit=MetricUnit.Count, value=1)


def window_requests(config: SenderSettings) -> dict[str, int]:
    """Each family's requests per budget window, from the deployment's per-second/per-minute figures."""
    return {
        TRACK: max(1, int(config.braze_track_requests_per_second * WINDOW_SECONDS[TRACK])),
        USER_DATA: max(1, int(config.braze_user_data_requests_per_minute / 60 * WINDOW_SECONDS[USER_DATA])),
    }


def budget_for(config: SenderSettings) -> RateBudget:
    """The deployment's budget: shared through RATE_BUDGET_TABLE, or none when it is switched off."""
    if not config.rate_budget_enabled:
        return NoBudget()
    return SharedRateBudget(
        DynamoBudgetStore(config.rate_budget_table), window_requests(config), config.rate_budget_lease_requests
    )


def _number(item: Mapping[str, Mapping[str, str]], name: str, default: float = 0.0) -> float:
    value = item.get(name)
    return float(value["N"]) if value and "N" in value else default


def _n(value: float) -> dict[str, str]:
    return {"N": repr(round(value, 3)) if isinstance(value, float) else str(value)}

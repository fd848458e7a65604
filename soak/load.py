"""The soak's clients: POST /users/track through the local API, as integrations would.

Every object is an event or a purchase (never an attributes object: coalescing folds a user's
attributes objects into one, which would legitimately merge two soak objects) and carries a unique
`properties.soak_id`, so Braze's recorded requests count each object's deliveries. Request sizes
are mixed, a small share of objects is invalid (the API rejects them with a reason), a small share
of users is blocked in the Braze sandbox (Braze rejects them per object), and a few requests are
entirely invalid (400) or carry a wrong key (401).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

# Sizes of one request, as (share, smallest, largest): the API takes any number of objects.
REQUEST_SIZES = ((0.40, 1, 10), (0.45, 11, 75), (0.15, 76, 400))
USERS = 5000
BLOCKED_USERS = tuple(f"soak-blocked-{n}" for n in range(20))
BLOCKED_SHARE = 0.005  # objects of a user Braze refuses (BLACKLISTED_EXTERNAL_USER_ID)
INVALID_SHARE = 0.01  # objects the API refuses, with a reason
ALL_INVALID_REQUEST_SHARE = 0.004  # requests with no valid object: 400
WRONG_KEY_REQUEST_SHARE = 0.002  # requests with a key the API does not know: 401
ATTEMPTS = 6  # per request, on 429, 5xx and connection errors, with the same Idempotency-Key
EVENT_TIME = "2026-05-01T12:00:00Z"


@dataclass
class PlannedRequest:
    number: int
    objects: list[tuple[str, dict[str, Any]]]  # (array, object) in request order
    wrong_key: bool = False


@dataclass
class LoadResult:
    sent: int = 0
    requests: int = 0
    accepted: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)  # soak_id → reason
    statuses: Counter[int] = field(default_factory=Counter)  # final status per request
    retried: Counter[int] = field(default_factory=Counter)  # status (0: no answer) → attempts retried
    seconds: float = 0.0


def plan_requests(objects: int, seed: int, run_id: str) -> Iterator[PlannedRequest]:
    """The requests that carry `objects` objects, the same for the same seed."""
    rng = random.Random(seed)
    made = 0
    number = 0
    while made < objects:
        size = min(_request_size(rng), objects - made)
        all_invalid = rng.random() < ALL_INVALID_REQUEST_SHARE
        batch = [_object(rng, f"{run_id}-{made + n:07d}", all_invalid) for n in range(size)]
        yield PlannedRequest(number, batch, wrong_key=rng.random() < WRONG_KEY_REQUEST_SHARE)
        made += size
        number += 1


def run_clients(
    api_url: str,
    ingest_key: str,
    planned: Iterator[PlannedRequest],
    clients: int,
    on_progress: Callable[[LoadResult], None] | None = None,
    timeout_seconds: float = 60.0,
) -> LoadResult:
    """Send every planned request from `clients` threads; return what the API accepted and refused.
    `on_progress` sees the result after every request (under the clients' lock: keep it short)."""
    result = LoadResult()
    lock = threading.Lock()
    started = time.monotonic()

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                request = next(planned, None)
            if request is None:
                break
            status, body, retried = _send(session, api_url, ingest_key, request, timeout_seconds)
            with lock:
                _settle(result, request, status, body)
                result.retried.update(retried)
                if on_progress is not None:
                    on_progress(result)
        session.close()

    threads = [threading.Thread(target=client, name=f"soak-client-{n}", daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    return result


def soak_id(obj: Any) -> str | None:
    properties = obj.get("properties") if isinstance(obj, dict) else None
    value = properties.get("soak_id") if isinstance(properties, dict) else None
    return value if isinstance(value, str) else None


def _request_size(rng: random.Random) -> int:
    draw = rng.random()
    for share, smallest, largest in REQUEST_SIZES:
        if draw < share:
            return rng.randint(smallest, largest)
        draw -= share
    return REQUEST_SIZES[-1][2]


def _object(rng: random.Random, identifier: str, invalid: bool) -> tuple[str, dict[str, Any]]:
    blocked = rng.random() < BLOCKED_SHARE
    user = rng.choice(BLOCKED_USERS) if blocked else f"soak-user-{rng.randrange(USERS)}"
    invalid = invalid or rng.random() < INVALID_SHARE
    properties = {"soak_id": identifier}
    if rng.random() < 0.5:
        event = {"external_id": user, "name": "soak_event", "time": EVENT_TIME, "properties": properties}
        if invalid:
            event["name"] = "$soak_event"  # Braze reserves names starting with $
        return "events", event
    purchase = {
        "external_id": user,
        "product_id": "soak_product",
        "currency": "USD",
        "price": 9.99,
        "quantity": 1,
        "time": EVENT_TIME,
        "properties": properties,
    }
    if invalid:
        purchase["currency"] = "DOLLARS"  # not an ISO 4217 code
    return "purchases", purchase


def _send(
    session: requests.Session, api_url: str, ingest_key: str, request: PlannedRequest, timeout_seconds: float
) -> tuple[int, dict[str, Any], list[int]]:
    """POST one request until it has a final answer; (status, body, statuses retried). Status 0: none came."""
    body: dict[str, list[dict[str, Any]]] = {}
    for array, obj in request.objects:
        body.setdefault(array, []).append(obj)
    key = "wrong-key" if request.wrong_key else ingest_key
    # The same key on every attempt: a retry of a request the API did queue queues nothing again.
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"soak-{uuid.uuid4()}"}
    status, answer, retried = 0, {}, []
    for attempt in range(ATTEMPTS):
        try:
            response = session.post(f"{api_url}/users/track", json=body, headers=headers, timeout=timeout_seconds)
            status, answer = response.status_code, _json(response)
        except requests.RequestException:
            status, answer = 0, {}
        if status != 429 and status < 500 and status != 0:
            break
        retried.append(status)
        time.sleep(min(5.0, 0.2 * 2**attempt))
    return status, answer, retried


def _settle(result: LoadResult, request: PlannedRequest, status: int, answer: dict[str, Any]) -> None:
    """Count one request's objects as accepted or rejected, with the API's reason."""
    result.requests += 1
    result.sent += len(request.objects)
    result.statuses[status] += 1
    # The API names refused objects by (input_array, index) within their array, as Braze does.
    refused: dict[tuple[str, int], str] = {}
    for error in answer.get("errors", []) if isinstance(answer.get("errors"), list) else []:
        if isinstance(error, dict):
            refused[(error.get("input_array"), error.get("index"))] = str(error.get("type"))
    positions: Counter[str] = Counter()
    for array, obj in request.objects:
        index = positions[array]
        positions[array] += 1
        identifier = soak_id(obj)
        assert identifier is not None
        if status == 202 and (array, index) not in refused:
            result.accepted.add(identifier)
        elif (array, index) in refused:
            result.rejected[identifier] = f"{status} {refused[(array, index)]}"
        else:
            result.rejected[identifier] = f"{status} {answer.get('type') or answer.get('message') or 'no answer'}"


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

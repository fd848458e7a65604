"""The soak's clients: POST /users/track and /users/delete through the local API, as integrations would.

Every object is an event or a purchase (never an attributes object: coalescing folds a user's
attributes objects into one, which would legitimately merge two soak objects) and carries a unique
`properties.soak_id`, so Braze's recorded requests count each object's deliveries. Request sizes
are mixed, a small share of objects is invalid (the API rejects them with a reason), a small share
of users is blocked in the Braze sandbox (Braze rejects them per object), and a few requests are
entirely invalid (400) or carry a wrong key (401).

About 1 % of the users are deleted (POST /users/delete with their external_id) while their objects are
in flight: a client of its own sends a request of the user's objects, deletes the user as soon as it
has the 202, and sends more of the user's objects as soon as the delete has its 202 (a
PlannedDeletion, handed to it when the load reaches it).
The user's other objects come from the other clients as usual, before, during or after the delete.
For every object and delete the client notes when it first sent the request and when the final 2xx
came back: the report orders each deleted user's objects against the delete by these times.
"""

from __future__ import annotations

import queue
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
DELETED_USER_SHARE = 0.01  # users deleted while their objects are in flight
# Deletions start between these shares of the objects sent, early enough that their fence (about 40 s
# in the soak) passes while the queue drains.
DELETIONS_FROM, DELETIONS_TO = 0.05, 0.6
DELETIONS_WAIT_SECONDS = 30.0  # the longest the deletions wait for their start signal
OBJECTS_AROUND_DELETE = (1, 6)  # objects of the user sent right before and right after its delete
ATTEMPTS = 6  # per request, on 429, 5xx and connection errors, with the same Idempotency-Key
EVENT_TIME = "2026-05-01T12:00:00Z"


@dataclass
class PlannedRequest:
    number: int
    objects: list[tuple[str, dict[str, Any]]]  # (array, object) in request order
    wrong_key: bool = False


@dataclass
class PlannedDeletion:
    """One client: `before` (the user's objects), then the user's delete, then `after`, each sent as
    soon as the previous one has its answer."""

    number: int
    user: str
    before: PlannedRequest
    after: PlannedRequest


@dataclass(frozen=True, slots=True)
class Timed:
    """A request's span as its client saw it: first attempt sent, final answer received (epoch s)."""

    sent: float
    answered: float


@dataclass
class LoadResult:
    sent: int = 0
    requests: int = 0
    accepted: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)  # soak_id → reason
    statuses: Counter[int] = field(default_factory=Counter)  # final status per request
    retried: Counter[int] = field(default_factory=Counter)  # status (0: no answer) → attempts retried
    seconds: float = 0.0
    # Deletions: each accepted object's user and span; each user's delete span (202 only) and the
    # users whose delete was refused (status).
    users: dict[str, str] = field(default_factory=dict)  # soak_id → external_id
    spans: dict[str, Timed] = field(default_factory=dict)  # soak_id → its request's span
    deletes: dict[str, Timed] = field(default_factory=dict)  # external_id → the delete's span
    deletes_refused: dict[str, int] = field(default_factory=dict)  # external_id → final status


def plan_requests(
    objects: int, seed: int, run_id: str, deleted_share: float = DELETED_USER_SHARE
) -> Iterator[PlannedRequest | PlannedDeletion]:
    """The requests that carry `objects` objects, the same for the same seed; `deleted_share` of the
    users are deleted on the way (PlannedDeletion), due between DELETIONS_FROM and DELETIONS_TO of the
    objects. A deletion's own objects come on top, drawn from a random source of their own: the other
    requests are the same with or without deletions."""
    rng = random.Random(seed)
    deletions_rng = random.Random(f"{seed}-deletions")
    doomed = [f"soak-user-{n}" for n in deletions_rng.sample(range(USERS), round(USERS * deleted_share))]
    spread = DELETIONS_TO - DELETIONS_FROM
    due = [int(objects * (DELETIONS_FROM + spread * n / len(doomed))) for n in range(len(doomed))]
    made = 0
    number = 0
    around = 0  # objects of the deletions
    while made < objects:
        while doomed and made >= due[0]:
            due.pop(0)
            user = doomed.pop(0)
            sides = []
            for _ in range(2):
                size = deletions_rng.randint(*OBJECTS_AROUND_DELETE)
                batch = [_object(deletions_rng, f"{run_id}-d{around + n:06d}", False, user) for n in range(size)]
                sides.append(PlannedRequest(number, batch))
                around += size
                number += 1
            yield PlannedDeletion(number, user, sides[0], sides[1])
        size = min(_request_size(rng), objects - made)
        all_invalid = rng.random() < ALL_INVALID_REQUEST_SHARE
        batch = [_object(rng, f"{run_id}-{made + n:07d}", all_invalid) for n in range(size)]
        yield PlannedRequest(number, batch, wrong_key=rng.random() < WRONG_KEY_REQUEST_SHARE)
        made += size
        number += 1


def run_clients(
    api_url: str,
    ingest_key: str,
    planned: Iterator[PlannedRequest | PlannedDeletion],
    clients: int,
    on_progress: Callable[[LoadResult], None] | None = None,
    timeout_seconds: float = 60.0,
    deletions_may_start: threading.Event | None = None,
) -> LoadResult:
    """Send every planned request from `clients` threads; return what the API accepted and refused.
    Deletions go to a client of their own as the load reaches them, once `deletions_may_start` is set
    (or DELETIONS_WAIT_SECONDS have passed): their requests (a delete is slower to answer than a track
    request) would otherwise slow the load, and their small messages (deletes, held objects) thin the
    sender's batches, which the soak's outage needs full (soak/run.py).
    `on_progress` sees the result after every request (under the clients' lock: keep it short)."""
    result = LoadResult()
    lock = threading.Lock()
    started = time.monotonic()
    deletions: queue.Queue[PlannedDeletion | None] = queue.Queue()

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                request = next(planned, None)
            if request is None:
                break
            if isinstance(request, PlannedDeletion):
                deletions.put(request)
            else:
                track(session, request)
        session.close()

    def deleter() -> None:
        if deletions_may_start is not None:
            deletions_may_start.wait(DELETIONS_WAIT_SECONDS)
        session = requests.Session()
        while (deletion := deletions.get()) is not None:
            track(session, deletion.before)
            delete(session, deletion.user)
            track(session, deletion.after)
        session.close()

    def track(session: requests.Session, request: PlannedRequest) -> None:
        status, body, retried, span = _send(session, api_url, ingest_key, "/users/track", request, timeout_seconds)
        with lock:
            _settle(result, request, status, body, span)
            result.retried.update(retried)
            if on_progress is not None:
                on_progress(result)

    def delete(session: requests.Session, user: str) -> None:
        status, _, retried, span = _send(
            session, api_url, ingest_key, "/users/delete", {"external_ids": [user]}, timeout_seconds
        )
        with lock:
            result.retried.update(retried)
            if status == 202:
                result.deletes[user] = span
            else:
                result.deletes_refused[user] = status

    threads = [threading.Thread(target=client, name=f"soak-client-{n}", daemon=True) for n in range(clients)]
    deleting = threading.Thread(target=deleter, name="soak-deleter", daemon=True)
    for thread in [*threads, deleting]:
        thread.start()
    for thread in threads:
        thread.join()
    deletions.put(None)
    deleting.join()
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


def _object(rng: random.Random, identifier: str, invalid: bool, user: str | None = None) -> tuple[str, dict[str, Any]]:
    """An event or a purchase; `user` given: that user's, always valid."""
    if user is None:
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
    session: requests.Session,
    api_url: str,
    ingest_key: str,
    path: str,
    request: PlannedRequest | dict[str, Any],
    timeout_seconds: float,
) -> tuple[int, dict[str, Any], list[int], Timed]:
    """POST one request until it has a final answer; (status, body, statuses retried, span). Status 0:
    none came."""
    body: dict[str, Any] = {}
    wrong_key = False
    if isinstance(request, PlannedRequest):
        for array, obj in request.objects:
            body.setdefault(array, []).append(obj)
        wrong_key = request.wrong_key
    else:
        body = request
    key = "wrong-key" if wrong_key else ingest_key
    # The same key on every attempt: a retry of a request the API did queue queues nothing again.
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"soak-{uuid.uuid4()}"}
    status, answer, retried = 0, {}, []
    sent = time.time()
    for attempt in range(ATTEMPTS):
        try:
            response = session.post(f"{api_url}{path}", json=body, headers=headers, timeout=timeout_seconds)
            status, answer = response.status_code, _json(response)
        except requests.RequestException:
            status, answer = 0, {}
        if status != 429 and status < 500 and status != 0:
            break
        retried.append(status)
        time.sleep(min(5.0, 0.2 * 2**attempt))
    return status, answer, retried, Timed(sent, time.time())


def _settle(
    result: LoadResult, request: PlannedRequest, status: int, answer: dict[str, Any], span: Timed | None = None
) -> None:
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
            if span is not None:
                result.users[identifier] = str(obj.get("external_id"))
                result.spans[identifier] = span
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

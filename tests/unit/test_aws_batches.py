"""aws.batch_get / aws.batch_put: DynamoDB's batch calls, split at its limits, with what DynamoDB leaves
unprocessed (throttling) asked again — the ledger, the attribute state and the import records use them."""

from __future__ import annotations

from typing import Any

import pytest

from braze_forwarder import aws


class Throttling:
    """A DynamoDB client that leaves the last key or item of each first request unprocessed."""

    def __init__(self, always: bool = False) -> None:
        self.always = always
        self.requests: list[int] = []
        self.written: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        [(table, request)] = RequestItems.items()
        keys = request["Keys"]
        self.requests.append(len(keys))
        kept = keys if self.always or len(self.requests) > 1 else keys[:-1]
        left = keys[len(kept) :] if not self.always else keys
        answer: dict[str, Any] = {"Responses": {table: [] if self.always else [dict(k) for k in kept]}}
        if left:
            answer["UnprocessedKeys"] = {table: {**request, "Keys": left}}
        return answer

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        [(table, puts)] = RequestItems.items()
        self.requests.append(len(puts))
        done = puts if len(self.requests) > 1 else puts[:-1]
        self.written.extend(put["PutRequest"]["Item"] for put in done)
        left = puts[len(done) :]
        return {"UnprocessedItems": {table: left}} if left else {}


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws.time, "sleep", lambda _seconds: None)


def test_batch_get_splits_at_100_keys_and_asks_again_for_what_was_left() -> None:
    client = Throttling()
    keys = [{"id": {"S": str(n)}} for n in range(150)]
    found = list(aws.batch_get(client, "table", keys, ConsistentRead=True))
    assert sorted(item["id"]["S"] for item in found) == sorted(str(n) for n in range(150))
    assert client.requests == [100, 1, 50]


def test_batch_get_gives_up_with_the_table_named() -> None:
    with pytest.raises(RuntimeError, match="table"):
        list(aws.batch_get(Throttling(always=True), "table", [{"id": {"S": "1"}}]))


def test_batch_put_splits_at_25_items_and_writes_again_what_was_left() -> None:
    client = Throttling()
    items = [{"id": {"S": str(n)}} for n in range(30)]
    aws.batch_put(client, "table", items)
    assert sorted(item["id"]["S"] for item in client.written) == sorted(str(n) for n in range(30))
    assert client.requests == [25, 1, 5]

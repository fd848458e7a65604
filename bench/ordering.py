"""What the per-user order guarantee costs (docs/ordering.md): the UserOrderTable requests of a run
through the sender's order gate, in read and write units and dollars per million objects, and the
time the gate adds to an invocation.

The gate runs as the sender runs it (delivery.ordering.OrderGate: snapshot per invocation, a
consistent GetItem per delete or merge, mark_delivered, alias removal), against moto's DynamoDB;
every request is counted on the boto3 client's event hooks. Braze is not called: its answers do not
change the store's traffic.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench.common import print_table

OBJECTS = 60_000
PER_MESSAGE = 75
DELETE_EVERY = 10_000  # objects per delete (the issue's ~1 % of users deleted, at ~100 objects a user)
ALIAS_EVERY = 100  # objects per new alias
# DynamoDB on-demand, us-east-1 list prices (since the 2024-11-01 reduction), dollars per request unit.
RRU_DOLLARS = 0.125 / 1_000_000
WRU_DOLLARS = 0.625 / 1_000_000
# Every item here is well under 1 KB and a Query page under 4 KB: one unit a request
# (strongly consistent reads: 1 RRU per 4 KB, at least one per request).
READS = ("Query", "GetItem")
WRITES = ("PutItem", "UpdateItem", "DeleteItem")


def main() -> None:
    rows = []
    for messages_per_invocation in (10, 1):
        counts, invocations, seconds = run(messages_per_invocation)
        rru = sum(counts[op] for op in READS)
        wru = sum(counts[op] for op in WRITES)
        per_million = 1_000_000 / OBJECTS
        dollars = (rru * RRU_DOLLARS + wru * WRU_DOLLARS) * per_million
        sender_wru = counts["UpdateItem"] + counts["DeleteItem"]
        rows.append(
            [
                f"{messages_per_invocation} x {PER_MESSAGE}",
                f"{invocations:,}",
                f"{counts['Query']:,}",
                f"{counts['GetItem']:,}",
                f"{counts['PutItem']:,}",
                f"{sender_wru:,}",
                f"{rru * per_million:,.0f}",
                f"{wru * per_million:,.0f}",
                f"{dollars:.4f}",
                f"{seconds / invocations * 1000:.1f}",
            ]
        )
    print_table(
        f"Order per user: UserOrderTable cost of {OBJECTS:,} objects, 1 delete per {DELETE_EVERY:,}, "
        f"1 alias per {ALIAS_EVERY}",
        [
            "batch",
            "invocations",
            "Query",
            "GetItem",
            "PutItem (API)",
            "Update+Delete",
            "RRU/M obj",
            "WRU/M obj",
            "$/M obj",
            "gate ms/inv",
        ],
        rows,
        "the sender's order gate per invocation against moto's DynamoDB, requests counted on the client; "
        "PutItem is the API's record writes; units at 1 per request (items < 1 KB, pages < 4 KB); "
        "$ at $0.125/M RRU and $0.625/M WRU; ms/inv is the gate's time on moto in-process (a real table "
        "adds a few ms per request: one Query per invocation, a GetItem per delete)",
    )
    holds()


HELD_MESSAGES = 200  # messages of PER_MESSAGE objects, each holding some behind an undelivered alias


def holds() -> None:
    """The delivery ledger's traffic for held objects: one UpdateItem per held group before its copy
    goes to SQS, and none when a message whose copy may be queued comes back (it sends that copy)."""
    rows = []
    for held_per_message in (1, 10, PER_MESSAGE):
        counts = run_holds(held_per_message)
        held = HELD_MESSAGES * held_per_message
        rows.append(
            [
                f"{held_per_message}",
                f"{held:,}",
                f"{counts['UpdateItem']:,}",
                f"{counts['SendMessageBatch']:,}",
                f"{counts['returned UpdateItem']:,}",
                f"{counts['returned SendMessageBatch']:,}",
                f"{counts['UpdateItem'] / held * 1_000_000:,.0f}",
                f"{counts['UpdateItem'] / held * 1_000_000 * WRU_DOLLARS:.3f}",
            ]
        )
    print_table(
        f"Order per user: delivery-ledger cost of held objects ({HELD_MESSAGES} messages of {PER_MESSAGE})",
        [
            "held a message",
            "held objects",
            "ledger UpdateItem",
            "SQS batches",
            "back: UpdateItem",
            "back: SQS batches",
            "WRU/M held",
            "$/M held",
        ],
        rows,
        "the order gate against moto (a user's undelivered alias holds their objects); each message is "
        "opened again (back:), as after a sender killed before acknowledging it: its recorded group goes "
        "as the same copy, no ledger write; items < 1 KB (a group of up to ~250 positions): 1 WRU a write, "
        "$0.625/M WRU",
    )


def _create_order_table(dynamodb: Any) -> None:
    """The UserOrderTable's shape, as the template declares it, in moto."""
    dynamodb.create_table(
        TableName="order",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def run_holds(held_per_message: int) -> Counter[str]:
    import boto3
    from moto import mock_aws

    from braze_forwarder import aws, queue
    from braze_forwarder.config import SenderSettings
    from braze_forwarder.delivery import ordering
    from braze_forwarder.delivery.ledger import DynamoLedger
    from braze_forwarder.delivery_model import Message, Parcel
    from braze_forwarder.user_order import OrderRecord, OrderStore, user_digest

    counts: Counter[str] = Counter()
    with mock_aws():
        aws.reset()
        ordering.forget_snapshots()
        dynamodb = boto3.client("dynamodb")
        _create_order_table(dynamodb)
        dynamodb.create_table(
            TableName="ledger",
            KeySchema=[{"AttributeName": "message_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "message_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        queue_url = boto3.client("sqs").create_queue(QueueName="events")["QueueUrl"]
        phase = [""]

        def count(event_name: str, **_: Any) -> None:
            counts[phase[0] + event_name.rsplit(".", 1)[-1]] += 1

        aws.client("dynamodb").meta.events.register("before-call.dynamodb.*", count)
        aws.client("sqs").meta.events.register("before-call.sqs.*", count)
        store, ledger = OrderStore("order"), DynamoLedger("ledger", ttl_seconds=3600)
        config = SenderSettings(
            braze_rest_endpoint="https://rest.iad-01.braze.com",
            braze_api_key_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:bench",
            ledger_table="ledger",
            rejected_bucket="bench",
            user_order_table="order",
            events_queue_url=queue_url,
        )
        accepted = queue.utc_now_iso()
        store.put([OrderRecord("alias", user_digest(("external_id", "held")), ordering._plus(accepted, -1))])
        bodies = []
        for m in range(HELD_MESSAGES):
            objects = [
                ("events", n, queue.encode_object({"external_id": "held" if n < held_per_message else f"u-{m}-{n}",
                                                   "name": "played", "time": accepted}))
                for n in range(PER_MESSAGE)
            ]  # fmt: skip
            bodies += queue.build_messages("track", objects, source="bench", correlation_id=None,
                                           max_message_bytes=1 << 20, accepted_at=accepted)  # fmt: skip

        def opened(body: str) -> Message:
            message = Message("m", body, queue.decode(body))
            assert message.envelope is not None
            entry = ledger.entries([message.envelope.id]).get(message.envelope.id)
            message.held_before = entry.held if entry else ()
            for n, item in enumerate(message.envelope.items):
                user = ordering.parcel_user("track", item.array, item.object)
                message.parcels.append(Parcel("track", item.array, item.object, 1, user, message, n, item.index))
            return message

        for phase[0] in ("", "returned "):  # the second pass: every message back, as after a kill
            for start in range(0, len(bodies), 10):
                gate = ordering.OrderGate(store, ledger, config, lambda record: None)
                gate.open([p for body in bodies[start : start + 10] for p in opened(body).parcels])
        aws.reset()
        ordering.forget_snapshots()
    return counts


def run(messages_per_invocation: int) -> tuple[Counter[str], int, float]:
    """Deliver OBJECTS objects through the gate; (requests by operation, invocations, gate seconds)."""
    import boto3
    from moto import mock_aws

    from braze_forwarder import aws, queue
    from braze_forwarder.config import SenderSettings
    from braze_forwarder.delivery import ordering
    from braze_forwarder.delivery.ledger import DynamoLedger
    from braze_forwarder.delivery_model import Message, Parcel, State
    from braze_forwarder.user_order import OrderRecord, OrderStore, user_digest

    counts: Counter[str] = Counter()
    with mock_aws():
        aws.reset()
        ordering.forget_snapshots()
        dynamodb = boto3.client("dynamodb")
        _create_order_table(dynamodb)
        client = aws.client("dynamodb")

        def count(event_name: str, **_: Any) -> None:
            counts[event_name.rsplit(".", 1)[-1]] += 1

        client.meta.events.register("before-call.dynamodb.*", count)
        store = OrderStore("order")
        ledger = DynamoLedger("bench", ttl_seconds=3600)  # written only by holds, which this load makes none of
        config = SenderSettings(
            braze_rest_endpoint="https://rest.iad-01.braze.com",
            braze_api_key_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:bench",
            ledger_table="bench",
            rejected_bucket="bench",
            user_order_table="order",
            events_queue_url="bench",
        )

        def message(kind: str, objects: list[tuple[str, Any]], accepted_at: str) -> Message:
            items = [(array, n, queue.encode_object(obj)) for n, (array, obj) in enumerate(objects)]
            [body] = queue.build_messages(
                kind,  # type: ignore[arg-type]
                items,
                source="bench",
                correlation_id=None,
                max_message_bytes=1 << 20,
                accepted_at=accepted_at,
            )
            found = Message("m", body, queue.decode(body))
            assert found.envelope is not None
            for n, item in enumerate(found.envelope.items):
                user = ordering.parcel_user(kind, item.array, item.object)
                found.parcels.append(Parcel(kind, item.array, item.object, 1, user, found, n, item.index))  # type: ignore[arg-type]
            return found

        sent = invocations = 0
        seconds = 0.0
        batch: list[Message] = []
        while sent < OBJECTS:
            now = queue.utc_now_iso()
            objects = [
                ("events", {"external_id": f"user-{sent + n}", "name": "played", "time": now})
                for n in range(PER_MESSAGE)
            ]
            batch.append(message("track", objects, now))
            sent += PER_MESSAGE
            if (
                sent // DELETE_EVERY > (sent - PER_MESSAGE) // DELETE_EVERY
            ):  # the API: tombstone, then the (fenced) delete
                gone = f"user-{sent - 1}"
                store.put([OrderRecord("delete", user_digest(("external_id", gone)), now)])
                batch.append(message("delete", [("external_ids", gone)], now))
            if sent // ALIAS_EVERY > (sent - PER_MESSAGE) // ALIAS_EVERY:
                alias = {"alias_name": f"device-{sent}", "alias_label": "device", "external_id": f"user-{sent}"}
                store.put([OrderRecord("alias", user_digest(("user_alias", alias["alias_name"], "device")), now)])
                batch.append(message("alias", [("user_aliases", alias)], now))
            if len([m for m in batch if m.parcels[0].kind == "track"]) < messages_per_invocation and sent < OBJECTS:
                continue
            # Deletes are judged a fence later: the gate's clock is that far ahead for them.
            clock = lambda: time.time() + 3600  # noqa: E731
            gate = ordering.OrderGate(store, ledger, config, lambda record: None, clock=clock)
            start = time.perf_counter()
            to_send = gate.open([p for m in batch for p in m.parcels])
            for parcel in to_send:
                parcel.state = State.DELIVERED  # as Braze would answer
            gate.after_send(to_send)
            seconds += time.perf_counter() - start
            invocations += 1
            batch = []
        aws.reset()
        ordering.forget_snapshots()
    return counts, invocations, seconds


if __name__ == "__main__":
    main()

"""The order of deletes, aliases and merges against everything else, per user (docs/ordering.md).

A base module: the ingest API writes the records (before it answers), the sender reads them once per
invocation and judges every object against them, the operator CLI lists them.

The UserOrderTable holds one record per identifier a delete, alias or merge names, keyed by the day
and time the request was accepted, so a sender reads everything it needs with one strongly
consistent Query per day since the oldest object in its batch:

    pk = "FEED#<YYYY-MM-DD of accepted_at>"
    sk = "<accepted_at>#<D|A|M>#<user digest>"      D delete (tombstone), A alias, M merge
    user (digest), kind, accepted_at, [keep (digest, merges)], [delivered_at], expires_at (TTL)

so "everything accepted since T" is one key range per day. An alias's record is removed once Braze
has it (aliases are frequent; a day's partition stays small); tombstones and merges stay, marked
delivered, until the horizon.

Identifiers are stored as digests (the same digest the attribute-state store keys users by), never
as ids, aliases, emails or phones.

The verdict for one object (Snapshot.verdict), for each identifier it names:

    tombstone T: accepted at or before T            -> drop (ties drop)
                 accepted after T, T not delivered   -> hold
    alias A (pending until delivered): accepted after A, not delivered -> hold
    merge M of this identifier into another: accepted after M, not delivered -> hold

Otherwise send. A snapshot is trusted for SNAPSHOT_LIFE_SECONDS from the moment its Query began:
records written later are seen by the next snapshot, and deletes and merges are not sent until
FENCE_SECONDS after they were accepted, by which time every sender has judged its objects against
them (docs/ordering.md, "The snapshot's life").
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError

from braze_forwarder import aws

RecordKind = Literal["delete", "alias", "merge"]
Verdict = Literal["send", "drop", "hold"]
_PREFIX: dict[RecordKind, str] = {"delete": "D", "alias": "A", "merge": "M"}
_KIND_OF_PREFIX = {prefix: kind for kind, prefix in _PREFIX.items()}

# How long a snapshot of the feed is trusted: no Braze call starts later than this after the Query
# that made it began.
SNAPSHOT_LIFE_SECONDS = 30.0
# The API writes a record before it answers; a write slower than this makes it answer 503 instead,
# so a sender asking from (newest record held - this) misses no record.
RECORD_WRITE_SECONDS = 5.0
# Clock differences between Lambda hosts that the fence allows for.
CLOCK_SKEW_SECONDS = 2.0
# Records outlive everything that can come back with an older accept time: the DLQ (14 days), the
# rejected objects (at most 90 days of retention), replays and backfill resumes within it.
HORIZON_DAYS = 100


def fence_seconds(connect_timeout_seconds: float, read_timeout_seconds: float) -> int:
    """How long after its acceptance a delete or merge may be sent: by then, every object checked
    against a snapshot taken before the record existed has reached Braze or failed."""
    return int(
        RECORD_WRITE_SECONDS
        + SNAPSHOT_LIFE_SECONDS
        + connect_timeout_seconds
        + read_timeout_seconds
        + CLOCK_SKEW_SECONDS
        + 0.999
    )


# ---------------------------------------------------------------------- identities


def user_digest(user: Hashable) -> str:
    """The key of a user (braze.packing.user_key) in the order and attribute-state stores."""
    canonical = json.dumps(user, ensure_ascii=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode("ascii"), digest_size=20, person=b"braze-fwd-user").hexdigest()


def identity(obj: Any) -> Hashable | None:
    """The user one identifier object names, in braze.packing.user_key's form; None if it names none.

    Takes a Braze object or identifier object ({"external_id": ...}, {"user_alias": {...}},
    {"braze_id": ...}, {"email": ...}, {"phone": ...}); the first identifier found wins, as in
    Braze's own precedence.
    """
    if not isinstance(obj, Mapping):
        return None
    external_id = obj.get("external_id")
    if isinstance(external_id, str):
        return ("external_id", external_id)
    alias = obj.get("user_alias")
    if isinstance(alias, Mapping):
        return ("user_alias", alias.get("alias_name"), alias.get("alias_label"))
    for name in ("braze_id", "email", "phone"):
        value = obj.get(name)
        if isinstance(value, str):
            return (name, value)
    return None


_DELETE_ARRAYS = {"external_ids": "external_id", "braze_ids": "braze_id"}


def identities(kind: str, array: str, obj: Any) -> list[Hashable]:
    """Every user an envelope item names: the ones the order records must be checked for."""
    if kind == "delete":
        if array in _DELETE_ARRAYS:
            return [(_DELETE_ARRAYS[array], obj)] if isinstance(obj, str) else []
        if array == "user_aliases" and isinstance(obj, Mapping):
            return [("user_alias", obj.get("alias_name"), obj.get("alias_label"))]
        found = identity(obj)  # email_addresses: {"email", "prioritization"}; phone_numbers: {"phone", ...}
        return [found] if found is not None else []
    if kind == "alias" and isinstance(obj, Mapping):
        named: list[Hashable] = [("user_alias", obj.get("alias_name"), obj.get("alias_label"))]
        if isinstance(obj.get("external_id"), str):
            named.append(("external_id", obj["external_id"]))
        return named
    if kind == "merge" and isinstance(obj, Mapping):
        return [u for u in (identity(obj.get("identifier_to_merge")), identity(obj.get("identifier_to_keep"))) if u]
    if kind == "identify" and isinstance(obj, Mapping):
        # /users/identify names the profile to keep and the alias, email or phone it absorbs.
        named = [u for u in (identity({"external_id": obj.get("external_id")}), identity(obj)) if u]
        alias = obj.get("user_alias")
        if isinstance(alias, Mapping):
            named.append(("user_alias", alias.get("alias_name"), alias.get("alias_label")))
        return list(dict.fromkeys(named))
    found = identity(obj)
    return [found] if found is not None else []


# ---------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class OrderRecord:
    kind: RecordKind
    user: str  # digest
    accepted_at: str  # ISO 8601 UTC with milliseconds, as queue.utc_now_iso writes it
    delivered_at: str | None = None
    keep: str | None = None  # merges: the digest of the user kept

    @property
    def key(self) -> dict[str, dict[str, str]]:
        """The DynamoDB key, in the low-level client's typed form."""
        return {
            "pk": {"S": f"FEED#{self.accepted_at[:10]}"},
            "sk": {"S": f"{self.accepted_at}#{_PREFIX[self.kind]}#{self.user}"},
        }

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None


def _record_of(item: Mapping[str, Any]) -> OrderRecord | None:
    """A record from a low-level client's item; None for anything that is not one."""
    accepted_at, prefix, user = [*_text(item, "sk").split("#"), "", ""][:3]
    kind = _KIND_OF_PREFIX.get(prefix)
    if kind is None or not accepted_at or not user:
        return None
    return OrderRecord(kind, user, accepted_at, _text(item, "delivered_at") or None, _text(item, "keep") or None)


def _text(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    return str(value.get("S", "")) if isinstance(value, Mapping) else ""


@dataclass
class Snapshot:
    """The order records a sender judges its batch against, as one or more Queries found them."""

    taken_at_monotonic: float
    taken_at: str  # the wall clock when its first Query began (ISO UTC)
    since: str  # records accepted at or after this are all here
    records: dict[str, list[OrderRecord]] = field(default_factory=dict)  # by user digest

    def fresh(self, now_monotonic: float | None = None) -> bool:
        now = time.monotonic() if now_monotonic is None else now_monotonic
        return now - self.taken_at_monotonic < SNAPSHOT_LIFE_SECONDS

    def covers(self, order_time: str) -> bool:
        """Whether every record that can concern an object accepted at order_time is here."""
        return not order_time or order_time >= self.since

    def verdict(self, users: Iterable[str], order_time: str) -> tuple[Verdict, OrderRecord | None]:
        """Send, drop or hold an object accepted at order_time naming these user digests; with the
        record that decided (None: send). Drop wins over hold: a tombstone the object predates means
        it must never reach Braze."""
        held: OrderRecord | None = None
        for user in users:
            for record in self.records.get(user, ()):
                if record.kind == "delete" and order_time <= record.accepted_at:
                    return "drop", record
                if order_time > record.accepted_at and not record.delivered and held is None:
                    held = record
        return ("hold", held) if held is not None else ("send", None)

    def tombstones(self, user: str) -> list[OrderRecord]:
        return [r for r in self.records.get(user, ()) if r.kind == "delete"]

    def add(self, record: OrderRecord) -> None:
        same = self.records.setdefault(record.user, [])
        same[:] = [r for r in same if r.key != record.key] + [record]

    def discard(self, record: OrderRecord) -> None:
        same = self.records.get(record.user, [])
        same[:] = [r for r in same if r.key != record.key]


# ---------------------------------------------------------------------- the store


class OrderStore:
    """The UserOrderTable. Storage is passed in: the handler makes one from its settings."""

    def __init__(self, table: str, horizon_days: int = HORIZON_DAYS, dynamodb: Any | None = None) -> None:
        self.table = table
        self.horizon_days = horizon_days
        # The operator's CLI passes its own client (its stack's region and endpoint); the functions none.
        self._dynamodb = dynamodb

    def client(self) -> Any:
        return self._dynamodb or aws.client("dynamodb")

    def put(self, records: Sequence[OrderRecord]) -> None:
        """Write records (the API, before it answers). A repeated put keeps the first record."""
        expires_at = str(int(time.time()) + self.horizon_days * 86400)
        for record in records:
            item: dict[str, Any] = {
                **record.key,
                "user": {"S": record.user},
                "kind": {"S": record.kind},
                "accepted_at": {"S": record.accepted_at},
                "expires_at": {"N": expires_at},
            }
            if record.keep:
                item["keep"] = {"S": record.keep}
            try:
                self.client().put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise

    def snapshot(self, since: str, previous: Snapshot | None = None) -> Snapshot:
        """Every record accepted at or after `since` (ISO UTC), strongly consistent, one Query per day.

        With `previous` (a warm container's last snapshot covering `since`), only the records
        written since it was taken are asked for, from RECORD_WRITE_SECONDS before its start.
        """
        started, wall = time.monotonic(), _now_iso()
        since = since[:23]  # the order of ISO strings is the order of times
        if previous is not None and previous.since <= since:
            overlap = timedelta(seconds=RECORD_WRITE_SECONDS + CLOCK_SKEW_SECONDS)
            ask_from = max(_iso(_parse(previous.taken_at) - overlap), since)
            snapshot = Snapshot(started, wall, since, {u: list(rs) for u, rs in previous.records.items()})
            for records in snapshot.records.values():  # a removed alias is gone from this read too
                records[:] = [r for r in records if r.kind != "alias" or r.accepted_at < ask_from]
        else:
            snapshot = Snapshot(started, wall, since)
            ask_from = since
        for record in self._query(ask_from):
            snapshot.add(record)
        return snapshot

    def get(self, record: OrderRecord) -> OrderRecord | None:
        """The record as stored now (strongly consistent), or None if it is gone."""
        found = self.client().get_item(TableName=self.table, Key=record.key, ConsistentRead=True).get("Item")
        return _record_of(found) if found else None

    def recheck(self, snapshot: Snapshot, record: OrderRecord) -> OrderRecord | None:
        """Read a record that would hold an object again, and put what is true now in the snapshot.

        A warm container's snapshot reads only records accepted since its last Query: an older alias
        removed or delete delivered meanwhile is seen here, on the rare path that holds objects."""
        current = self.get(record)
        if current is None:
            snapshot.discard(record)
        else:
            snapshot.add(current)
        return current

    def mark_delivered(self, record: OrderRecord, delivered_at: str | None = None) -> None:
        """Braze answered the delete or merge (and, for a delete, our copies are erased)."""
        self.client().update_item(
            TableName=self.table,
            Key=record.key,
            UpdateExpression="SET delivered_at = if_not_exists(delivered_at, :now)",
            ExpressionAttributeValues={":now": {"S": delivered_at or _now_iso()}},
        )

    def remove(self, record: OrderRecord) -> None:
        """An alias Braze has: objects that use it need not wait any more."""
        self.client().delete_item(TableName=self.table, Key=record.key)

    def records(self, since: str, kinds: Iterable[RecordKind] = ("delete", "alias", "merge")) -> Iterator[OrderRecord]:
        """Every record of these kinds accepted at or after `since`, oldest day first (for the CLI)."""
        wanted = set(kinds)
        for record in self._query(since):
            if record.kind in wanted:
                yield record

    def _query(self, since: str) -> Iterator[OrderRecord]:
        dynamodb = self.client()
        since = since[:23]
        today = _now_iso()[:10]
        day = _parse(since[:10] + "T00:00:00.000Z")
        while (day_text := _iso(day)[:10]) <= today:
            arguments: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk AND sk >= :since",
                "ExpressionAttributeValues": {":pk": {"S": f"FEED#{day_text}"}, ":since": {"S": since}},
                "ConsistentRead": True,
            }
            while True:
                page = dynamodb.query(**arguments)
                for item in page.get("Items", []):
                    record = _record_of(item)
                    if record is not None:
                        yield record
                if "LastEvaluatedKey" not in page:
                    break
                arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            day += timedelta(days=1)


def _now_iso() -> str:
    return _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse(text: str) -> datetime:
    return datetime.strptime(text[:23].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)

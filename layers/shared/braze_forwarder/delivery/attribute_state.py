"""The last-sent store of delta sending: per user, what each attribute was last set to, and when.

One DynamoDB item per user, `user` = a digest of the user's identifier (no email, phone or id at
rest), and one top-level attribute per Braze attribute name, `a.<name>` = "<digest>|<ms>":

- digest: blake2b of the value's canonical JSON, or "-" when the profile's value is not known from
  what was sent (an operation such as `inc` changed it, or a call's outcome is unknown);
- ms: when the newest write of that attribute was received by the API (epoch milliseconds; empty
  when unknown), so an older value arriving later is recognised.

`expires_at` (the table's TTL attribute) is pushed forward on every write: a user not updated for
ATTRIBUTE_STATE_TTL_SECONDS is forgotten, and their next values are sent again. A deleted user is
forgotten at once (`forget`): by the sender once Braze answered the delete, or by the operator's
`braze-forwarder users erase`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from braze_forwarder import aws
from braze_forwarder.user_order import user_digest

PREFIX = "a."
UNKNOWN = "-"
# UpdateItem expressions are limited to 4 KB and 300 operators; 100 assignments stay well inside.
_SETS_PER_UPDATE = 100


@dataclass(frozen=True, slots=True)
class Written:
    """What the store knows of one attribute of one user."""

    digest: str | None  # None: the profile's value is not known
    at: int | None  # epoch ms of the newest write the store heard of; None: unknown

    def encode(self) -> str:
        return f"{self.digest or UNKNOWN}|{'' if self.at is None else self.at}"

    @classmethod
    def decode(cls, text: str) -> Written:
        digest, _, at = text.partition("|")
        return cls(None if digest in ("", UNKNOWN) else digest, int(at) if at.isdigit() else None)


def value_digest(value: Any) -> str:
    """The same digest for the same JSON value whatever the order of its object keys (Braze's is none)."""
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return hashlib.blake2b(canonical.encode("ascii"), digest_size=16).hexdigest()


def user_id(user: Hashable) -> str:
    """The store's key for a user (braze.packing.user_key): a digest, so no identifier is stored. The
    order store keys users the same way, so a delete finds the user's item here."""
    return user_digest(user)


class AttributeStore(Protocol):
    def read(self, users: Collection[str]) -> dict[str, dict[str, Written]]:
        """What is known of these users' attributes (users without an entry are left out)."""
        ...

    def write(self, user: str, attributes: Mapping[str, Written]) -> None:
        """Record these attributes of one user (others are left as they are)."""
        ...

    def forget(self, user: str) -> None:
        """Remove everything known of one user (a deleted user's profile starts empty in Braze: a
        stale last-sent value would make the sender skip a value the new profile lacks)."""
        ...


class DynamoAttributeStore:
    """The store in the stack's AttributeStateTable."""

    def __init__(self, table: str, ttl_seconds: int, dynamodb: Any | None = None) -> None:
        self.table = table
        self.ttl_seconds = ttl_seconds
        # The operator's CLI passes its own client (its stack's region and endpoint); the sender none.
        self._dynamodb = dynamodb

    def client(self) -> Any:
        return self._dynamodb or aws.client("dynamodb")

    def read(self, users: Collection[str]) -> dict[str, dict[str, Written]]:
        keys = [{"user": {"S": user}} for user in dict.fromkeys(users)]
        # Consistent: a value that the previous batch just recorded must be seen, or an older
        # value arriving right after a newer one would not be recognised as older.
        return {
            item["user"]["S"]: {
                name[len(PREFIX) :]: Written.decode(value["S"])
                for name, value in item.items()
                if name.startswith(PREFIX) and "S" in value
            }
            for item in aws.batch_get(self.client(), self.table, keys, ConsistentRead=True)
        }

    def write(self, user: str, attributes: Mapping[str, Written]) -> None:
        names = list(attributes)
        expires_at = str(int(time.time()) + self.ttl_seconds)
        for start in range(0, max(len(names), 1), _SETS_PER_UPDATE):
            chunk = names[start : start + _SETS_PER_UPDATE]
            # Placeholders for every name: attribute names are the client's, and `user` is reserved.
            assignments = [f"#a{n} = :a{n}" for n in range(len(chunk))]
            self.client().update_item(
                TableName=self.table,
                Key={"user": {"S": user}},
                UpdateExpression="SET " + ", ".join([*assignments, "#expires = :expires"]),
                ExpressionAttributeNames={
                    **{f"#a{n}": PREFIX + name for n, name in enumerate(chunk)},
                    "#expires": "expires_at",
                },
                ExpressionAttributeValues={
                    **{f":a{n}": {"S": attributes[name].encode()} for n, name in enumerate(chunk)},
                    ":expires": {"N": expires_at},
                },
            )

    def forget(self, user: str) -> None:
        # Idempotent: deleting an item that is not there succeeds, so a retried delete is harmless.
        self.client().delete_item(TableName=self.table, Key={"user": {"S": user}})

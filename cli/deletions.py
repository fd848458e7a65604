"""`deletions list`: the deletes the stack's API accepted, as the UserOrderTable keeps them.

Each delete (POST /users/delete) leaves a tombstone per identifier: the user's digest, when the
API accepted it and, once Braze answered the delete, when it was delivered. Tombstones hold no
identifier and expire after 100 days (docs/ordering.md). The other commands read them too: a
rejected object accepted before its user's delete is never replayed, and `rejects erase` removes it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cli.errors import CliError
from cli.target import Target

if TYPE_CHECKING:
    from braze_forwarder.user_order import OrderRecord

ORDER_TABLE_OUTPUT = "UserOrderTableName"


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "deletions", help="list the user deletes the stack accepted", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="deletions_command", metavar="{list}", required=True)
    listing = commands.add_parser(
        "list",
        parents=parents,
        help="one line per tombstone: accepted, delivered or pending, user digest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument(
        "--since",
        metavar="ISO",
        help="only deletes accepted at or after this time, UTC unless it names its zone (default: all kept, 100 days)",
    )
    listing.set_defaults(handler=list_command)


def order_store(target: Target) -> Any:
    from braze_forwarder.user_order import OrderStore

    return OrderStore(target.output(ORDER_TABLE_OUTPUT), dynamodb=target.client("dynamodb"))


def horizon_start() -> str:
    """The oldest accept time a tombstone can still have (the table's TTL removes older ones)."""
    from braze_forwarder.user_order import HORIZON_DAYS

    return _iso(datetime.now(UTC) - timedelta(days=HORIZON_DAYS + 1))


def tombstones(target: Target, since: str | None = None) -> dict[str, list[OrderRecord]]:
    """Every tombstone accepted at or after `since` (default: all the table keeps), by user digest.

    Empty for a stack deployed before the table existed: its API took no delete, so none can apply."""
    by_user: dict[str, list[OrderRecord]] = {}
    if not target.outputs.get(ORDER_TABLE_OUTPUT):
        return by_user
    for record in order_store(target).records(max(since or "", horizon_start()), kinds=("delete",)):
        by_user.setdefault(record.user, []).append(record)
    return by_user


def deleted_after(users: Iterable[str], accepted_at: str, found: dict[str, list[OrderRecord]]) -> OrderRecord | None:
    """The tombstone of one of these users accepted at or after `accepted_at` (ties count, as the
    sender's verdict drops them), or None. An accept time that cannot be read counts as the oldest."""
    moment = _moment(accepted_at)
    for user in users:
        for tombstone in found.get(user, ()):
            if moment is None or moment <= (_moment(tombstone.accepted_at) or moment):
                return tombstone
    return None


def list_command(target: Target, args: argparse.Namespace) -> int:
    since = _since(args.since)
    target.output(ORDER_TABLE_OUTPUT)  # an older stack has none: say so rather than list nothing
    records = sorted((r for rs in tombstones(target, since).values() for r in rs), key=lambda r: r.accepted_at)
    for record in records:
        state = f"delivered {record.delivered_at}" if record.delivered else "pending"
        print(f"{record.accepted_at:<25} {state:<35} user {record.user}")
    delivered = sum(1 for record in records if record.delivered)
    print(f"{len(records)} tombstone(s): {delivered} delivered, {len(records) - delivered} pending")
    return 0


def _since(value: str | None) -> str | None:
    if not value:
        return None
    moment = _moment(value)
    if moment is None:
        raise CliError(f"--since {value}: not an ISO-8601 time (e.g. 2026-05-01T12:00:00Z)")
    return _iso(moment)


def _moment(text: str) -> datetime | None:
    """A time from ISO-8601 text, UTC unless it names its zone; None if it is not one."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(moment: datetime) -> str:
    """As the order store writes accept times (ISO UTC, milliseconds): comparable as text."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

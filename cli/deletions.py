"""`deletions list`: the deletes the stack's API accepted, as the UserOrderTable keeps them.

Each delete (POST /users/delete) leaves a tombstone per identifier: the user's digest, when the
API accepted it and, once Braze answered the delete, when it was delivered. Tombstones hold no
identifier and expire after 100 days (docs/ordering.md). The other commands read them too: a
rejected object accepted before its user's delete is never replayed, and `rejects erase` removes it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import datetime
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


def tombstones(target: Target, since: str | None = None) -> dict[str, list[OrderRecord]]:
    """Every tombstone accepted at or after `since` (default: all the table keeps), by user digest.

    Empty for a stack deployed before the table existed: its API took no delete, so none can apply."""
    from braze_forwarder.erasure import tombstones_by_user

    if not target.outputs.get(ORDER_TABLE_OUTPUT):
        return {}
    return tombstones_by_user(order_store(target), since)


def deleted_after(users: Iterable[str], accepted_at: str, found: dict[str, list[OrderRecord]]) -> OrderRecord | None:
    """The tombstone of one of these users accepted at or after `accepted_at` (erasure.deleted_after)."""
    from braze_forwarder.erasure import deleted_after as tombstone_after

    return tombstone_after(users, accepted_at, found)


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
    from braze_forwarder.erasure import moment_of

    return moment_of(text)


def _iso(moment: datetime) -> str:
    from braze_forwarder.erasure import iso

    return iso(moment)

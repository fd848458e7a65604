"""`users erase`: remove one user from what the forwarder itself holds, and say what was found.

It does NOT delete the user in Braze and does not stop their queued objects: POST /users/delete on
the stack's API does both, in order (the delete reaches Braze after everything accepted before it,
which is dropped, and the sender then erases the attribute state by itself). Use this command for
what the API cannot reach: the rejected objects written before the delete, or a user deleted in
Braze some other way. Where each kind of personal data lives: docs/personal-data.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Hashable, Mapping
from typing import Any

from cli import deletions, rejects
from cli.errors import CliError
from cli.target import Target

ATTRIBUTE_STATE_OUTPUT = "AttributeStateTableName"


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "users", help="erase a user from the forwarder's own stores", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="users_command", metavar="{erase}", required=True)
    erase = commands.add_parser(
        "erase",
        parents=parents,
        help="remove a user's attribute state and rejected objects (not in Braze: use POST /users/delete)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = erase.add_argument_group("the user (one of; exactly as your backend sends it)").add_mutually_exclusive_group(
        required=True
    )
    who.add_argument("--external-id", metavar="ID")
    who.add_argument("--user-alias", metavar="NAME:LABEL", help="alias name and label, split at the last colon")
    who.add_argument("--email", metavar="ADDRESS")
    who.add_argument("--phone", metavar="NUMBER")
    who.add_argument("--braze-id", metavar="ID")
    erase.add_argument("--dry-run", action="store_true", help="report what was found, remove nothing")
    erase.set_defaults(handler=erase_command)


def identifier(args: argparse.Namespace) -> tuple[Hashable, str, str]:
    """The user as user_order.identity names it, the value typed, and how to print it."""
    if args.user_alias is not None:
        name, colon, label = args.user_alias.rpartition(":")
        if not colon or not name or not label:
            raise CliError(f"--user-alias {args.user_alias}: give the alias name and label as NAME:LABEL")
        return ("user_alias", name, label), name, f"user alias {json.dumps(name)} (label {json.dumps(label)})"
    for option in ("external_id", "email", "phone", "braze_id"):
        value = getattr(args, option)
        if value is not None:
            if not value:
                raise CliError(f"--{option.replace('_', '-')}: empty")
            return (option, value), value, f"{option.replace('_', ' ')} {json.dumps(value)}"
    raise CliError("name the user: --external-id, --user-alias, --email, --phone or --braze-id")


def erase_command(target: Target, args: argparse.Namespace) -> int:
    from braze_forwarder.delivery.attribute_state import DynamoAttributeStore
    from braze_forwarder.rejects import mentions, named_users
    from braze_forwarder.user_order import user_digest

    user, typed, shown = identifier(args)
    digest = user_digest(user)
    dry_run = bool(args.dry_run)
    verb = "would be removed" if dry_run else "removed"
    print(f"{'dry run: ' if dry_run else ''}erasing {shown} (user digest {digest}) from the forwarder's own stores")
    print("  Braze is not called: POST /users/delete on the stack's API deletes the profile, in order")

    # Attribute state (delta sending): one item per user, keyed by the digest (read and deleted
    # here, never written: no TTL is needed).
    store = DynamoAttributeStore(
        target.output(ATTRIBUTE_STATE_OUTPUT), ttl_seconds=0, dynamodb=target.client("dynamodb")
    )
    held = digest in store.read([digest])
    if held and not dry_run:
        store.forget(digest)
    print(f"  attribute state (AttributeStateTable): {1 if held else 0} item {verb if held else 'found'}")

    # Rejected objects: every line whose object names the user by any identifier; an unreadable
    # queue message kept raw, if it holds the identifier as typed.
    def names_the_user(record: Mapping[str, Any]) -> bool:
        return digest in named_users(record) or mentions(record, typed)

    rewrites = rejects.erase_from_store(target, names_the_user, dry_run=dry_run)
    print(f"  rejected objects (RejectedObjectsBucket): {rejects.summary(rewrites, dry_run=dry_run)}")

    print(
        "  idempotency and partial-queue records (IdempotencyTable): nothing to remove, they hold no personal data"
        " (hashes of keys and bodies, answers with counts, error types and positions)"
    )

    found = deletions.tombstones(target).get(digest, [])
    if found:
        latest = max(found, key=lambda record: record.accepted_at)
        state = f"delivered {latest.delivered_at}" if latest.delivered else "pending"
        print(
            f"  deletes (UserOrderTable): {len(found)} tombstone(s), latest accepted {latest.accepted_at}, {state};"
            " kept (a digest and times) so nothing older re-creates the user, expire after 100 days"
        )
        print("  queue and DLQ: objects accepted before the delete are dropped as they arrive")
    else:
        print("  deletes (UserOrderTable): none for this user")
        print(
            "  queue and DLQ: not searched; objects still queued for this user will be delivered."
            " To delete the user in Braze and drop what is queued: POST /users/delete"
        )
    return 0

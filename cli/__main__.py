"""braze-forwarder: the operator's command line (`python -m cli --help`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from cli import backfill, deletions, dlq, exports, imports, rejects, users
from cli.errors import CliError
from cli.target import add_arguments, aws_problem, resolve

PROG = "braze-forwarder"


def parser() -> argparse.ArgumentParser:
    target = argparse.ArgumentParser(add_help=False)
    add_arguments(target)
    root = argparse.ArgumentParser(
        prog=PROG,
        description="Operate a braze-forwarder stack, deployed (--stack NAME) or local (--local).",
    )
    commands = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    rejects.add_parser(commands, [target])
    dlq.add_parser(commands, [target])
    exports.add_parser(commands, [target])
    backfill.add_parser(commands, [target])
    users.add_parser(commands, [target])
    deletions.add_parser(commands, [target])
    imports.add_parser(commands, [target])
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        needs_target = getattr(args, "needs_target", lambda _: True)(args)
        return int(args.handler(resolve(args) if needs_target else None, args) or 0)
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
    except (BotoCoreError, ClientError) as exc:
        print(f"{PROG}: error: {aws_problem(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())

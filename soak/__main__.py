"""`python -m soak` (what `make soak` runs): the soak test, one report, exit code 1 if it failed."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from soak.kills import KILL_POINTS

SCALES = {
    # CI: a few minutes on a 2-core machine, stack start included.
    "small": {"objects": 10_000, "clients": 4},
    # ISSUE 9's figure: 100,000 objects.
    "full": {"objects": 100_000, "clients": 8},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m soak",
        description=(
            "Run the local stack with Braze faults (5 % 500, 5 % 429 in every header variant, 2 % timeouts and "
            "dropped connections) and the sender killed at random points; send objects from concurrent clients "
            "through the API, deleting about 1 % of the users on the way; wait until the queue is empty; print "
            "accepted, delivered, rejected, lost, delivered twice and each deleted user's objects against the delete. "
            "Exit code 1 if anything was lost, a duplicate has no explanation or a delete's order was broken."
        ),
    )
    add = parser.add_argument
    add("--scale", choices=sorted(SCALES), default="full", help="small: CI (10,000 objects); full: 100,000")
    add("--objects", type=int, help="objects to send (default: the scale's)")
    add("--clients", type=int, help="concurrent clients (default: the scale's)")
    add("--seed", type=int, default=1, help="seed of the load, the Braze faults and the kills (default 1)")
    add("--kill-rate", type=float, default=0.2, help="share of sender invocations killed (default 0.2)")
    add(
        "--force-kill",
        action="append",
        choices=KILL_POINTS,
        metavar="POINT",
        help=f"kill at POINT first, in order (repeatable; default: each of {', '.join(KILL_POINTS)} once)",
    )
    add("--no-outage", action="store_true", help="no Braze outage in the middle of an invocation")
    add(
        "--deleted-share",
        type=float,
        default=0.01,
        metavar="SHARE",
        help="share of the users deleted while their objects are in flight (default 0.01; 0: no deletes)",
    )
    add(
        "--spare-from-receive",
        type=int,
        default=3,
        metavar="N",
        help="never kill (nor hit with the outage) a batch holding a message on its Nth receive or later (default 3)",
    )
    add("--json", metavar="PATH", help="also write the findings as JSON")
    add("--function-logs", metavar="PATH", help="where the functions' logs go (default: a temporary file)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale = SCALES[args.scale]
    console = sys.stdout
    log_path = Path(args.function_logs or Path(tempfile.gettempdir()) / f"braze-forwarder-soak-{os.getpid()}.log")
    # Before any function module is imported: Powertools' Logger keeps the stream it finds, and the
    # functions' logs (tens of thousands of lines) belong in a file, as in CloudWatch Logs.
    sys.stdout = log_path.open("a", buffering=1, encoding="utf-8")
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)  # Powertools warns when a killed invocation flushes no metrics

    def say(line: str = "") -> None:
        console.write(line + "\n")
        console.flush()

    from soak.report import render
    from soak.run import SoakOptions, run

    options = SoakOptions(
        objects=args.objects or scale["objects"],
        clients=args.clients or scale["clients"],
        seed=args.seed,
        kill_rate=args.kill_rate,
        forced_kills=list(KILL_POINTS) if args.force_kill is None else args.force_kill,
        spare_from_receive=args.spare_from_receive,
        outage=not args.no_outage,
        deleted_share=args.deleted_share,
    )
    say(f"Soak ({args.scale}): {options.objects:,} objects, {options.clients} clients, seed {options.seed}; "
        f"function logs in {log_path}")  # fmt: skip
    findings = run(options, say)
    say(render(findings, f"Soak result ({args.scale}, {time.strftime('%Y-%m-%d')}):", options.spare_from_receive))
    if args.json:
        Path(args.json).write_text(json.dumps(findings.to_json(), indent=2))
    return 0 if findings.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())

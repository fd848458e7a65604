"""`python -m local` (what `make run` runs): the whole pipeline on this machine, on loopback only.

Starts moto's server with template.yaml's resources, the Braze sandbox (or uses --braze-endpoint),
the API as API Gateway's HTTP API calls the functions, the SQS event sources, the schedules and
the Lambda Invoke API; replays events/ once and prints what happened; then serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

# The stack's modules (boto3, moto, the functions) are imported in main(), after this: "ready in"
# counts their import time too, and --help stays quick.
STARTED = time.monotonic()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local",
        description=(
            "Run the Braze forwarder on this machine: moto as the local AWS (template.yaml's queues, tables, "
            "secrets, buckets), a Braze sandbox, the HTTP API, the SQS event sources, the schedules and the "
            "Lambda Invoke API, all on 127.0.0.1. Replays events/ once and prints a report, then serves until "
            "Ctrl-C. Port 0 takes any free port (the ports in use are printed)."
        ),
    )
    add = parser.add_argument
    add(
        "--api-port",
        type=_port,
        metavar="PORT",
        default=3000,
        help="the HTTP API, as API Gateway serves it (default 3000)",
    )
    add(
        "--lambda-port",
        type=_port,
        metavar="PORT",
        default=3001,
        help="the Lambda Invoke API, as `sam local start-lambda` (3001)",
    )
    add("--aws-port", type=_port, metavar="PORT", default=5000, help="moto's server, the local AWS (default 5000)")
    add("--sandbox-port", type=_port, metavar="PORT", default=4000, help="the Braze sandbox (default 4000)")
    add(
        "--braze-endpoint",
        metavar="URL",
        help="send to this Braze REST endpoint instead of the sandbox, e.g. https://rest.fra-01.braze.eu; "
        "the REST API key is read from the BRAZE_API_KEY environment variable",
    )
    add(
        "--ingest-key",
        metavar="KEY",
        default=None,
        help="the key clients send as 'Authorization: Bearer KEY' (default: the one in events/ingest_track.json)",
    )
    add(
        "--webhook-secret",
        action="append",
        default=[],
        metavar="PROVIDER=SECRET",
        help="a provider's webhook signing secret, used instead of the one made for this run (repeatable), e.g. "
        "stripe=whsec_... as printed by `stripe listen --forward-to http://127.0.0.1:3000/webhooks/stripe`",
    )
    add("--no-demo", action="store_true", help="do not replay events/ at start")
    add(
        "--demo",
        action="store_true",
        help="replay events/ even with --braze-endpoint (it writes the sample users into that workspace)",
    )
    add(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="template parameters, as `sam deploy --parameter-overrides`, e.g. SenderBatchingWindowSeconds=1",
    )
    add(
        "--front-door",
        choices=sorted(FRONT_DOORS),
        default=None,
        help="what serves the ingest routes: http-api (the template's default) or function-url "
        "(the FrontDoor template parameter: a Lambda function URL on the API port)",
    )
    add("--function-logs", metavar="PATH", help="where the functions' logs go ('-': this console; default: a file)")
    add(
        "--sandbox-error-rate",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="fraction of Braze calls the sandbox answers 500",
    )
    add("--sandbox-rate-limited-rate", type=_rate, default=0.0, metavar="RATE", help="fraction the sandbox answers 429")
    add("--sandbox-latency", type=float, default=0.0, metavar="SECONDS", help="seconds added to every sandbox answer")
    add(
        "--sandbox-drop-rate",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="fraction of connections the sandbox drops unanswered",
    )
    add(
        "--sandbox-timeout-rate",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="fraction the sandbox processes and then answers only after 30 s",
    )
    add("--sandbox-seed", type=int, default=None, metavar="SEED", help="random seed for reproducible sandbox faults")
    return parser.parse_args(argv)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a rate is a fraction between 0 and 1")
    return value


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 0-65535 (0: any free port)")
    return port


# --front-door's choices → the template's FrontDoor parameter.
FRONT_DOORS = {"http-api": "HttpApi", "function-url": "FunctionUrl"}


def _overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"--parameter-overrides takes NAME=VALUE pairs, not {pair!r}")
        overrides[name] = value
    return overrides


def _webhook_secrets(pairs: list[str]) -> dict[str, list[str]]:
    secrets: dict[str, list[str]] = {}
    for pair in pairs:
        provider, sep, secret = pair.partition("=")
        if not sep or not provider.strip() or not secret.strip():
            # The value is a secret: the message never repeats it.
            raise argparse.ArgumentTypeError("--webhook-secret takes PROVIDER=SECRET, e.g. stripe=whsec_...")
        secrets.setdefault(provider.strip(), []).append(secret.strip())
    return secrets


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _function_logs(choice: str | None) -> tuple[TextIO, str | None]:
    """Send what the functions print (their JSON logs, metrics) to a file, as Lambda sends it to
    CloudWatch Logs, so that this console shows the stack's own story. Returns (console, path)."""
    console = sys.stdout
    if choice == "-":
        return console, None
    path = Path(choice) if choice else Path(tempfile.gettempdir()) / f"braze-forwarder-local-{os.getpid()}.log"
    # Line-buffered, so `tail -f` follows along. Replaced before any function module is imported:
    # Powertools' Logger keeps the stream it found at import.
    sys.stdout = path.open("a", buffering=1, encoding="utf-8")
    return console, str(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        overrides = _overrides(args.parameter_overrides)
        webhook_secrets = _webhook_secrets(args.webhook_secret)
        if args.front_door:
            if overrides.get("FrontDoor", FRONT_DOORS[args.front_door]) != FRONT_DOORS[args.front_door]:
                raise argparse.ArgumentTypeError("--front-door and --parameter-overrides FrontDoor=... disagree")
            overrides["FrontDoor"] = FRONT_DOORS[args.front_door]
    except argparse.ArgumentTypeError as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 2
    console, log_path = _function_logs(args.function_logs)
    # Only now: what the functions print from here on goes to their log (see _function_logs).
    from local.runtime import LocalRuntimeError
    from local.stack import Stack, StackError, StackOptions, default_ingest_key

    def say(line: str = "") -> None:
        console.write(line + "\n")
        console.flush()

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)  # `make run` under a supervisor stops with SIGTERM
    run_demo = (not args.no_demo) and (args.demo or not args.braze_endpoint)
    stack: Stack | None = None
    try:
        options = StackOptions(
            api_port=args.api_port,
            lambda_port=args.lambda_port,
            aws_port=args.aws_port,
            sandbox_port=args.sandbox_port,
            braze_endpoint=args.braze_endpoint,
            braze_api_key=os.environ.get("BRAZE_API_KEY") if args.braze_endpoint else None,
            ingest_key=args.ingest_key or default_ingest_key(),
            parameter_overrides=overrides,
            webhook_secrets=webhook_secrets,
            sandbox_error_rate=args.sandbox_error_rate,
            sandbox_rate_limited_rate=args.sandbox_rate_limited_rate,
            sandbox_latency_seconds=args.sandbox_latency,
            sandbox_drop_rate=args.sandbox_drop_rate,
            sandbox_timeout_rate=args.sandbox_timeout_rate,
            sandbox_seed=args.sandbox_seed,
        )
        say("Starting the local stack (template.yaml) on 127.0.0.1 …")
        stack = Stack(options).start()
        say(f"Ready in {time.monotonic() - STARTED:.1f} s:")
        for line in stack.describe():
            say(line)
        say(f"  ingest key          {options.ingest_key}   (Authorization: Bearer <key>)")
        say(f"  function logs       {log_path or 'this console'}")
        for note in stack.notes:
            say(f"  note: {note}")
        if args.braze_endpoint and not run_demo and not args.no_demo:
            say("  demo skipped: it would write the sample users into that Braze workspace (--demo runs it anyway)")
        say()
        if run_demo:
            from local.demo import run_demo as demo

            demo(stack, say)
            say()
        from local.demo import next_steps

        for line in next_steps(stack):
            say(line)
        say()
        say("Serving; Ctrl-C stops.")
        threading.Event().wait()  # until KeyboardInterrupt (Ctrl-C, or SIGTERM via _interrupt)
    except (StackError, LocalRuntimeError) as exc:
        say(f"local stack: {exc}")
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        if stack is not None:
            stopping = time.monotonic()
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C must not leave ports bound
                stack.stop()
            say(f"Stopped ({time.monotonic() - stopping:.1f} s).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

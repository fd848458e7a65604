"""Command line: python -m local.braze_sandbox --port 8181 --error-rate 0.05"""

import argparse
import contextlib
import logging
import signal
import sys
import threading
from typing import Any

from local.braze_sandbox.config import SandboxConfig
from local.braze_sandbox.core import BrazeSandbox
from local.braze_sandbox.rules import RATE_LIMIT_HEADER_CHOICES, TRACK_BATCH_MODES


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a rate is a fraction between 0 and 1")
    return value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(
        prog="python -m local.braze_sandbox",
        description="Run the Braze sandbox (a local Braze REST API stand-in) on 127.0.0.1 until interrupted.",
    )
    add = parser.add_argument
    add("--port", type=int, default=0, help="port to listen on (0 = any free port; the URL is printed)")
    add("--api-key", default=defaults.api_key, help="REST API key expected as 'Authorization: Bearer <key>'")
    add(
        "--track-batch-mode",
        choices=TRACK_BATCH_MODES,
        default=defaults.track_batch_mode,
        help="count the /users/track limit across the three arrays (total) or per array",
    )
    add(
        "--track-batch-limit",
        type=int,
        default=defaults.track_batch_limit,
        help="objects per /users/track call",
    )
    add(
        "--identify-batch-limit",
        type=int,
        default=defaults.identify_batch_limit,
        help="entries per /users/identify call",
    )
    add(
        "--rate-limit-requests",
        type=int,
        default=defaults.rate_limit_requests,
        help="requests per window, then 429",
    )
    add(
        "--rate-limit-window",
        type=float,
        default=defaults.rate_limit_window_seconds,
        help="window length in seconds",
    )
    add(
        "--rate-limit-header-style",
        choices=RATE_LIMIT_HEADER_CHOICES,
        default=defaults.rate_limit_header_style,
        help="headers on a 429 (rotate: each 429 the next style)",
    )
    add("--error-rate", type=_rate, default=0.0, help="fraction of calls answered 500 (nothing processed)")
    add(
        "--rate-limited-rate",
        type=_rate,
        default=0.0,
        help="fraction of calls answered 429 (nothing processed)",
    )
    add("--latency", type=float, default=0.0, help="seconds added before every answer")
    add(
        "--drop-rate",
        type=_rate,
        default=0.0,
        help="fraction of connections closed without an answer, unprocessed",
    )
    add(
        "--drop-after-processing-rate",
        type=_rate,
        default=0.0,
        help="fraction processed and then closed without an answer",
    )
    add(
        "--timeout-rate",
        type=_rate,
        default=0.0,
        help="fraction processed and then answered only after --timeout-sleep",
    )
    add(
        "--timeout-sleep",
        type=float,
        default=defaults.timeout_sleep_seconds,
        help="seconds a timeout fault stalls",
    )
    add(
        "--blocked-external-id",
        action="append",
        default=[],
        metavar="ID",
        help="external_id answered with BLACKLISTED_EXTERNAL_USER_ID (repeatable)",
    )
    add("--export-bucket", default=None, help="S3 bucket for export files (default: served by the sandbox)")
    add("--s3-endpoint-url", default=None, help="S3 endpoint for the export bucket, e.g. a moto server")
    add(
        "--export-users-per-file",
        type=int,
        default=defaults.export_users_per_file,
        help="users per export file",
    )
    add("--seed", type=int, default=None, help="random seed for reproducible faults")
    add("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="logging level")
    return parser.parse_args(argv)  # fmt: skip


def _config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        api_key=args.api_key,
        track_batch_mode=args.track_batch_mode,
        track_batch_limit=args.track_batch_limit,
        identify_batch_limit=args.identify_batch_limit,
        rate_limit_requests=args.rate_limit_requests,
        rate_limit_window_seconds=args.rate_limit_window,
        rate_limit_header_style=args.rate_limit_header_style,
        error_rate=args.error_rate,
        rate_limited_rate=args.rate_limited_rate,
        latency_seconds=args.latency,
        drop_rate=args.drop_rate,
        drop_after_processing_rate=args.drop_after_processing_rate,
        timeout_rate=args.timeout_rate,
        timeout_sleep_seconds=args.timeout_sleep,
        blocked_external_ids=set(args.blocked_external_id),
        export_bucket=args.export_bucket,
        s3_endpoint_url=args.s3_endpoint_url,
        export_users_per_file=args.export_users_per_file,
        seed=args.seed,
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = _config_from_args(args)
    except ValueError as exc:
        print(f"braze_sandbox: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # `make run` stops its children with SIGTERM
    with BrazeSandbox(config, port=args.port) as sandbox:
        print(f"Braze sandbox listening on {sandbox.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, or SIGTERM via _interrupt
            threading.Event().wait()
    print("Braze sandbox stopped", flush=True)
    return 0

"""Cold-start import time: each handler module next to `import boto3` alone, in fresh interpreters.

A Lambda cold start runs the handler module's imports once before the first event; everything the
module pulls in (Powertools, boto3, our package, settings) is in that figure. Each measurement is a
new interpreter that times only its own import (interpreter start-up is Lambda's, not ours); boto3
and the handler alternate, so a slow spell on this shared machine lands on both sides.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from bench.common import print_table

HANDLERS = (
    "functions.ingest_api.app",
    "functions.braze_sender.app",
    "functions.export_starter.app",
    "functions.export_callback.app",
    "functions.export_copier.app",
)
ROUNDS = 9
_PROBE = "import time; start = time.perf_counter(); import {module}; print(time.perf_counter() - start)"


def import_seconds(module: str, *, tracing: bool) -> float:
    environment = {
        **os.environ,
        "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",  # Powertools' Tracer only traces inside Lambda
    }
    answer = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return float(answer.stdout.strip().splitlines()[-1])


def run() -> list[list[str]]:
    rows = []
    for tracing in (False, True):
        for module in HANDLERS:
            base, handler = [], []
            for _ in range(ROUNDS):
                base.append(import_seconds("boto3", tracing=tracing))
                handler.append(import_seconds(module, tracing=tracing))
            ratios = [h / b for h, b in zip(handler, base, strict=True)]
            rows.append(
                [
                    module.split(".")[1],
                    "on" if tracing else "off",
                    f"{statistics.median(base) * 1000:.0f}",
                    f"{statistics.median(handler) * 1000:.0f}",
                    f"{statistics.median(ratios):.2f}x",
                ]
            )
    return rows


def main() -> None:
    print_table(
        "Cold-start import (fresh interpreter per import)",
        ["handler", "X-Ray", "import boto3 ms", "handler ms", "ratio"],
        run(),
        f"median of {ROUNDS} alternating pairs; ratio = median of the pairs' ratios; "
        "target ≤ 1.5x with tracing off (TracingEnabled=false, the default); "
        "with tracing on the X-Ray SDK's import builds an X-Ray client",
    )


if __name__ == "__main__":
    main()

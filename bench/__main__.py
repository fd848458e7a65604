"""`make bench`: every benchmark, one after another, each printing its table."""

import platform
import sys

from bench import (
    coldstart,
    common,  # noqa: F401  (sets the environment first)
    cost,
    datapoints,
    exports,
    ingest,
    latency,
    packing,
)


def main() -> None:
    # Lambda runs python3.12 (`make bench` picks it when installed); Python-heavy figures (ingest,
    # cold start) differ between versions.
    print(f"Python {platform.python_version()} ({sys.executable}) on {platform.machine()}, {sys.platform}")
    ingest.main()
    packing.main()
    datapoints.main()
    exports.main()
    coldstart.main()
    cost.main()
    latency.main()


if __name__ == "__main__":
    main()

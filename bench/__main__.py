"""`make bench`: every benchmark, one after another, each printing its table."""

import platform
import sys

from bench import (
    coldstart,
    common,  # noqa: F401  (sets the environment first)
    cost,
    datapoints,
    exports,
    import_stack,
    imports,
    ingest,
    latency,
    ordering,
    packing,
    rate_budget,
)


def main() -> None:
    # Lambda runs python3.12 (`make bench` picks it when installed); Python-heavy figures (ingest,
    # cold start) differ between versions.
    print(f"Python {platform.python_version()} ({sys.executable}) on {platform.machine()}, {sys.platform}")
    ingest.main()
    packing.main()
    datapoints.main()
    ordering.main()
    exports.main()
    imports.main()
    import_stack.main()
    coldstart.main()
    cost.main()
    latency.main()
    rate_budget.main()


if __name__ == "__main__":
    main()

"""`make bench`: every benchmark, one after another, each printing its table."""

from bench import (
    coldstart,
    common,  # noqa: F401  (sets the environment first)
    datapoints,
    exports,
    ingest,
    latency,
    packing,
)


def main() -> None:
    ingest.main()
    packing.main()
    datapoints.main()
    exports.main()
    coldstart.main()
    latency.main()


if __name__ == "__main__":
    main()

"""Measuring helpers: medians of repeated runs, and the table every benchmark prints."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "braze-forwarder")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BrazeForwarderBench")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


def median_seconds(
    run: Callable[[], object], *, repeats: int = 7, number: int | None = None, budget_seconds: float = 0.4
) -> float:
    """Median over `repeats` rounds of the mean time of one run; rounds are sized to ~budget/repeats."""
    if number is None:
        start = time.perf_counter()
        run()
        once = max(time.perf_counter() - start, 1e-7)
        number = max(1, int(budget_seconds / repeats / once))
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            run()
        rounds.append((time.perf_counter() - start) / number)
    return statistics.median(rounds)


def paired_seconds(
    baseline: Callable[[], object],
    candidate: Callable[[], object],
    *,
    rounds: int = 15,
    budget_seconds: float = 0.8,
) -> tuple[float, float, float]:
    """(baseline median, candidate median, median of per-round ratios), the two timed alternately.

    On a shared machine a slow spell lasts longer than one round; timing both in the same round
    and taking the median of the ratios keeps a spell from landing on one side only. Both are
    single-threaded and CPU-bound, so they are timed in this process's CPU time: waiting for a core
    another process holds is not their cost.
    """
    numbers = [_iterations(run, budget_seconds / 2 / rounds) for run in (baseline, candidate)]
    base_times, candidate_times, ratios = [], [], []
    for _ in range(rounds):
        base = _mean_seconds(baseline, numbers[0])
        other = _mean_seconds(candidate, numbers[1])
        base_times.append(base)
        candidate_times.append(other)
        ratios.append(other / base)
    return statistics.median(base_times), statistics.median(candidate_times), statistics.median(ratios)


def _iterations(run: Callable[[], object], seconds: float) -> int:
    start = time.process_time()
    run()
    return max(1, int(seconds / max(time.process_time() - start, 1e-7)))


def _mean_seconds(run: Callable[[], object], number: int) -> float:
    start = time.process_time()
    for _ in range(number):
        run()
    return (time.process_time() - start) / number


def print_table(title: str, header: list[str], rows: list[list[str]], how: str) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:>{w}}}" for w in widths)
    print(f"\n{title}")
    print(line.format(*header))
    for row in rows:
        print(line.format(*row))
    print(f"  how: {how}")

"""What the sandbox counts (calls, answers, faults, objects per call), read by its inspection routes."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Stats:
    calls: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    objects: dict[str, Counter[int]] = field(default_factory=dict)  # path → {objects in call: calls}
    faults: Counter[str] = field(default_factory=Counter)
    rate_limit_styles: Counter[str] = field(default_factory=Counter)  # 429 answers by header style
    scripted: int = 0
    exports_done: int = 0
    exports_failed: int = 0

    def count_call(self, path: str, objects: int | None) -> None:
        self.calls[path] += 1
        if objects is not None:
            self.objects.setdefault(path, Counter())[objects] += 1

    def count_status(self, path: str, status: int | None) -> None:
        self.statuses.setdefault(path, Counter())["dropped" if status is None else str(status)] += 1

    def to_json(self, profiles: int, data_points: int) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "statuses": {path: dict(counts) for path, counts in self.statuses.items()},
            "objects_per_call": {path: _histogram_summary(h) for path, h in self.objects.items()},
            "rate_limited": self.faults["rate_limited_real"],
            "faults_injected": {k: v for k, v in self.faults.items() if k != "rate_limited_real"},
            "rate_limit_styles": dict(self.rate_limit_styles),
            "scripted": self.scripted,
            "data_points": data_points,
            "profiles": profiles,
            "exports": {"done": self.exports_done, "failed": self.exports_failed},
        }


def _histogram_summary(histogram: Counter[int]) -> dict[str, Any]:
    calls = sum(histogram.values())
    total = sum(size * count for size, count in histogram.items())
    return {
        "calls": calls,
        "objects": total,
        "min": min(histogram) if histogram else 0,
        "max": max(histogram) if histogram else 0,
        "mean": round(total / calls, 2) if calls else 0,
        "histogram": {str(size): histogram[size] for size in sorted(histogram)},
    }

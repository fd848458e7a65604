"""Injected faults: 500s and 429s (unprocessed), stalls (latency, timeouts after processing) and dropped
connections, drawn from a seeded random stream so that a seed replays the same sequence.
"""

import random
import threading
from typing import NamedTuple

from local.braze_sandbox.answers import _Answer
from local.braze_sandbox.config import RecordedRequest, SandboxConfig
from local.braze_sandbox.stats import _Stats


class _FaultDraw(NamedTuple):
    drop: float
    timeout: float
    error: float
    rate_limited: float
    drop_after: float


class _Faults:
    """Fault draws and stalls, mixed into `BrazeSandbox` (core.py); `_answer_api` decides where each applies."""

    # BrazeSandbox's state that this mixin uses (core.py sets it).
    config: SandboxConfig
    _lock: threading.RLock
    _stats: _Stats
    _stopping: threading.Event
    _fault_rng: random.Random
    _data_rng: random.Random
    _rotation: int

    def _fault(self, record: RecordedRequest, kind: str, answer: "_Answer | None") -> "_Answer | None":
        with self._lock:
            record.fault = kind
            self._stats.faults[kind] += 1
        return answer

    def _draw_faults(self) -> "_FaultDraw":
        # Always five draws per request, in a fixed order, so that a seed gives the same fault
        # sequence whichever rates are switched on.
        with self._lock:
            return _FaultDraw(*(self._fault_rng.random() for _ in range(5)))

    def _pause(self, seconds: float) -> bool:
        """Sleep unless the sandbox is stopping; False means it is stopping."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def _injected_rate_limited(self, limit: int | None = None) -> "_Answer":
        """An injected 429 announcing `limit` (the route family's window; default /users/track's)."""
        limit = self.config.rate_limit_requests if limit is None else limit
        return self._too_many_requests(limit, float(self.config.injected_retry_after_seconds))

    def _seed_random(self) -> None:
        seed = self.config.seed
        self._fault_rng = random.Random(seed)
        self._rotation = 0  # the next 429's header style, in "rotate" mode
        # Separate stream for braze_ids and random buckets, so data never shifts the fault sequence.
        self._data_rng = random.Random(None if seed is None else seed + 1)

"""`pytest --clock=SPEC`: run the tests on another day, so none depends on the day it runs.

The suite once turned red a day after it was written (a fixture's fixed day met the real clock).
`--clock` moves the clock that the tests and the code under test read — time.time, datetime.now,
date.today, time.gmtime/localtime/strftime, in every thread (time-machine patches them in C) —
while time.monotonic and time.perf_counter stay real, so timeouts, backoff and hypothesis'
deadlines behave as they do on any day. SPEC is one of:

  +366d, -400d          the whole run that many days ahead of (or behind) today, the clock ticking
  2030-02-28T23:59:58Z  the run starts at that instant and the clock ticks on from there
  month-ends            every test starts one second before a UTC midnight that ends a month, each
                        test a month later than the one before, from about a year and a month ahead:
                        whatever a test does across midnight, a month end or (every 12th) a year end

Time only moves forward from test to test, so state that outlives a test (a module's stack) sees
a clock that jumps, never one that runs back. Subprocesses (the local stack, the console script)
keep the real clock. `make test` runs the tests marked `clock` once more with `--clock=month-ends`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

_OFFSET = re.compile(r"([+-])(\d{1,5})d")
_MONTH_ENDS = "month-ends"
_MONTHS_AHEAD = 13


@dataclass
class _Clock:
    travel: time_machine.travel
    coordinates: time_machine.Coordinates
    today: datetime  # the real time the run started
    tests_started: int = 0


_CLOCK = pytest.StashKey[_Clock]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock",
        metavar="SPEC",
        default=None,
        help="run on another day: +366d, -400d, an instant such as 2030-02-28T23:59:58Z, or month-ends "
        "(each test starts a second before a month ends); see tests/clock.py",
    )


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("--clock")
    if spec:
        today = datetime.now(UTC)
        travel = time_machine.travel(_first_instant(spec, today), tick=True)
        config.stash[_CLOCK] = _Clock(travel, travel.start(), today)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CLOCK in config.stash:
        config.stash[_CLOCK].travel.stop()


def pytest_report_header(config: pytest.Config) -> str | None:
    spec = config.getoption("--clock")
    return f"clock: --clock={spec}, the run starts at {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}" if spec else None


@pytest.fixture(autouse=True)
def _month_end_clock(request: pytest.FixtureRequest) -> Iterator[None]:
    """With --clock=month-ends, each test starts a second before its own month end."""
    if request.config.getoption("--clock") == _MONTH_ENDS:
        clock = request.config.stash[_CLOCK]
        clock.tests_started += 1
        clock.coordinates.move_to(_month_end(clock.today, clock.tests_started) - timedelta(seconds=1))
    yield


def _first_instant(spec: str, today: datetime) -> datetime:
    if spec == _MONTH_ENDS:
        return _month_end(today, 0) - timedelta(seconds=1)
    offset = _OFFSET.fullmatch(spec)
    if offset:
        days = int(offset.group(2))
        return today + timedelta(days=days if offset.group(1) == "+" else -days)
    try:
        instant = datetime.fromisoformat(spec.replace("Z", "+00:00"))
    except ValueError:
        raise pytest.UsageError(
            f"--clock must be +Nd, -Nd, an ISO instant such as 2030-02-28T23:59:58Z, or month-ends, not {spec!r}"
        ) from None
    if instant.tzinfo is None:
        raise pytest.UsageError(f"--clock's instant needs its time zone, e.g. {spec}Z")
    return instant


def _month_end(today: datetime, months: int) -> datetime:
    """The UTC midnight that ends the month `_MONTHS_AHEAD + months` months after today's."""
    month_index = today.year * 12 + today.month - 1 + _MONTHS_AHEAD + months + 1
    return datetime(month_index // 12, month_index % 12 + 1, 1, tzinfo=UTC)

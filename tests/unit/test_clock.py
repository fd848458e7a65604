"""tests/clock.py, the --clock option that runs the suite on other days: where it puts the clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.clock import _first_instant, _month_end

TODAY = datetime(2026, 12, 7, 2, 39, tzinfo=UTC)


def test_month_ends_start_a_year_and_a_month_ahead_and_cross_a_year_every_twelfth_test() -> None:
    assert _month_end(TODAY, 0) == datetime(2028, 2, 1, tzinfo=UTC)  # January 2028 ends
    assert _month_end(TODAY, 10) == datetime(2028, 12, 1, tzinfo=UTC)
    assert _month_end(TODAY, 11) == datetime(2029, 1, 1, tzinfo=UTC)  # a year ends
    assert _first_instant("month-ends", TODAY) == datetime(2028, 1, 31, 23, 59, 59, tzinfo=UTC)


def test_offsets_and_instants() -> None:
    assert _first_instant("+366d", TODAY) == datetime(2027, 12, 8, 2, 39, tzinfo=UTC)
    assert _first_instant("-400d", TODAY) == datetime(2025, 11, 2, 2, 39, tzinfo=UTC)
    assert _first_instant("2030-02-28T23:59:58Z", TODAY) == datetime(2030, 2, 28, 23, 59, 58, tzinfo=UTC)


@pytest.mark.parametrize("spec", ["tomorrow", "+1y", "2030-02-28T23:59:58"])
def test_a_spec_it_cannot_read_is_a_usage_error(spec: str) -> None:
    with pytest.raises(pytest.UsageError):
        _first_instant(spec, TODAY)

"""`make lint`'s ruff and mypy checks, run by `make test` too, so a change that breaks them cannot land."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff_reports_nothing(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"ruff {' '.join(command)} (make format fixes most):\n{result.stdout}{result.stderr}"


def test_mypy_reports_nothing() -> None:
    # [tool.mypy] in pyproject.toml names the files. The cache lives in the environment running the
    # tests (.venv/.mypy_cache, as make lint's): a fresh clone checks everything once (seconds), then
    # only what changed.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(Path(sys.prefix) / ".mypy_cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"mypy:\n{result.stdout}{result.stderr}"

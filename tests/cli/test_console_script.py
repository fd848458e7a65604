"""`braze-forwarder`: the console script make setup installs (pyproject.toml), and `python -m cli`."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path

import cli.__main__

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sysconfig.get_path("scripts")) / "braze-forwarder"


def without_pythonpath() -> dict[str, str]:
    # As a shell outside make has it: no PYTHONPATH, so only the installation can find the code.
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def test_the_entry_point_is_the_command_lines_main() -> None:
    [script] = entry_points(group="console_scripts", name="braze-forwarder")

    assert script.value == "cli.__main__:main"
    assert script.load() is cli.__main__.main


def test_the_installed_command_runs_the_working_trees_code_from_anywhere(tmp_path: Path) -> None:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: run make setup"

    run = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, cwd=tmp_path, env=without_pythonpath(), timeout=60
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: braze-forwarder")
    assert all(command in run.stdout for command in ("rejects", "dlq", "exports", "backfill"))
    # The sub-commands import the shared layer's package lazily: it is found the same way.
    found = subprocess.run(
        [sys.executable, "-c", "import braze_forwarder.exports.jobs, cli; print(cli.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=without_pythonpath(),
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).resolve() == (ROOT / "cli" / "__init__.py").resolve()


def test_python_m_cli_still_works() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "cli", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=without_pythonpath(),
        timeout=60,
    )
    assert run.returncode == 0 and run.stdout.startswith("usage: braze-forwarder"), run.stderr

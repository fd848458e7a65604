"""A tiny soak, end to end: `python -m soak` as `make soak` runs it, in a process of its own (the
stack sets the functions' environment process-wide and moto's state is global), on free ports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soak.kills import KILL_POINTS

pytestmark = pytest.mark.local

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_soak_loses_nothing_and_explains_every_duplicate(tmp_path: Path) -> None:
    findings_path = tmp_path / "findings.json"
    started = time.monotonic()
    # Faults and the outage on (the defaults), one forced kill at every point and no random ones.
    # Kills and the outage only meet first receives, and 5,000 objects make enough batches for all
    # of them: the run waits for the visibility timeout once.
    run = subprocess.run(
        [
            sys.executable, "-m", "soak", "--scale", "small", "--objects", "5000", "--clients", "3", "--seed", "7",
            "--kill-rate", "0", "--spare-from-receive", "2",
            "--json", str(findings_path), "--function-logs", str(tmp_path / "functions.log"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    seconds = time.monotonic() - started

    assert run.returncode == 0, run.stdout + run.stderr
    findings = json.loads(findings_path.read_text())
    assert findings["passed"] and findings["drained"], run.stdout
    assert (findings["lost"], findings["unexplained"]) == (0, 0), run.stdout
    # 5,000 objects, plus those of the 50 deleted users sent around their deletes.
    assert findings["accepted"] + sum(findings["rejected_at_ingest"].values()) == findings["objects_sent"] > 5000
    deleted = findings["deletions"]
    assert (deleted["users"], deleted["delivered"]) == (50, 50), run.stdout  # 1 % of the soak's 5,000 users
    assert deleted["kept_promises"] and deleted["before_delivered_after"] == 0, run.stdout
    assert deleted["after"] > 0 and deleted["after_delivered_after"] == deleted["after"], run.stdout
    assert deleted["dropped_objects"] > 0  # objects were in flight when their user was deleted
    assert findings["held_resent"] > 0  # and some were sent after it, held until it reached Braze
    assert (
        findings["delivered"] + sum(findings["rejected_by_braze"].values()) + deleted["dropped_objects"]
        >= findings["accepted"]
    )
    assert set(findings["kills"]) == set(KILL_POINTS), run.stdout
    assert findings["delivered_twice"] > 0  # the kills after Braze's 2xx must show
    assert sum(findings["window_kill"].values()) > 0
    assert findings["rate_limit_styles"], run.stdout  # 429s reached the sender
    assert "lost" in run.stdout and "delivered twice" in run.stdout
    assert seconds < 100, run.stdout  # the deletes' fence (about 40 s) runs into the drain

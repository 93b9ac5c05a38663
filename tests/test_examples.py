"""The example scripts run as users run them, and print what they promise."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_script(name: str) -> str:
    completed = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_quickstart_learns_the_best_arm_and_prints_the_table():
    output = run_script("quickstart.py")
    for column in ("pulls", "mean reward", "95% interval"):
        assert column in output
    assert "Clicks:" in output


@pytest.mark.slow
def test_adversarial_example_shows_ucb1_exploited_and_exp3_not():
    output = run_script("adversarial.py")
    assert "EXP3" in output and "UCB1" in output and "best fixed arm" in output


def test_open_bandit_example_estimates_the_thompson_policy():
    from tests.ope.conftest import obd_path

    obd_path()  # fails loudly in CI when the data is missing
    output = run_script("ope_open_bandit.py")
    assert "on-policy" in output and "ips" in output
    assert "crossed ridge for all arms (l2=1, 41 action features)" in output


def test_end_to_end_example_serves_archives_evaluates_and_reports(tmp_path):
    """A real service in a child process, decisions and rewards over HTTP, a Parquet archive, an HTML report."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "end_to_end.py"), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert time.perf_counter() - started < 60  # "well under a minute"; about 15 s on a quiet machine
    output = completed.stdout
    assert "served 3,000 decisions over HTTP" in output and "archived 3,000 decisions" in output
    archive = list((tmp_path / "archive" / "experiment=banner").glob("date=*/part-0.parquet"))
    assert len(archive) == 1
    recommendation = next(line for line in output.splitlines() if line.startswith("recommend"))
    assert recommendation.startswith("recommend 'by device' by dr")  # the contextual candidate, truly the best
    html = (tmp_path / "report.html").read_text()
    assert "by device" in html and "recommend" in html


def test_delayed_feedback_example_runs_every_pattern(tmp_path, capsys):
    """The full run takes a minute; the same code on a shorter horizon, plot included."""
    spec = importlib.util.spec_from_file_location("delayed_feedback", EXAMPLES / "delayed_feedback.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.HORIZON, module.REPLICATIONS = 400, 8
    plot = tmp_path / "delayed.png"
    module.main(str(plot))
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(module.PATTERNS)
    assert plot.stat().st_size > 0


def test_drifting_config_says_where_the_arms_cross():
    """The comment of examples/drifting.toml states the steps where the best arm changes; they are true."""
    from banditkit.sim.config import load_config

    path = EXAMPLES / "drifting.toml"
    environment = load_config(path).environment
    steps = np.arange(10_001)
    means = environment.means_at(steps)
    best = means.argmax(axis=1)
    changes = steps[1:][best[1:] != best[:-1]]
    assert len(changes) == 2 and abs(changes[0] - 2500) <= 1 and abs(changes[1] - 7500) <= 1  # ties at the crossings
    assert best[0] == 0 and best[5000] == 1 and best[10_000] == 2
    np.testing.assert_allclose(means[2500, :2], [0.5, 0.5])
    np.testing.assert_allclose(means[7500, 1:], [0.6, 0.6])
    comment = " ".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert "crossing at step 2,500" in comment and "crossing at step 7,500" in comment
    assert "5,000" not in comment

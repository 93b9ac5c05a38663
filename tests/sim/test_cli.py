"""``banditkit simulate``: files on disk, a table, clear errors for bad configs."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from banditkit.cli import app

CONFIG = """
title = "two arms"
[run]
horizon = 300
replications = 4
seed = 1
[environment]
kind = "bernoulli"
means = [0.3, 0.6]
[policies.TS]
name = "thompson"
[policies.UCB1]
name = "ucb1"
"""


def test_simulate_writes_results_table_and_plot(tmp_path):
    config = tmp_path / "experiment.toml"
    config.write_text(CONFIG)
    outcome = CliRunner().invoke(app, ["simulate", str(config), "--out", str(tmp_path / "out")])
    assert outcome.exit_code == 0, outcome.output
    assert "UCB1" in outcome.output and "Lai-Robbins constant" in outcome.output
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["policies"] == ["TS", "UCB1"] and result["horizon"] == 300
    assert (tmp_path / "out" / "regret.png").stat().st_size > 10_000
    assert "| TS |" in (tmp_path / "out" / "summary.md").read_text()


def test_bad_config_exits_with_the_key_named(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(CONFIG.replace("means = [0.3, 0.6]", "means = [0.3, 1.6]"))
    outcome = CliRunner().invoke(app, ["simulate", str(config), "--out", str(tmp_path / "out")])
    assert outcome.exit_code == 2
    assert "environment.means" in outcome.output and "1.6" in outcome.output
    assert not (tmp_path / "out").exists()

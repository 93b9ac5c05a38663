"""``banditkit evaluate`` end to end on files: the service's CSV export, policy files, errors."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

import banditkit as bk
from banditkit.cli import app

from .conftest import make_problem, service_rows
from .test_logs import write_csv

runner = CliRunner(env={"COLUMNS": "200"})


def service_log(tmp_path, n=800):
    rng = np.random.default_rng(3)
    problem = make_problem(rng, n=n)
    path = tmp_path / "decisions.csv"
    write_csv(path, service_rows(problem, rng))
    return path, problem


def test_evaluate_a_saved_bandit_on_the_service_export(tmp_path):
    path, _ = service_log(tmp_path)
    bandit = bk.Bandit(["red", "green", "blue", "gold"], policy="epsilon_greedy", seed=0)
    bandit.update_many(["gold"] * 30 + ["red"] * 30, [1.0] * 30 + [0.0] * 30)
    policy = tmp_path / "bandit.json"
    policy.write_text(bandit.to_json())
    out = tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(path),
            "--policy",
            str(policy),
            "--estimators",
            "ips,snips,dr",
            "--out",
            str(out),
            "--bootstrap",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "snips" in result.output and "95% bootstrap" in result.output
    report = json.loads(out.read_text())
    assert [row["estimator"] for row in report["estimates"]] == ["ips", "snips", "dr"]
    # epsilon-greedy exploiting "gold": the estimate lies between the arms' mean rewards.
    assert 0.0 < report["estimates"][1]["value"] < 1.0


def test_policy_by_name_and_an_explicit_array(tmp_path):
    path, problem = service_log(tmp_path)
    assert runner.invoke(app, ["evaluate", str(path), "--policy", "epsilon_greedy", "--bootstrap", "50"]).exit_code == 0
    target = tmp_path / "target.npy"
    np.save(target, problem.target)
    result = runner.invoke(app, ["evaluate", str(path), "-p", str(target), "-e", "ips", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output


def test_small_effective_sample_size_warns(tmp_path):
    path, _ = service_log(tmp_path, n=400)
    target = tmp_path / "target.npy"
    always_gold = np.zeros((400, 4))
    always_gold[:, 3] = 1.0
    target_rare = always_gold.copy()
    np.save(target, target_rare)
    result = runner.invoke(app, ["evaluate", str(path), "-p", str(target), "-e", "ips", "--bootstrap", "0"])
    assert result.exit_code == 0
    assert "warning" in result.output and "effective sample size" in result.output


def test_a_bad_log_exits_with_its_message(tmp_path):
    path = tmp_path / "bad.csv"
    write_csv(path, [{"arm": "a", "reward": 1.0, "propensity": 0.0}])
    result = runner.invoke(app, ["evaluate", str(path), "--policy", "thompson"])
    assert result.exit_code == 2
    assert "propensity must be in (0, 1]" in result.output

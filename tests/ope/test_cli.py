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


def test_compare_candidates_and_write_a_report_folder(tmp_path):
    path, problem = service_log(tmp_path)
    target = tmp_path / "target.npy"
    np.save(target, problem.target)
    behaviour = tmp_path / "behaviour.npy"
    np.save(behaviour, problem.behaviour)
    out = tmp_path / "report"
    candidates = ["-p", f"new={target}", "-p", f"current={behaviour}", "-p", "ts=thompson"]
    options = ["-e", "ips,snips", "--bootstrap", "100", "--out", str(out)]
    result = runner.invoke(app, ["evaluate", str(path), *candidates, *options])
    assert result.exit_code == 0, result.output
    assert "candidate" in result.output and "vs logged" in result.output and "current" in result.output
    assert "recommend" in result.output
    report = json.loads((out / "report.json").read_text())
    expected = ["new", "new", "current", "current", "ts", "ts", "logged policy"]
    assert [row["candidate"] for row in report["estimates"]] == expected
    assert report["recommendation"].startswith(("recommend", "no recommendation"))
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_one_target_writes_a_folder_too_and_bad_candidate_names_fail(tmp_path):
    path, _ = service_log(tmp_path, n=300)
    out = tmp_path / "single"
    options = ["-e", "ips", "--bootstrap", "0", "-o", str(out)]
    result = runner.invoke(app, ["evaluate", str(path), "-p", "thompson", *options])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.png"]
    twice = runner.invoke(app, ["evaluate", str(path), "-p", "a=thompson", "-p", "a=ucb1"])
    assert twice.exit_code == 2 and "names candidate 'a' twice" in twice.output
    unknown = runner.invoke(app, ["evaluate", str(path), "-p", "a=thompson", "-p", "b=no_such_policy"])
    assert unknown.exit_code == 2 and "candidate 'b'" in unknown.output and "no_such_policy" in unknown.output


def test_model_rows_fits_the_reward_model_on_the_first_rows(tmp_path):
    path, _ = service_log(tmp_path)
    out = tmp_path / "report.json"
    options = ["-p", "thompson", "-e", "dm,dr", "--bootstrap", "50", "--seed", "4"]
    result = runner.invoke(app, ["evaluate", str(path), *options, "--model-rows", "200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    target = bk.Bandit(["red", "green", "blue", "gold"], policy="thompson")
    expected = bk.ope.evaluate(bk.ope.load_log(path), target, ["dm", "dr"], n_bootstrap=50, rng=4, model_rows=200)
    whole = bk.ope.evaluate(bk.ope.load_log(path), target, ["dm", "dr"], n_bootstrap=50, rng=4)
    values = [row["value"] for row in json.loads(out.read_text())["estimates"]]
    assert values == [expected["dm"].value, expected["dr"].value]
    assert values != [whole["dm"].value, whole["dr"].value]  # the sample changed the model


def test_model_rows_below_two_names_the_flag(tmp_path):
    path, _ = service_log(tmp_path)
    result = runner.invoke(app, ["evaluate", str(path), "-p", "thompson", "-e", "dr", "--model-rows", "1"])
    assert result.exit_code == 2
    assert "--model-rows" in result.output and "model_rows" not in result.output.replace("--model-rows", "")

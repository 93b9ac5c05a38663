"""evaluate() with several candidates: same estimates as one at a time, ratios, the recommendation, plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import banditkit as bk
from banditkit.errors import InvalidParameterError, InvalidTypeError
from banditkit.ope import Comparison, Report, evaluate, load_log

from .conftest import draw_log, make_problem

# Four rows, two arms, uniform log: mean logged reward 0.5. "first" always plays arm 0 (rewards 1, 1),
# "second" arm 1 (rewards 0, 0): IPS values 1.0 and 0.0, ratios to the logged value 2 and 0.
GOLDEN_LOG = {"arm": [0, 1, 0, 1], "reward": [1.0, 0.0, 1.0, 0.0], "propensity": [0.5] * 4}
GOLDEN_TARGETS = {"first": np.array([[1.0, 0.0]]), "second": np.array([[0.0, 1.0]])}


@pytest.fixture(scope="module")
def problem_log():
    rng = np.random.default_rng(8)
    problem = make_problem(rng, n=3000)
    arms, rewards, propensities = draw_log(problem, rng)
    columns = {"arm": arms, "reward": rewards, "propensity": propensities}
    columns.update({f"x{j}": problem.contexts[:, j] for j in range(problem.contexts.shape[1])})
    return problem, load_log(columns)


def test_golden_values_and_ratios():
    report = evaluate(GOLDEN_LOG, GOLDEN_TARGETS, ["ips", "snips"], n_bootstrap=0)
    assert isinstance(report, Comparison) and list(report) == ["first", "second"]
    assert report["first"]["ips"].value == 1.0 and report["second"]["snips"].value == 0.0
    assert report.logged.value == 0.5
    assert report.ratios["first"]["ips"].value == 2.0 and report.ratios["second"]["ips"].value == 0.0
    assert len(report) == 2
    with pytest.raises(KeyError, match=r"no candidate 'third'; the report holds \['first', 'second'\]"):
        report["third"]
    rows = report.rows()
    assert [(row["candidate"], row["estimator"]) for row in rows] == [
        ("first", "ips"),
        ("first", "snips"),
        ("second", "ips"),
        ("second", "snips"),
        ("logged policy", "logged"),
    ]
    assert rows[-1]["ratio"] == 1.0


def test_each_candidate_gets_what_a_one_target_evaluate_gives(problem_log):
    problem, log = problem_log
    bandit = bk.Bandit(["0", "1", "2", "3"], policy="linucb", n_features=3, seed=0)
    candidates = {"target": problem.target, "behaviour": problem.behaviour, "linucb": bandit}
    names = ["ips", "snips", "dm", "dr", "switch_dr"]
    report = evaluate(log, candidates, names, n_bootstrap=200, rng=4)
    for name, target in candidates.items():
        alone = evaluate(log, target, names, n_bootstrap=0, rng=4)
        assert isinstance(alone, Report)
        for estimator in names:
            assert report[name][estimator].value == pytest.approx(alone[estimator].value, rel=1e-12), (name, estimator)


def test_ratio_interval_from_the_shared_bootstrap(problem_log):
    problem, log = problem_log
    report = evaluate(log, {"behaviour": problem.behaviour, "target": problem.target}, ["ips", "snips"], rng=1)
    # The logging policy evaluated on its own log: every weight is 1, so its value is the logged mean in every
    # resample and the ratio's interval is [1, 1] -- only if both sides share the resamples (independent
    # resamples would give an interval about 0.1 wide here).
    for estimator in ("ips", "snips"):
        ratio = report.ratios["behaviour"][estimator]
        assert (ratio.value, ratio.low, ratio.high) == pytest.approx((1.0, 1.0, 1.0), rel=1e-12)
    assert report["behaviour"]["ips"].high - report["behaviour"]["ips"].low > 0.02
    target = report.ratios["target"]["snips"]
    estimate = report["target"]["snips"]
    assert target.value == pytest.approx(estimate.value / report.logged.value)
    # The interval of a ratio of positively correlated estimates is narrower than the naive one.
    naive = (estimate.low / report.logged.high, estimate.high / report.logged.low)
    assert naive[0] < target.low < target.value < target.high < naive[1]


def test_recommendation_picks_only_a_clear_winner(problem_log):
    problem, log = problem_log
    clear = evaluate(log, {"target": problem.target, "behaviour": problem.behaviour}, ["snips", "dr"], rng=2)
    assert clear.recommendation.startswith("recommend 'target' by dr")
    assert "better than the logged policy" in clear.recommendation
    twins = evaluate(log, {"a": problem.target, "b": problem.target}, ["snips"], rng=2)
    assert twins.recommendation.startswith("no recommendation") and "overlaps 'b'" in twins.recommendation
    without_bootstrap = evaluate(log, {"target": problem.target}, ["snips"], n_bootstrap=0)
    assert "no interval on the ratio" in without_bootstrap.recommendation
    assert math.isnan(without_bootstrap.ratios["target"]["snips"].low)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n_rows=st.integers(1, 60), n_candidates=st.integers(1, 3))
def test_ratios_and_values_match_one_target_evaluations(seed, n_rows, n_candidates):
    rng = np.random.default_rng(seed)
    propensities = rng.uniform(0.2, 0.5, n_rows)
    columns = {"arm": rng.integers(0, 2, n_rows), "reward": rng.random(n_rows), "propensity": propensities}
    log = load_log(columns, arms=["0", "1"])
    candidates = {f"c{i}": rng.dirichlet([1.0, 1.0], n_rows) for i in range(n_candidates)}
    report = evaluate(log, candidates, ["ips", "snips"], n_bootstrap=20, rng=seed)
    assert report.logged.value == pytest.approx(np.mean(columns["reward"]))
    for name, target in candidates.items():
        alone = evaluate(log, target, ["ips", "snips"], n_bootstrap=0)
        for estimator in ("ips", "snips"):
            value = report[name][estimator].value
            assert value == pytest.approx(alone[estimator].value, rel=1e-12, abs=1e-15)
            assert report.ratios[name][estimator].value == pytest.approx(value / report.logged.value, nan_ok=True)
            ratio = report.ratios[name][estimator]
            assert math.isnan(ratio.low) or ratio.low <= ratio.high
    assert report.recommendation.startswith(("recommend", "no recommendation"))


def test_too_few_rows_refuse_to_recommend():
    report = evaluate(GOLDEN_LOG, GOLDEN_TARGETS, ["ips"], n_bootstrap=50)
    assert report.recommendation.startswith("no recommendation") and "no interval" in report.recommendation


def test_warnings_name_the_candidate():
    log = {"arm": [0] * 190 + [1] * 10, "reward": [1.0] * 200, "propensity": [0.5] * 200}
    report = evaluate(log, {"rare": np.array([[0.0, 1.0]])}, ["ips"], n_bootstrap=0)
    assert any(warning.startswith("rare: ips: effective sample size") for warning in report.warnings)


def test_bad_candidates_are_named():
    with pytest.raises(InvalidParameterError, match="at least one candidate"):
        evaluate(GOLDEN_LOG, {}, ["ips"])
    with pytest.raises(InvalidParameterError, match=r"candidate 'broken': target probabilities must sum to 1"):
        evaluate(GOLDEN_LOG, {"ok": np.array([[1.0, 0.0]]), "broken": np.array([[0.7, 0.7]])}, ["ips"])
    with pytest.raises(InvalidTypeError, match="candidate names"):
        evaluate(GOLDEN_LOG, {3: np.array([[1.0, 0.0]])}, ["ips"])


def test_plot_and_html_are_self_contained(tmp_path):
    pytest.importorskip("matplotlib")
    report = evaluate(_repeated(GOLDEN_LOG, 10), GOLDEN_TARGETS, ["ips", "snips"])
    figure = report.plot(tmp_path / "ope.png")
    assert (tmp_path / "ope.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figure.axes[0].get_yticklabels()) == 4
    report.to_html(tmp_path / "ope.html")
    page = (tmp_path / "ope.html").read_text()
    assert "data:image/png;base64," in page and report.recommendation.replace("'", "&#x27;") in page
    assert "http" not in page.replace("data:image", ""), "no external resource"
    single = evaluate(_repeated(GOLDEN_LOG, 10), GOLDEN_TARGETS["first"], ["ips", "snips"])
    single.plot(tmp_path / "single.png")
    single.to_html(tmp_path / "single.html")
    assert "<td>snips</td>" in (tmp_path / "single.html").read_text()


def _repeated(log: dict, times: int) -> dict:
    return {key: list(values) * times for key, values in log.items()}

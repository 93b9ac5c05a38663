"""Statistical checks with designed tolerances: unbiasedness and interval coverage.

Fixed environment seeds make every run identical; the tolerances are set so that a correct
estimator fails with probability below about 0.3% (3 standard errors, binomial bounds).
"""

from __future__ import annotations

import numpy as np
import pytest

from banditkit.ope import RidgeRewardModel, cross_fit_predictions, dr, evaluate, ips

from .conftest import Environment, draw_log

pytestmark = pytest.mark.slow


def test_ips_and_dr_are_unbiased_over_many_logs():
    """Mean over 200 logs of IPS and cross-fitted DR within 3 standard errors of the true value."""
    rng = np.random.default_rng(20261128)
    environment = Environment.random(rng)
    problem = environment.problem(rng, 1000)  # contexts fixed: the truth is known exactly
    truth = problem.true_value
    ips_values, dr_values = [], []
    for _ in range(200):
        arms, rewards, propensities = draw_log(problem, rng)
        ips_values.append(ips(rewards, propensities, problem.target, arms, n_bootstrap=0).value)
        predictions = cross_fit_predictions(RidgeRewardModel(), problem.contexts, arms, rewards, 4, rng)
        dr_values.append(dr(rewards, propensities, problem.target, arms, predictions, n_bootstrap=0).value)
    for values in (np.array(ips_values), np.array(dr_values)):
        standard_error = values.std(ddof=1) / np.sqrt(values.size)
        assert abs(values.mean() - truth) < 3 * standard_error
    # DR's reward model removes most of the variance: a designed, not incidental, property.
    assert np.std(dr_values) < np.std(ips_values)


def test_bootstrap_intervals_cover_the_truth_about_95_percent_of_the_time():
    """200 fresh logs (fresh contexts too): coverage of the 95% intervals lies in [90%, 99%]."""
    rng = np.random.default_rng(7)
    environment = Environment.random(rng)
    truth = environment.problem(np.random.default_rng(99), 400_000).true_value  # MC error ~2e-4
    names = ["ips", "snips", "dr"]
    covered = {name: 0 for name in names}
    normal_covered = {name: 0 for name in names}
    for _ in range(200):
        problem = environment.problem(rng, 1000)
        arms, rewards, propensities = draw_log(problem, rng)
        log = {
            "arm": arms,
            "reward": rewards,
            "propensity": propensities,
            **{f"x{j}": problem.contexts[:, j] for j in range(problem.contexts.shape[1])},
        }
        report = evaluate(log, problem.target, names, n_bootstrap=400, rng=rng)
        for name in names:
            covered[name] += report[name].low <= truth <= report[name].high
            normal_covered[name] += report[name].normal_low <= truth <= report[name].normal_high
    for name in names:
        assert 180 <= covered[name] <= 198, (name, covered[name])
        assert 180 <= normal_covered[name] <= 198, (name, normal_covered[name])

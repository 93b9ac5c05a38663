"""Estimators on arrays: golden values, identities between estimators, properties and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditkit.errors import InvalidParameterError
from banditkit.ope import clipped_ips, dm, dr, evaluate, ips, replay, snips, switch_dr
from banditkit.ope.estimators import MIN_INTERVAL_ROWS

from .conftest import draw_log, make_problem

# Four logged rows, two arms; target (n, 2); reward model predictions (n, 2).
REWARDS = np.array([1.0, 0.0, 1.0, 0.0])
ARMS = np.array([0, 1, 1, 0])
PROPENSITIES = np.array([0.5, 0.25, 0.5, 0.8])
TARGET = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [1.0, 0.0]])
PREDICTED = np.array([[0.6, 0.2], [0.5, 0.1], [0.3, 0.7], [0.4, 0.4]])
# weights: 1.8, 2.0, 1.6, 1.25
GOLDEN = {
    "ips": (1.8 + 1.6) / 4,
    "snips": (1.8 + 1.6) / (1.8 + 2.0 + 1.6 + 1.25),
    "clipped_ips": (1.5 + 1.5) / 4,
    "dm": (0.56 + 0.30 + 0.62 + 0.40) / 4,
    "dr": (0.56 + 1.8 * 0.4 + 0.30 + 2.0 * -0.1 + 0.62 + 1.6 * 0.3 + 0.40 + 1.25 * -0.4) / 4,
    "switch_dr": (0.56 + 1.8 * 0.4 + 0.30 + 0.62 + 1.6 * 0.3 + 0.40 + 1.25 * -0.4) / 4,
}


def run(name: str, repeat: int = 1, **options):
    """The estimator on the four golden rows, each repeated ``repeat`` times (the same value)."""
    common = dict(n_bootstrap=200, **options)
    rewards, propensities, arms = (np.tile(array, repeat) for array in (REWARDS, PROPENSITIES, ARMS))
    target, predicted = np.tile(TARGET, (repeat, 1)), np.tile(PREDICTED, (repeat, 1))
    if name == "ips":
        return ips(rewards, propensities, target, arms, **common)
    if name == "snips":
        return snips(rewards, propensities, target, arms, **common)
    if name == "clipped_ips":
        return clipped_ips(rewards, propensities, target, arms, max_weight=1.5, **common)
    if name == "dm":
        return dm(target, predicted, **common)
    if name == "dr":
        return dr(rewards, propensities, target, arms, predicted, **common)
    return switch_dr(rewards, propensities, target, arms, predicted, max_weight=1.9, **common)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_values(name):
    estimate = run(name)
    assert estimate.value == pytest.approx(GOLDEN[name], abs=1e-12)
    assert estimate.estimator == name and estimate.n_rows == 4
    assert math.isnan(estimate.low) and math.isnan(estimate.normal_low)  # 4 rows: too few for an interval
    repeated = run(name, repeat=3)  # 12 rows, the same value, enough rows for intervals
    assert repeated.value == pytest.approx(GOLDEN[name], abs=1e-12) and repeated.support >= MIN_INTERVAL_ROWS
    assert repeated.low <= repeated.high and repeated.normal_low <= repeated.value <= repeated.normal_high


def test_weight_diagnostics():
    estimate = run("ips")
    weights = np.array([1.8, 2.0, 1.6, 1.25])
    assert estimate.max_weight == pytest.approx(2.0)
    assert estimate.ess == pytest.approx(weights.sum() ** 2 / (weights**2).sum())
    assert estimate.tiny_propensity_share == 0.0
    assert run("dm").max_weight is None and run("dm").ess == 4


def test_ips_equals_on_policy_mean_when_target_is_behaviour():
    rng = np.random.default_rng(1)
    problem = make_problem(rng, n=500)
    arms, rewards, propensities = draw_log(problem, rng)
    estimate = ips(rewards, propensities, problem.behaviour, arms, n_bootstrap=0)
    assert estimate.value == pytest.approx(rewards.mean(), abs=1e-12)
    assert estimate.ess == pytest.approx(500) and estimate.max_weight == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(0.01, 1.0), seed=st.integers(0, 2**16))
def test_snips_is_invariant_to_scaling_propensities(scale, seed):
    rng = np.random.default_rng(seed)
    problem = make_problem(rng, n=60)
    arms, rewards, propensities = draw_log(problem, rng)
    base = snips(rewards, propensities, problem.target, arms, n_bootstrap=0).value
    scaled = snips(rewards, propensities * scale, problem.target, arms, n_bootstrap=0).value
    assert scaled == pytest.approx(base, rel=1e-12, abs=1e-15) or (math.isnan(base) and math.isnan(scaled))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_snips_stays_within_the_reward_range(seed):
    rng = np.random.default_rng(seed)
    problem = make_problem(rng, n=40)
    arms, _, propensities = draw_log(problem, rng)
    rewards = rng.uniform(-3, 5, size=40)
    value = snips(rewards, propensities, problem.target, arms, n_bootstrap=0).value
    assert rewards.min() - 1e-12 <= value <= rewards.max() + 1e-12


def test_dr_equals_dm_when_weights_are_zero():
    rng = np.random.default_rng(2)
    problem = make_problem(rng, n=300)
    arms, rewards, propensities = draw_log(problem, rng)
    target = np.zeros_like(problem.target)
    target[np.arange(300), (arms + 1) % 4] = 1.0  # never the logged arm: every weight is 0
    predicted = rng.random((300, 4))
    assert dr(rewards, propensities, target, arms, predicted, n_bootstrap=0).value == pytest.approx(
        dm(target, predicted, n_bootstrap=0).value, abs=1e-14
    )


def test_dr_equals_ips_when_the_model_predicts_zero():
    rng = np.random.default_rng(3)
    problem = make_problem(rng, n=300)
    arms, rewards, propensities = draw_log(problem, rng)
    zero = np.zeros((300, 4))
    assert dr(rewards, propensities, problem.target, arms, zero, n_bootstrap=0).value == pytest.approx(
        ips(rewards, propensities, problem.target, arms, n_bootstrap=0).value, abs=1e-14
    )


def test_switch_dr_spans_dr_and_dm():
    rng = np.random.default_rng(4)
    problem = make_problem(rng, n=300)
    arms, rewards, propensities = draw_log(problem, rng)
    predicted = rng.random((300, 4))
    args = (rewards, propensities, problem.target, arms, predicted)
    assert switch_dr(*args, max_weight=np.inf, n_bootstrap=0).value == dr(*args, n_bootstrap=0).value
    assert switch_dr(*args, max_weight=0.0, n_bootstrap=0).value == pytest.approx(
        dm(problem.target, predicted, n_bootstrap=0).value
    )


def test_replay_with_deterministic_target_averages_matching_rows():
    arms = np.array([0, 1, 2, 0, 1, 2])
    rewards = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    target = np.eye(3)[[0, 0, 2, 0, 1, 1]]  # matches rows 0, 2, 3, 4
    estimate = replay(rewards, arms, np.full(6, 1 / 3), target, n_bootstrap=100)
    assert estimate.value == pytest.approx(3 / 4) and estimate.ess == 4


def test_target_probabilities_of_the_logged_arm_alone():
    weights_given = ips(REWARDS, PROPENSITIES, TARGET[np.arange(4), ARMS], n_bootstrap=0)
    assert weights_given.value == pytest.approx(GOLDEN["ips"])


def test_same_seed_same_interval_and_seeds_differ():
    rng = np.random.default_rng(7)
    problem = make_problem(rng, n=400)
    arms, rewards, propensities = draw_log(problem, rng)

    def run_with(seed):
        return snips(rewards, propensities, problem.target, arms, rng=seed, n_bootstrap=300)

    first, again, other = run_with(5), run_with(5), run_with(6)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)


def test_one_row_and_one_arm():
    estimate = ips([1.0], [1.0], np.ones((1, 1)), [0], n_bootstrap=50)
    assert estimate.value == 1.0 and estimate.support == 1 and math.isnan(estimate.std_error)
    assert math.isnan(estimate.low) and math.isnan(estimate.high)  # one row says nothing about the spread


def test_replay_from_too_few_accepted_rows_reports_no_interval():
    """One accepted row used to give [1, 1]; under MIN_INTERVAL_ROWS accepted rows there is no interval."""
    arms = np.array([0, 1, 2] * 10)
    rewards = np.ones(30)
    for accepted in (1, MIN_INTERVAL_ROWS - 1, MIN_INTERVAL_ROWS):
        target = np.eye(3)[(arms + 1) % 3]  # never the logged arm...
        target[:accepted] = np.eye(3)[arms[:accepted]]  # ...but on the first rows
        estimate = replay(rewards, arms, np.full(30, 1 / 3), target, n_bootstrap=200)
        assert estimate.value == 1.0 and estimate.support == accepted
        intervals = (estimate.low, estimate.high, estimate.normal_low, estimate.normal_high, estimate.std_error)
        if accepted < MIN_INTERVAL_ROWS:
            assert all(math.isnan(bound) for bound in intervals)
            assert estimate.to_dict()["low"] is None  # null in JSON, "-" in the command line's table
        else:
            assert not any(math.isnan(bound) for bound in intervals)
    report = evaluate(
        {"arm": arms[:12], "reward": rewards[:12], "propensity": np.full(12, 1 / 3)},
        np.eye(3)[[0] + [2, 0, 1] * 3 + [2, 0]],  # agrees with the log on the first row only
        estimators=["replay"],
        n_bootstrap=100,
    )
    assert report["replay"].support == 1 and math.isnan(report["replay"].low)
    assert any("replay: only 1 of 12 rows accepted" in warning for warning in report.warnings)


def test_zero_rewards_give_zero_with_a_zero_width_interval():
    estimate = ips(np.zeros(50), np.full(50, 0.5), np.full(50, 0.5), n_bootstrap=100)
    assert (estimate.value, estimate.low, estimate.high, estimate.std_error) == (0.0, 0.0, 0.0, 0.0)


def test_tiny_propensities_are_reported():
    propensities = np.array([1e-4, 0.5, 0.5, 0.5])
    estimate = ips(np.ones(4), propensities, np.full(4, 1e-4), n_bootstrap=0)
    assert estimate.tiny_propensity_share == 0.25


BAD_ARRAYS = [
    (dict(rewards=[1.0, math.nan]), "rewards must be finite, got nan at row 1"),
    (dict(propensities=[0.5, 0.0]), "propensities must be in (0, 1], got 0.0 at row 1"),
    (dict(propensities=[0.5, 1.5]), "propensities must be in (0, 1], got 1.5 at row 1"),
    (dict(propensities=[0.5, 0.5, 0.5]), "propensities has 3 rows, expected 2"),
    (dict(arms=[0, 5]), "arms must be integer column indices of target_probs"),
    (dict(arms=None), "target_probs of shape (n, K) needs arms="),
]


@pytest.mark.parametrize(("change", "message"), BAD_ARRAYS)
def test_bad_arrays_are_rejected_with_a_clear_message(change, message):
    arguments = dict(rewards=[1.0, 0.0], propensities=[0.5, 0.5], target_probs=[[0.5, 0.5], [0.1, 0.9]], arms=[0, 1])
    arguments.update(change)
    with pytest.raises(InvalidParameterError) as error:
        ips(arguments["rewards"], arguments["propensities"], arguments["target_probs"], arguments["arms"])
    assert message in str(error.value)


def test_bad_bootstrap_settings():
    with pytest.raises(InvalidParameterError, match="n_bootstrap must be in"):
        ips([1.0], [0.5], [0.5], n_bootstrap=-1)
    with pytest.raises(InvalidParameterError, match=r"confidence must be in \(0.0, 1.0\)"):
        ips([1.0], [0.5], [0.5], confidence=1.5)

"""Experiment health: confidence sequences, P(best), P(beats default) and the regret so far (banditkit/health.py).

Layers: golden values that can be checked by hand, hypothesis properties, the
coverage of adaptive runs looked at after every reward, and edge cases through
``Bandit.stats()``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import banditkit as bk
from banditkit.health import (
    ALPHA,
    assess,
    beat_probabilities,
    best_probabilities,
    confidence_sequence,
    fixed_n_interval,
    mean_posteriors,
    regret_estimate,
    regret_interval,
)

UNIT = (0.0, 1.0)


# ---- golden values ------------------------------------------------------------------------------------------
def test_confidence_sequence_golden_values():
    """7 of 10: the ends are where the Beta(8, 4) density (the uniform prior's posterior) is 0.05.

    0 of 10: (n + 1)(1 - m)^n = alpha gives 1 - (0.05 / 11)^(1/10); no reward: the whole range.
    """
    low, high = confidence_sequence([10, 10, 0], [7.0, 0.0, 0.0], UNIT)
    np.testing.assert_allclose(low, [0.26674053, 0.0, 0.0], atol=1e-8)
    np.testing.assert_allclose(high, [0.96335971, 1 - (0.05 / 11) ** 0.1, 1.0], atol=1e-8)
    np.testing.assert_allclose(stats.beta.pdf([low[0], high[0]], 8, 4), [ALPHA, ALPHA], rtol=1e-9)
    # The same rewards on a revenue scale: the same sequence, scaled.
    revenue_low, revenue_high = confidence_sequence([10], [7.0 * 500 + 10 * 100], (100.0, 600.0))
    np.testing.assert_allclose([revenue_low[0], revenue_high[0]], [100 + 500 * low[0], 100 + 500 * high[0]])


def test_fixed_n_interval_is_wilson_on_bounded_rewards_and_normal_otherwise():
    """7 of 10: Wilson's 95% interval [0.3968, 0.8922]; [0, 2] unbounded: 1 +- 1.96 sqrt(2 / 2)."""
    mean, low, high = fixed_n_interval([10, 0], [7.0, 0.0], [7.0, 0.0], UNIT)
    np.testing.assert_allclose([mean[0], low[0], high[0]], [0.7, 0.39677815, 0.89220873], atol=1e-8)
    assert np.isnan([mean[1], low[1], high[1]]).all()
    mean, low, high = fixed_n_interval([2, 1], [2.0, 5.0], [4.0, 25.0], None)
    np.testing.assert_allclose([mean[0], low[0], high[0]], [1.0, 1 - 1.959963984540054, 1 + 1.959963984540054])
    assert mean[1] == 5.0 and np.isnan([low[1], high[1]]).all()  # one reward: no variance


PAIRS = {
    # name: (pulls, sums, sq_sums, bounds, P(arm 1 beats arm 0)) with arm 0 the default
    # Beta(1, 2) against Beta(2, 1): integral of 2x (2x - x^2) over [0, 1] = 4/3 - 1/2.
    "one failure, one success": ([1, 1], [0.0, 1.0], [0.0, 1.0], UNIT, 5 / 6),
    # Uniform(0, 1) against Beta(3, 9): 1 - E[Beta(3, 9)] = 3/4.
    "no reward against 2 of 10": ([10, 0], [2.0, 0.0], [2.0, 0.0], UNIT, 3 / 4),
    # Unbounded, [0, 1, 2] against [1, 2, 3]: t_2(1, 1 / 3) against t_2(2, 1 / 3), by scipy's adaptive quad.
    "three rewards each, Student": ([3, 3], [3.0, 6.0], [5.0, 14.0], None, None),
}


def student_reference(scale: float) -> float:
    """P(t_2(2, scale) > t_2(1, scale)) by adaptive quadrature, independent of the library's."""
    density = lambda x: stats.t.pdf(x, 2, 2.0, scale) * stats.t.cdf(x, 2, 1.0, scale)
    return integrate.quad(density, -np.inf, np.inf, epsabs=1e-13, limit=500)[0]


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_p_best_and_p_beats_default_golden_values(case):
    pulls, sums, sq_sums, bounds, beats = PAIRS[case]
    if beats is None:
        beats = student_reference(math.sqrt(1 / 3))
        assert beats == pytest.approx(0.7967413, abs=1e-7)
    posteriors, proper = mean_posteriors(pulls, sums, sq_sums, bounds)
    np.testing.assert_allclose(beat_probabilities(posteriors, proper, 0), [np.nan, beats], atol=1e-9)
    np.testing.assert_allclose(best_probabilities(posteriors, proper), [1 - beats, beats], atol=1e-9)


def test_regret_golden_values():
    """Arms of means 0.2 (10 rewards) and 0.3 (30): always the second would have earned 12, 11 were earned."""
    assert regret_estimate([10, 30], [2.0, 9.0]) == pytest.approx(1.0)
    # A box [0.1, 0.4] x [0.2, 0.35]: at most 10 x (0.35 - 0.1) (arm 1 best) or 30 x (0.4 - 0.2) (arm 0 best);
    # at least 0: the boxes overlap, the means may be equal.
    low, high = regret_interval([10, 30], [0.1, 0.2], [0.4, 0.35], 1.0)
    assert (low, high) == (pytest.approx(0.0), pytest.approx(6.0))
    # Disjoint boxes [0.1, 0.15] x [0.2, 0.35]: arm 1 is best, at least 10 x (0.2 - 0.15), at most 10 x 0.25.
    low, high = regret_interval([10, 30], [0.1, 0.2], [0.15, 0.35], 1.0)
    assert (low, high) == (pytest.approx(0.5), pytest.approx(2.5))


def test_stats_of_a_thompson_bandit():
    """Through the Bandit: p_best is Thompson sampling's own action distribution (same uniform prior, every arm
    active), the default arm has no p_beats_default, and the regret is the one of the golden case above."""
    bandit = bk.Bandit(["a", "b", "c"], policy="thompson", seed=1, guardrails={"default_arm": "a"})
    bandit.update_many(["a"] * 10 + ["b"] * 30, [1.0] * 2 + [0.0] * 8 + [1.0] * 9 + [0.0] * 21)
    report = bandit.stats()
    a, b, c = report
    assert len(report) == 3 and report[1:] == (b, c) and [row.arm for row in report] == ["a", "b", "c"]
    probabilities = bandit.probabilities()
    for row in report:
        assert row.p_best == pytest.approx(probabilities[row.arm], abs=1e-9)
    assert a.p_beats_default is None and c.p_beats_default == pytest.approx(0.75, abs=1e-9)
    assert (c.cs_low, c.cs_high, c.mean, c.low) == (0.0, 1.0, None, None)
    assert report.regret_estimate == pytest.approx(1.0)
    assert 0.0 <= report.regret_low <= 1.0 <= report.regret_high <= 40.0
    assert bandit.stats() == report  # deterministic: nothing is drawn


INVALID = {
    # name: (keyword arguments of confidence_sequence, the start of the message)
    "alpha 0": ({"alpha": 0.0}, "alpha must be in (0, 1), got 0.0"),
    "alpha 1": ({"alpha": 1.0}, "alpha must be in (0, 1)"),
    "alpha NaN": ({"alpha": [0.05, math.nan]}, "alpha must be in (0, 1)"),
    "bounds backwards": ({"bounds": (1.0, 0.0)}, "bounds must be finite (low, high) with low < high, got (1.0, 0.0)"),
    "bounds infinite": ({"bounds": (0.0, math.inf)}, "bounds must be finite"),
    "negative pulls": ({"pulls": [-1.0]}, "pulls must be finite and >= 0"),
    "NaN pulls": ({"pulls": [math.nan]}, "pulls must be finite and >= 0"),
    "NaN sums": ({"sums": [math.nan]}, "sums must be finite"),
}


@pytest.mark.parametrize("case", INVALID, ids=str)
def test_invalid_inputs_name_the_argument(case):
    changes, message = INVALID[case]
    arguments = {"pulls": [3.0], "sums": [1.0], "bounds": UNIT, "alpha": 0.05, **changes}
    with pytest.raises(bk.InvalidParameterError, match="^" + re.escape(message)):
        confidence_sequence(**arguments)


# ---- properties ------------------------------------------------------------------------------------------------
@st.composite
def arm_sums(draw, max_arms=6):
    """(pulls, sums, bounds) of a few arms: counts up to 1e6, fractional rewards in a random range."""
    n_arms = draw(st.integers(1, max_arms))
    pulls = np.array(draw(st.lists(st.integers(0, 10**6), min_size=n_arms, max_size=n_arms)), dtype=float)
    shares = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n_arms, max_size=n_arms)))
    lo = draw(st.floats(-1e6, 1e6))
    width = draw(st.floats(1e-3, 1e9))
    return pulls, pulls * (lo + width * shares), (lo, lo + width)


@settings(max_examples=150, deadline=None)
@given(arm_sums(), st.sampled_from([0.05, 0.01, 1e-6]))
def test_the_sequence_holds_the_mean_and_the_fixed_n_interval(case, alpha):
    pulls, sums, bounds = case
    low, high = confidence_sequence(pulls, sums, bounds, alpha)
    mean, fixed_low, fixed_high = fixed_n_interval(pulls, sums, np.zeros_like(sums), bounds)
    seen = pulls > 0
    # The mean itself may round a few ulps outside the range.
    slack = 1e-9 * (bounds[1] - bounds[0]) + 1e-14 * max(abs(bounds[0]), abs(bounds[1]))
    assert (bounds[0] - slack <= low).all() and (low <= high).all() and (high <= bounds[1] + slack).all()
    assert (low[seen] <= mean[seen]).all() and (mean[seen] <= high[seen]).all()
    assert (low[~seen] == bounds[0]).all() and (high[~seen] == bounds[1]).all()
    # Wider than Wilson's interval at every n (checked on a grid of n up to 400 and s in [0, n] too).
    assert (low[seen] <= fixed_low[seen] + slack).all() and (high[seen] >= fixed_high[seen] - slack).all()
    # A smaller alpha gives a wider sequence.
    wider_low, wider_high = confidence_sequence(pulls, sums, bounds, alpha / 10)
    assert (wider_low <= low + slack).all() and (wider_high >= high - slack).all()


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 10**7), st.floats(0.0, 1.0), st.sampled_from([0.05, 1e-3]))
def test_the_ends_are_where_the_posterior_density_is_alpha(n, share, alpha):
    """Each end inside (0, 1) solves Beta(1 + s, 1 + n - s).pdf(m) = alpha: the root finder converged."""
    s = n * share
    low, high = confidence_sequence([n], [s], UNIT, alpha)
    for end in (low[0], high[0]):
        # Within 1e-9 of 1 the double 1 - end has too few digits left to check the density by (not the solver's).
        if 1e-300 < end < 1 - 1e-9:
            log_pdf = stats.beta.logpdf(end, 1 + s, 1 + n - s)
            assert log_pdf == pytest.approx(math.log(alpha), abs=1e-6 * max(1.0, math.sqrt(n)))


@settings(max_examples=100, deadline=None)
@given(arm_sums(max_arms=5), st.data())
def test_probabilities_and_regret_are_consistent(case, data):
    pulls, sums, bounds = case
    default = data.draw(st.integers(0, pulls.size - 1))
    health = assess(pulls, sums, sums * sums / np.maximum(pulls, 1), bounds, default)
    assert health.p_best.sum() == pytest.approx(1.0, abs=1e-9)
    assert ((health.p_best >= 0.0) & (health.p_best <= 1.0)).all()
    others = np.arange(pulls.size) != default
    beats = health.p_beats_default
    assert np.isnan(beats[default]) and ((beats[others] >= 0.0) & (beats[others] <= 1.0)).all()
    assert 0.0 <= health.regret_low <= health.regret_estimate <= health.regret_high
    assert health.regret_high <= pulls.sum() * (bounds[1] - bounds[0]) * (1 + 1e-9)


# ---- coverage under adaptive allocation, looked at after every reward ---------------------------------------------
RUNS, STEPS, MEANS = 2000, 400, np.array([0.3, 0.5, 0.55])


def adaptive_runs(policy: bk.Policy, seed: int) -> dict[str, np.ndarray]:
    """RUNS independent experiments of STEPS rewards on Bernoulli arms MEANS, all advanced together.

    After every reward, the pulled arm's fixed-n interval and confidence sequence (the others did not
    change) and the regret interval are checked against the truth. Returns which runs ever missed: per arm
    for the intervals (RUNS, K), per run for the regret (RUNS,).
    """
    rng = np.random.default_rng(seed)
    n_arms, rows = MEANS.size, np.arange(RUNS)
    state, mask = policy.init_state(n_arms, batch=RUNS), np.ones((RUNS, n_arms), dtype=bool)
    pulls, sums = np.zeros((RUNS, n_arms)), np.zeros((RUNS, n_arms))
    joint_low, joint_high = np.zeros((RUNS, n_arms)), np.ones((RUNS, n_arms))
    missed: dict[str, np.ndarray] = {key: np.zeros((RUNS, n_arms), dtype=bool) for key in ("fixed", "sequence")}
    missed["regret"] = np.zeros(RUNS, dtype=bool)
    for _ in range(STEPS):
        arms = policy.sample(state, rng, mask)
        rewards = (rng.random(RUNS) < MEANS[arms]).astype(float)
        state = policy.update(state, arms, rewards)
        pulls[rows, arms] += 1.0
        sums[rows, arms] += rewards
        n, s, truth = pulls[rows, arms], sums[rows, arms], MEANS[arms]
        _, low, high = fixed_n_interval(n, s, s, UNIT)
        missed["fixed"][rows, arms] |= (truth < low) | (truth > high)
        low, high = confidence_sequence(n, s, UNIT)
        missed["sequence"][rows, arms] |= (truth < low) | (truth > high)
        joint_low[rows, arms], joint_high[rows, arms] = confidence_sequence(n, s, UNIT, ALPHA / n_arms)
        estimate = regret_estimate(pulls, sums)
        low, high = regret_interval(pulls, joint_low, joint_high, estimate)
        regret = pulls @ (MEANS.max() - MEANS)
        missed["regret"] |= (regret < low - 1e-9) | (regret > high + 1e-9)
    return missed


@pytest.mark.slow
@pytest.mark.parametrize(
    "policy", [bk.ThompsonSampling(), bk.EpsilonGreedy(epsilon=0.1)], ids=["thompson", "epsilon_greedy"]
)
def test_the_sequence_covers_at_every_step_where_the_fixed_n_interval_does_not(policy):
    """2,000 seeded adaptive runs of 400 rewards, every interval looked at after every reward.

    Measured (seed 11), the share of runs in which an arm's interval ever missed its mean, arms 0.3, 0.5,
    0.55: fixed-n 20.4%, 33.5%, 42.5% under Thompson sampling and 23.3%, 36.0%, 35.5% under
    epsilon-greedy; the confidence sequence 2.6%, 1.9%, 2.5% and 2.3%, 2.0%, 2.5%; the regret interval
    never (its box is joint, at 5% / 3 per arm). (Some arm's sequence missed in 6.8% of the runs: the level
    is per arm; the regret's joint box is the simultaneous one.) The assertions: fixed-n above 15% for
    every arm; sequence and regret at most 5% plus three Monte Carlo standard errors,
    3 sqrt(0.05 x 0.95 / 2000) = 0.015 (a false alarm below 0.2% if the rate were 5%).
    """
    missed = adaptive_runs(policy, seed=11)
    tolerance = 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)
    fixed, sequence, regret = missed["fixed"].mean(axis=0), missed["sequence"].mean(axis=0), missed["regret"].mean()
    assert (fixed > 0.15).all(), fixed
    assert (sequence <= ALPHA + tolerance).all(), sequence
    assert regret <= ALPHA + tolerance, regret


# ---- edge cases through the Bandit -----------------------------------------------------------------------------------
def test_no_rewards_yet():
    """The whole range, the prior's P(best) 1/K and P(beats) 1/2, and no regret."""
    bandit = bk.Bandit(["a", "b", "c", "d"], policy="thompson", guardrails={"default_arm": "b"})
    report = bandit.stats()
    assert [(row.cs_low, row.cs_high) for row in report] == [(0.0, 1.0)] * 4
    assert [row.p_best for row in report] == pytest.approx([0.25] * 4, abs=1e-9)
    assert [row.p_beats_default for row in report] == [pytest.approx(0.5, abs=1e-9), None] + [
        pytest.approx(0.5, abs=1e-9)
    ] * 2
    assert (report.regret_estimate, report.regret_low, report.regret_high) == (0.0, 0.0, 0.0)


def test_one_arm():
    bandit = bk.Bandit(["only"], policy="ucb1", guardrails={"default_arm": "only"})
    bandit.update_many(["only"] * 5, [1.0, 0.0, 1.0, 1.0, 0.0])
    (row,) = bandit.stats()
    assert row.p_best == 1.0 and row.p_beats_default is None and row.cs_low < 0.6 < row.cs_high
    assert (bandit.stats().regret_estimate, bandit.stats().regret_low, bandit.stats().regret_high) == (0.0, 0.0, 0.0)


def test_equal_arms():
    bandit = bk.Bandit(["a", "b", "c"], policy="kl_ucb", guardrails={"default_arm": "a"})
    bandit.update_many(["a", "b", "c"] * 40, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0] * 20)
    report = bandit.stats()
    assert [row.p_best for row in report] == pytest.approx([1 / 3] * 3, abs=1e-9)
    assert report[1].p_beats_default == pytest.approx(0.5, abs=1e-9)
    assert len({(row.cs_low, row.cs_high) for row in report}) == 1
    assert report.regret_estimate == 0.0 and report.regret_low == 0.0 and report.regret_high > 0.0


def test_huge_rewards_within_their_range():
    """A range of 1e12: every number is the [0, 1] one scaled (the probabilities exactly unchanged)."""
    arms, shares = ["a", "b", "a", "b", "b"], np.array([0.25, 1.0, 0.5, 0.75, 1.0])
    huge = bk.Bandit(["a", "b"], policy={"name": "thompson", "params": {"reward_range": [0, 1e12]}})
    unit = bk.Bandit(["a", "b"], policy="thompson")
    huge.update_many(arms, 1e12 * shares)
    unit.update_many(arms, shares)
    for big, small in zip(huge.stats(), unit.stats(), strict=True):
        assert (big.cs_low, big.cs_high) == (pytest.approx(1e12 * small.cs_low), pytest.approx(1e12 * small.cs_high))
        assert big.p_best == pytest.approx(small.p_best, abs=1e-12)
    assert huge.stats().regret_high == pytest.approx(1e12 * unit.stats().regret_high)


def test_unbounded_rewards_have_no_sequence():
    """No range: no confidence sequence (None, never a number pretending to hold), a regret estimate without an
    interval, and P(best) once every arm has three rewards, not all equal (a proper Student posterior)."""
    bandit = bk.Bandit(["a", "b"], policy="gaussian_thompson", guardrails={"default_arm": "a"})
    bandit.update_many(["a", "a", "a", "b", "b"], [0.0, 1.0, 2.0, 1.0, 2.0])
    report = bandit.stats()
    assert all(row.cs_low is None and row.cs_high is None for row in report)
    assert all(row.p_best is None and row.p_beats_default is None for row in report)
    assert (report.regret_estimate, report.regret_low, report.regret_high) == (pytest.approx(5 * 1.5 - 6), None, None)
    bandit.update("b", 3.0)
    a, b = bandit.stats()
    assert b.p_beats_default == pytest.approx(student_reference(math.sqrt(1 / 3)), abs=1e-9)
    assert a.p_best + b.p_best == pytest.approx(1.0, abs=1e-9) and b.p_best == pytest.approx(b.p_beats_default)


def test_contextual_policies_report_no_single_mean_numbers():
    bandit = bk.Bandit(["a", "b"], policy="linucb", n_features=2, guardrails={"default_arm": "a"})
    bandit.update_many(["a", "b", "b"], [1.0, 0.0, 1.0], contexts=np.eye(3, 2))
    report = bandit.stats()
    assert report[1].mean == 0.5 and report[1].low is not None
    assert all(row.cs_low is None and row.p_best is None and row.p_beats_default is None for row in report)
    assert (report.regret_estimate, report.regret_low, report.regret_high) == (None, None, None)


def test_a_nan_reward_is_refused_and_leaves_the_numbers_as_they_were():
    bandit = bk.Bandit(["a", "b"], policy="thompson", guardrails={"default_arm": "a"})
    bandit.update_many(["a", "b"], [1.0, 0.0])
    before = bandit.stats()
    with pytest.raises(bk.InvalidParameterError, match="reward"):
        bandit.update("a", float("nan"))
    assert bandit.stats() == before

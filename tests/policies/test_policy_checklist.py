"""The classic bandit implementation bugs, one test each."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from policy_cases import NON_CONTEXTUAL
from scipy import stats

import banditkit as bk
from banditkit.policies import EXP3, UCB1, EpsilonGreedy, Softmax

# Significance of each chi-square test here: a correct implementation fails w.p. 0.001 per seed.
ALPHA = 1e-3


def test_ucb1_uses_the_natural_log():
    """Arm a: mean 0.8 over 40 pulls; arm b: mean 0.4 over 8. ln picks b, log10 would pick a."""
    bandit = bk.Bandit(["a", "b"], policy="ucb1", seed=0)
    bandit.update_many(["a"] * 40 + ["b"] * 8, [1.0] * 32 + [0.0] * 8 + [1.0] * 3 + [0.0] * 5)

    def index(mean, pulls, log):
        return mean + math.sqrt(2 * log(48) / pulls)

    assert index(0.8, 40, math.log) < index(0.375, 8, math.log)
    assert index(0.8, 40, math.log10) > index(0.375, 8, math.log10)
    np.testing.assert_allclose(
        UCB1().indices(bandit.state)[0], [index(0.8, 40, math.log), index(0.375, 8, math.log)], rtol=0, atol=1e-12
    )
    assert bandit.select().arm == "b"


def test_thompson_prior_is_beta_one_one():
    """Beta(1, 1), not Beta(0, 0): untried arms share the mass equally and have prior mean 0.5."""
    bandit = bk.Bandit(["a", "b", "c", "d"], policy="thompson", seed=0)
    assert list(bandit.probabilities().values()) == pytest.approx([0.25] * 4, abs=1e-9)
    np.testing.assert_array_equal(bandit.policy.means(bandit.state), [[0.5] * 4])
    assert bandit.select().propensity == pytest.approx(0.25, abs=1e-9)


@pytest.mark.parametrize("name", NON_CONTEXTUAL)
def test_successes_raise_an_arm_and_failures_lower_it(name):
    """Successes and failures are not swapped: the arm rewarded with 1 looks better on every count."""
    bandit = bk.Bandit(["good", "bad"], policy=name, seed=0)
    bandit.update_many(["good", "bad"] * 8, [1.0, 0.0] * 8)
    means = bandit.policy.means(bandit.state)[0]
    assert means[0] > means[1]
    probabilities = bandit.probabilities()
    assert probabilities["good"] > probabilities["bad"]
    good, bad = bandit.stats()
    assert (good.mean, bad.mean) == (1.0, 0.0)


@pytest.mark.parametrize("name", NON_CONTEXTUAL)
def test_counts_are_updated_on_every_pull(name):
    """Repeated arms inside one batch all count (no fancy-index ``+=`` that drops duplicates)."""
    bandit = bk.Bandit(["a", "b", "c"], policy=name, seed=0)
    bandit.update_many(["a", "a", "a", "c"], [1.0, 1.0, 0.0, 1.0])
    bandit.update("a", 1.0)
    for _ in range(3):
        bandit.update(bandit.select(), 0.0)
    pulls = {row.arm: row.pulls for row in bandit.stats()}
    assert sum(pulls.values()) == 8 and pulls["a"] >= 4 and pulls["c"] >= 1
    if "pulls" in bandit.state:  # the policy's own counts (a window of 1,000 still holds all 8)
        np.testing.assert_array_equal(bandit.state["pulls"][0], [pulls[arm] for arm in "abc"])


def test_exp3_importance_weighting():
    """The log-weight of the played arm grows by gamma * r / (K * p), p its propensity."""
    bandit = bk.Bandit(["a", "b", "c"], policy=EXP3(gamma=0.3), seed=1)
    bandit.update_many(["b", "c"], [1.0, 0.5])
    for reward in (1.0, 0.4, 0.0):
        decision = bandit.select()
        before = bandit.state["log_weights"].copy()
        bandit.update(decision, reward)
        expected = before.copy()
        expected[0, decision.arm_index] += 0.3 * reward / (3 * decision.propensity)
        np.testing.assert_allclose(bandit.state["log_weights"], expected, rtol=0, atol=1e-14)


def test_exp3_reward_by_arm_name_uses_the_current_probability_over_all_arms():
    """Without a decision the propensity is the arm's current probability; disabling it does not change that."""
    bandit = bk.Bandit(["a", "b", "c"], policy=EXP3(gamma=0.3), seed=1)
    bandit.update_many(["b", "c"], [1.0, 0.5])
    bandit.disable_arm("a")
    probability = bandit.policy.probabilities(bandit.state, np.ones((1, 3), dtype=bool))[0, 0]
    expected = bandit.state["log_weights"].copy()
    expected[0, 0] += 0.3 * 0.75 / (3 * probability)
    bandit.update("a", 0.75)
    np.testing.assert_allclose(bandit.state["log_weights"], expected, rtol=0, atol=1e-14)


def test_exp3_does_not_overflow_after_a_million_rewards():
    bandit = bk.Bandit(["a", "b", "c"], policy=EXP3(gamma=0.1), seed=0)
    for _ in range(100):
        bandit.update_many(np.zeros(10_000, dtype=int), np.ones(10_000))
    assert np.isfinite(bandit.state["log_weights"]).all()
    probabilities = bandit.probabilities()
    assert probabilities == pytest.approx({"a": 0.9 + 0.1 / 3, "b": 0.1 / 3, "c": 0.1 / 3}, abs=1e-12)
    assert bandit.stats()[0].pulls == 1_000_000
    assert bandit.select().propensity == pytest.approx(probabilities[bandit.select().arm], abs=1e-12)


def test_epsilon_greedy_explores_iff_the_uniform_is_below_epsilon():
    """Replay the generator: explore exactly where the row's first uniform is below epsilon."""
    policy = EpsilonGreedy(epsilon=0.3)
    state = policy.update(policy.init_state(4), np.array([0, 1, 2, 3]), np.array([0.1, 0.9, 0.3, 0.2]))
    mask = np.ones((5000, 4), dtype=bool)
    arms = policy.sample(state, np.random.default_rng(99), mask)
    replay = np.random.default_rng(99)
    explore = replay.random(5000) < 0.3
    uniform_arms = np.floor(replay.random(5000) * 4).astype(int)  # the explore draw, by inverse CDF
    np.testing.assert_array_equal(arms[~explore], 1)
    np.testing.assert_array_equal(arms[explore], uniform_arms[explore])
    assert set(arms[explore]) == {0, 1, 2, 3}


@pytest.mark.parametrize("name", NON_CONTEXTUAL)
def test_ties_are_broken_uniformly_at_random(name):
    """All arms equal: single served decisions are uniform over the arms (chi-square at ALPHA)."""
    bandit = bk.Bandit(["a", "b", "c"], policy=name, seed=5)
    counts = np.bincount([bandit.select().arm_index for _ in range(600)], minlength=3)
    assert stats.chisquare(counts).pvalue > ALPHA, counts


def test_ties_among_the_best_arms_only():
    policy = EpsilonGreedy(epsilon=0.0)
    state = policy.update(policy.init_state(4), np.array([0, 1, 2, 3]), np.array([0.9, 0.2, 0.9, 0.9]))
    rows = np.ones((6000, 4), dtype=bool)
    counts = np.bincount(policy.sample(state, np.random.default_rng(2), rows), minlength=4)
    assert counts[1] == 0
    assert stats.chisquare(counts[[0, 2, 3]]).pvalue > ALPHA, counts


def test_decaying_epsilon_really_decreases():
    bandit = bk.Bandit(["a", "b", "c"], policy=EpsilonGreedy(epsilon=0.5, decay=0.01), seed=0)
    rates, off_best = [], []
    for _ in range(4):
        rates.append(bandit.policy.exploration_rate(bandit.state)[0, 0])
        off_best.append(1 - max(bandit.probabilities().values()))
        bandit.update_many(["a", "b", "c"] * 100, [1.0, 0.0, 0.0] * 100)
    assert rates[0] == 0.5
    assert all(later < earlier for earlier, later in itertools.pairwise(rates))
    assert all(later < earlier for earlier, later in itertools.pairwise(off_best[1:]))
    assert rates[-1] == pytest.approx(0.5 / (1 + 0.01 * 900), abs=1e-15)


def test_annealed_softmax_concentrates():
    policy = Softmax(temperature=0.5, anneal=0.05)
    state = policy.update(policy.init_state(2), np.array([0, 1]), np.array([0.7, 0.5]))
    best = []
    for _ in range(3):
        best.append(policy.probabilities(state, np.ones((1, 2), dtype=bool))[0, 0])
        state = policy.update(state, np.array([0, 1] * 20), np.array([0.7, 0.5] * 20))
    assert best[0] < best[1] < best[2]

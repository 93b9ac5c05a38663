"""Golden values: seeded decision sequences, and index/posterior/weight values computed by hand.

The sequences come from ``Bandit(["a", "b", "c"], policy=NAME, seed=0)`` fed
Bernoulli(0.2, 0.5, 0.7) rewards from its own environment generator (seed 2024,
one uniform per round, see ``policy_cases.bernoulli_run``). They pin the exact
use of the random stream: a change that alters them changes every seeded
experiment users have run, and must be deliberate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from policy_cases import NON_CONTEXTUAL, bernoulli_run
from scipy import optimize

import banditkit as bk
from banditkit.policies import (
    EXP3,
    KLUCB,
    UCB1,
    BayesUCB,
    DiscountedThompsonSampling,
    EpsilonGreedy,
    GaussianThompsonSampling,
    SlidingWindowUCB,
    Softmax,
    ThompsonSampling,
)

#: First 30 arms chosen, and the distribution after those 30 rounds (to 1e-9).
GOLDEN = {
    "bayes_ucb": ("acccbccccccccccccccccccccccccc", (0.0, 0.0, 1.0)),
    "discounted_thompson": ("cacccccbccbccccccccabccccbbbbc", (0.024279436247, 0.363390603382, 0.612329960371)),
    "epsilon_greedy": ("ccccaccccccccccccccccccccccccc", (0.1 / 3, 0.1 / 3, 0.9 + 0.1 / 3)),
    "exp3": ("baaaccbcbccacacacbbbaacccbcccc", (0.211694447867, 0.303849376183, 0.48445617595)),
    "gaussian_thompson": ("bacacaaacabcacacaaccccccbacccc", (0.083317984709, 0.097071026774, 0.819610988516)),
    "kl_ucb": ("acbbcbbbbbbccccccbcccccccccacc", (0.0, 0.0, 1.0)),
    "sliding_window_ucb": ("acbbcbbbbccccbcccacccbbbcccccc", (0.0, 0.0, 1.0)),
    "softmax": ("baaacccccccccccccccccccccccccc", (0.00031043248, 0.00031043248, 0.999379135039)),
    "thompson": ("cacccccbccbccccccccabccccbbbbc", (0.015696444206, 0.350666751367, 0.633636804427)),
    "ucb1": ("acbbcabcabcbcccccabcccccbbbacc", (0.0, 0.0, 1.0)),
}


def test_every_registered_policy_has_a_golden_sequence():
    assert sorted(GOLDEN) == NON_CONTEXTUAL


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_sequence(name, jit_mode):
    """Same table on the compiled path and on the numpy path."""
    bandit = bk.Bandit(["a", "b", "c"], policy=name, seed=0)
    arms, _ = bernoulli_run(bandit, 30, env_seed=2024, means=(0.2, 0.5, 0.7))
    expected_arms, expected_probabilities = GOLDEN[name]
    assert "".join("abc"[arm] for arm in arms) == expected_arms
    probabilities = bandit.probabilities()
    np.testing.assert_allclose([probabilities[arm] for arm in "abc"], expected_probabilities, rtol=0, atol=1e-9)


def test_gaussian_thompson_with_the_former_unit_prior_keeps_its_golden_sequence(jit_mode):
    """Experiments stored with the former default prior (its parameters spelled out, as every stored policy
    has them) decide as they did: the prior set from the rewards is the default only, not a change of them."""
    policy = {"name": "gaussian_thompson", "params": {"prior_mean": 0.0, "prior_count": 0.01, "prior_rate": 1.0}}
    bandit = bk.Bandit(["a", "b", "c"], policy=policy, seed=0)
    arms, _ = bernoulli_run(bandit, 30, env_seed=2024, means=(0.2, 0.5, 0.7))
    assert "".join("abc"[arm] for arm in arms) == "bacabaaacabcacccaaccccccbacccc"
    probabilities = bandit.probabilities()
    np.testing.assert_allclose(
        [probabilities[arm] for arm in "abc"], (0.056244194657, 0.062072336731, 0.881683468612), rtol=0, atol=1e-9
    )


# ---- hand-computed values ------------------------------------------------------------------------
# Three arms observed as: arm 0 -> 1, 0, 1; arm 1 -> 0; arm 2 -> 1, 1 (t = 6 pulls in all).
PULL_ARMS = np.array([0, 1, 2, 0, 2, 0])
PULL_REWARDS = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
MASK3 = np.ones((1, 3), dtype=bool)


def observed(policy):
    return policy.update(policy.init_state(3), PULL_ARMS, PULL_REWARDS, propensities=np.full(6, 1 / 3))


def test_ucb1_index_by_hand():
    expected = [
        2 / 3 + math.sqrt(2 * math.log(6) / 3),
        0.0 + math.sqrt(2 * math.log(6) / 1),
        1.0 + math.sqrt(2 * math.log(6) / 2),
    ]
    np.testing.assert_allclose(UCB1().indices(observed(UCB1()))[0], expected, rtol=0, atol=1e-12)
    # Arm 2 has the largest index (2.34 against 1.89 and 1.76): UCB1 plays it for sure.
    np.testing.assert_array_equal(UCB1().probabilities(observed(UCB1()), MASK3)[0], [0.0, 0.0, 1.0])


@pytest.mark.parametrize("c, horizon", [(0.0, None), (1.0, 100), (2.0, None)])
def test_bayes_ucb_index_is_the_posterior_quantile_by_hand(c, horizon):
    """Beta(1, 1), Beta(1, 2) and Beta(3, 1) quantiles have closed forms: q, 1 - sqrt(1 - q), q^(1/3)."""
    policy = BayesUCB(c=c, horizon=horizon)
    # Arm 0 untried, arm 1 one failure, arm 2 two successes: round t = 4.
    state = policy.update(policy.init_state(3), np.array([1, 2, 2]), np.array([0.0, 1.0, 1.0]))
    n = 4 if horizon is None else horizon
    level = 1 - 1 / (4 * max(math.log(n), 1.0) ** c)
    assert policy.quantile_level(state)[0, 0] == pytest.approx(level, abs=1e-15)
    expected = [level, 1 - math.sqrt(1 - level), level ** (1 / 3)]
    np.testing.assert_allclose(policy.indices(state)[0], expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(policy.probabilities(state, MASK3)[0], [0.0, 0.0, 1.0])


def test_bayes_ucb_first_round_is_uniform():
    """t = 1 gives level 0, where every quantile is 0: all arms tie."""
    policy = BayesUCB()
    np.testing.assert_array_equal(policy.indices(policy.init_state(3))[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(policy.probabilities(policy.init_state(3), MASK3)[0], [1 / 3] * 3, rtol=0, atol=0)


def _kl(p: float, q: float) -> float:
    value = 0.0
    if p > 0:
        value += p * math.log(p / q)
    if p < 1:
        value += (1 - p) * math.log((1 - p) / (1 - q))
    return value


def _kl_ucb_index(mean: float, pulls: int, budget: float) -> float:
    """The largest q in [mean, 1] with pulls * kl(mean, q) <= budget, by Brent's root finder."""
    if mean >= 1.0:
        return 1.0
    return optimize.brentq(lambda q: pulls * _kl(mean, q) - budget, mean, 1 - 1e-15, xtol=1e-14)


@pytest.mark.parametrize("c", [0.0, 3.0])
def test_kl_ucb_index_solves_the_inequality(c):
    budget = math.log(6) + c * math.log(math.log(6))
    expected = [_kl_ucb_index(2 / 3, 3, budget), _kl_ucb_index(0.0, 1, budget), 1.0]
    # kl(0, q) = -ln(1 - q): the index of an arm with mean 0 has a closed form.
    assert expected[1] == pytest.approx(1 - math.exp(-budget), abs=1e-12)
    policy = KLUCB(c=c)
    np.testing.assert_allclose(policy.indices(observed(policy))[0], expected, rtol=0, atol=1e-9)


def test_thompson_beta_posterior_by_hand():
    policy = ThompsonSampling()
    alpha, beta = policy.posterior(observed(policy))
    np.testing.assert_array_equal(alpha[0], [1 + 2, 1 + 0, 1 + 2])
    np.testing.assert_array_equal(beta[0], [1 + 1, 1 + 1, 1 + 0])
    np.testing.assert_allclose(policy.means(observed(policy))[0], [3 / 5, 1 / 3, 3 / 4], rtol=0, atol=1e-15)
    # Fractional rewards add r to successes and 1 - r to failures.
    alpha, beta = policy.posterior(policy.update(policy.init_state(1), np.array([0]), np.array([0.25])))
    assert (alpha[0, 0], beta[0, 0]) == (1.25, 1.75)


def test_thompson_probability_against_a_uniform_arm_is_its_mean():
    """P(X > U) = E[X] for U ~ Uniform(0, 1) = Beta(1, 1): here Beta(3, 2) beats an untried arm w.p. 3/5."""
    policy = ThompsonSampling()
    state = policy.update(policy.init_state(2), np.array([0, 0, 0]), np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(
        policy.probabilities(state, np.ones((1, 2), dtype=bool))[0], [0.6, 0.4], rtol=0, atol=1e-9
    )


def test_gaussian_thompson_posterior_by_hand():
    """Normal-Gamma update (Murphy 2007, eqs. 86-89) for rewards 10 and 12 on one arm."""
    policy = GaussianThompsonSampling(prior_mean=0.0, prior_count=0.01, prior_shape=1.0, prior_rate=1.0)
    state = policy.update(policy.init_state(2), np.array([1, 1]), np.array([10.0, 12.0]))
    kappa, mu = 0.01 + 2, (0.01 * 0.0 + 22.0) / 2.01
    shape = 1.0 + 2 / 2
    rate = 1.0 + 0.5 * ((10 - 11) ** 2 + (12 - 11) ** 2) + 0.01 * 2 * (11 - 0) ** 2 / (2 * kappa)
    posterior = policy.posterior(state)
    np.testing.assert_allclose(posterior.loc[0], [0.0, mu], rtol=1e-12)
    np.testing.assert_allclose(posterior.scale[0, 1], math.sqrt(rate / (shape * kappa)), rtol=1e-12)
    np.testing.assert_allclose(posterior.dof[0], [2.0, 2 * shape], rtol=1e-12)


def test_exp3_weights_after_a_known_update():
    policy = EXP3(gamma=0.1)
    state = policy.update(policy.init_state(3), np.array([1]), np.array([1.0]), propensities=np.array([0.4]))
    np.testing.assert_allclose(state["log_weights"][0], [0.0, 0.1 * 1.0 / (3 * 0.4), 0.0], rtol=0, atol=1e-15)
    weights = np.exp([0.0, 1 / 12, 0.0])
    expected = 0.9 * weights / weights.sum() + 0.1 / 3
    np.testing.assert_allclose(policy.probabilities(state, MASK3)[0], expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "mask, expected",
    [
        ([True, True, True, True], [0.05, 0.05, 0.85, 0.05]),
        ([True, True, False, True], [0.2 / 3 + 0.8, 0.2 / 3, 0.0, 0.2 / 3]),  # best allowed arm is 0
        ([False, True, False, True], [0.0, 0.5, 0.0, 0.5]),  # two tied arms of mean 0
    ],
)
def test_epsilon_greedy_probabilities_by_hand(mask, expected):
    policy = EpsilonGreedy(epsilon=0.2)
    # Means: arm 0 -> 0.5, arm 2 -> 2/3, arms 1 and 3 untried -> 0.
    state = policy.update(policy.init_state(4), np.array([0, 2, 2, 2]), np.array([0.5, 1.0, 0.0, 1.0]))
    np.testing.assert_allclose(policy.probabilities(state, np.array([mask]))[0], expected, rtol=0, atol=1e-15)


def test_epsilon_greedy_decay_schedule():
    policy = EpsilonGreedy(epsilon=0.3, decay=0.5)
    state = policy.update(policy.init_state(2), np.array([0, 0, 1, 1]), np.array([1.0, 1.0, 0.0, 0.0]))
    assert policy.exploration_rate(state)[0, 0] == pytest.approx(0.3 / (1 + 0.5 * 4), abs=1e-15)
    np.testing.assert_allclose(
        policy.probabilities(state, np.ones((1, 2), dtype=bool))[0], [0.9 + 0.05, 0.05], rtol=0, atol=1e-15
    )


def test_softmax_probabilities_by_hand():
    policy = Softmax(temperature=0.5, anneal=0.25)
    state = policy.update(policy.init_state(2), np.array([0, 1, 1]), np.array([0.2, 0.6, 0.6]))
    temperature = 0.5 / (1 + 0.25 * 3)
    weights = np.exp(np.array([0.2, 0.6]) / temperature)
    np.testing.assert_allclose(
        policy.probabilities(state, np.ones((1, 2), dtype=bool))[0], weights / weights.sum(), rtol=0, atol=1e-15
    )


def test_discounted_thompson_counts_by_hand():
    policy = DiscountedThompsonSampling(gamma=0.5)
    state = policy.init_state(2)
    for arm, reward in ((0, 1.0), (1, 0.0), (0, 1.0)):
        state = policy.update(state, np.array([arm]), np.array([reward]))
    # successes: 1 -> 0.5 -> 0.25 + 1; failures of arm 1: 1 -> 0.5.
    np.testing.assert_allclose(state["successes"][0], [1.25, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(state["failures"][0], [0.0, 0.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(policy.means(state)[0], [2.25 / 3.25, 1 / 2.5], rtol=0, atol=1e-15)


def test_sliding_window_ucb_index_by_hand():
    policy = SlidingWindowUCB(window=3, xi=0.6)
    state = policy.update(policy.init_state(3), np.array([0, 1, 0, 2]), np.array([1.0, 0.0, 0.0, 1.0]))
    # The window holds the last three rewards: (arm 1, 0), (arm 0, 0), (arm 2, 1).
    np.testing.assert_array_equal(state["pulls"][0], [1, 1, 1])
    np.testing.assert_array_equal(state["reward_sums"][0], [0, 0, 1])
    bonus = math.sqrt(0.6 * math.log(3) / 1)
    np.testing.assert_allclose(policy.indices(state)[0], [bonus, bonus, 1 + bonus], rtol=0, atol=1e-12)

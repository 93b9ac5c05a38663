"""Statistical behaviour with designed tolerances: learning, log-regret, adversarial and drifting rewards.

Every simulation runs R replications at once through the policy protocol (a
state per replication), against an environment whose uniforms are drawn up
front from a fixed seed; the policy's own generator has a separate seed, so the
replications differ only by the policy's randomness and the fixed world.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from policy_cases import NON_CONTEXTUAL

from banditkit.policies import make_policy

pytestmark = pytest.mark.slow

ENV_SEED, POLICY_SEED = 20240601, 7
MEANS = np.array([0.2, 0.5, 0.8])
HORIZON, REPLICATIONS = 2000, 20


def simulate(
    spec, means: np.ndarray, horizon: int, replications: int, policy_seed: int = POLICY_SEED, payout: float = 1.0
) -> np.ndarray:
    """Chosen arms, shape (horizon, replications); ``means`` is (K,) or (horizon, K) for drifting worlds.

    A success pays ``payout`` (a conversion worth $100, say), a failure 0.
    """
    policy = make_policy(spec)
    n_arms = means.shape[-1]
    world = np.random.default_rng(ENV_SEED).random((horizon, replications))
    rng = np.random.default_rng(policy_seed)
    state, mask, rows = (
        policy.init_state(n_arms, replications),
        np.ones((replications, n_arms), bool),
        np.arange(replications),
    )
    chosen = np.empty((horizon, replications), dtype=np.intp)
    for step in range(horizon):
        step_means = means[step] if means.ndim == 2 else means
        arms = policy.sample(state, rng, mask)
        rewards = payout * (world[step] < step_means[arms]).astype(np.float64)
        propensities = policy.probabilities(state, mask)[rows, arms] if policy.needs_propensities else None
        state = policy.update(state, arms, rewards, propensities=propensities)
        chosen[step] = arms
    return chosen


@functools.cache
def stationary_run(name: str) -> np.ndarray:
    return simulate({"name": name, "params": {}}, MEANS, HORIZON, REPLICATIONS)


#: Lowest acceptable share of the best arm over rounds 1,501-2,000 (mean over replications).
#: Uniform play gives 1/3. Correct implementations measured 0.91-1.00 with a replication standard
#: error of at most 0.007; each floor sits 0.05-0.1 below its measurement (over 10 standard errors),
#: so a failure means the policy stopped learning, not bad luck.
BEST_ARM_FLOOR = {
    "bayes_ucb": 0.95,  # 0.996
    "epsilon_greedy": 0.85,  # measured 0.934 = greedy 0.9 of the time + 1/3 of the exploring 0.1
    "softmax": 0.90,  # 0.971 (temperature 0.1)
    "ucb1": 0.90,  # 0.984
    "kl_ucb": 0.90,  # 0.996
    "thompson": 0.95,  # 0.998
    "gaussian_thompson": 0.95,  # 0.996
    "exp3": 0.85,  # 0.934: gamma 0.1 keeps 1/30 per arm on exploration
    "discounted_thompson": 0.85,  # 0.914: forgetting (gamma 0.99) keeps some exploration going
    "sliding_window_ucb": 0.90,  # 0.987
}


def test_every_policy_has_a_best_arm_floor():
    assert sorted(BEST_ARM_FLOOR) == NON_CONTEXTUAL


@pytest.mark.parametrize("name", NON_CONTEXTUAL)
def test_best_arm_share_after_learning(name):
    chosen = stationary_run(name)
    late_share = (chosen[1500:] == 2).mean()
    early_share = (chosen[:100] == 2).mean()
    assert late_share >= BEST_ARM_FLOOR[name], late_share
    assert late_share > early_share


@pytest.mark.parametrize("name", ["ucb1", "kl_ucb", "thompson", "bayes_ucb"])
def test_regret_grows_like_log_n(name):
    """Regret added over each doubling [n, 2n) stays about constant, as c * ln 2 does for log regret.

    n = 250, 500, 1000 give three increments. Logarithmic regret keeps their
    ratio near 1 (measured 0.9-1.2); sqrt(n) regret would make the last twice
    the first, linear regret four times. We require last / first < 1.7, and
    regret at 2,000 below 15% of the uniform policy's (0.3 per round, 600;
    measured 1.5% for Thompson sampling, 8% for UCB1).
    """
    chosen = stationary_run(name)
    regret = np.cumsum((MEANS.max() - MEANS[chosen]).mean(axis=1))
    at = {n: regret[n - 1] for n in (250, 500, 1000, 2000)}
    increments = [at[500] - at[250], at[1000] - at[500], at[2000] - at[1000]]
    assert min(increments) > 0
    assert increments[-1] / increments[0] < 1.7, increments
    assert at[2000] < 0.15 * 0.3 * 2000, at


#: Kaufmann, Cappé & Garivier (2012), section 5: ten arms with low success rates, hard to tell apart.
LOW_RATES = np.array([0.1, 0.05, 0.05, 0.05, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01])


@pytest.mark.parametrize("means", [MEANS, LOW_RATES], ids=["three-arms", "ten-low-rates"])
@pytest.mark.parametrize("policy_seed", [1, 2, 3])
def test_bayes_ucb_beats_uniform_and_matches_ucb1(means, policy_seed):
    """Mean regret over 20 replications at 2,000 rounds: at most UCB1's, and far below uniform play's.

    The world is fixed (ENV_SEED); the policies' seed varies. Measured over
    seeds 1-3: three arms, Bayes-UCB 8.6-9.4 (standard error ~1), UCB1 about 48
    (~1.7), uniform 600; ten low rates, Bayes-UCB 57-66 (~3), UCB1 about 118
    (~0.7), uniform 132. So "no more than UCB1" has a margin near 15 standard
    errors, and "below 0.7 of uniform" (92 on the ten arms) near 8.
    """

    def regret(name):
        chosen = simulate({"name": name, "params": {}}, means, HORIZON, REPLICATIONS, policy_seed=policy_seed)
        return (means.max() - means[chosen]).sum(axis=0).mean()

    uniform = (means.max() - means.mean()) * HORIZON
    bayes_ucb, ucb1 = regret("bayes_ucb"), regret("ucb1")
    assert bayes_ucb <= ucb1, (bayes_ucb, ucb1)
    assert bayes_ucb < 0.7 * uniform, (bayes_ucb, uniform)


def test_exp3_beats_uniform_on_an_oblivious_switching_sequence():
    """Blocks of 250 rounds: arm 0 pays 0.9 then 0.3, arm 1 0.4 then 0.6, arm 2 always 0.1.

    Uniform play earns 0.383 a round; the best fixed arm 0.6. EXP3 (gamma 0.1)
    must beat uniform by 0.1 a round: its mean over 20 replications has a
    standard error near 0.005, so the margin is many standard errors wide.
    """
    horizon = 2000
    block = (np.arange(horizon) // 250) % 2
    means = np.where(block[:, None] == 0, [0.9, 0.4, 0.1], [0.3, 0.6, 0.1])
    chosen = simulate({"name": "exp3", "params": {"gamma": 0.1}}, means, horizon, REPLICATIONS)
    earned = means[np.arange(horizon)[:, None], chosen].mean()
    uniform = means.mean()
    assert earned > uniform + 0.1, (earned, uniform)


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "discounted_thompson", "params": {"gamma": 0.98}},
        {"name": "sliding_window_ucb", "params": {"window": 200}},
    ],
    ids=lambda spec: spec["name"],
)
def test_non_stationary_policies_recover_after_an_abrupt_change(spec):
    """Means (0.8, 0.5, 0.2) flip to (0.2, 0.5, 0.8) at round 1,000 of 1,500.

    In the last 300 rounds a recovered policy plays the new best arm most of the
    time (measured 0.85-0.9 over 20 replications, standard error < 0.03); we
    require 0.7. Stationary Thompson sampling, anchored by 1,000 rounds of old
    evidence, is still switching there (measured 0.35); we require it below 0.6,
    which shows the scenario really needs forgetting.
    """
    horizon = 1500
    means = np.where(np.arange(horizon)[:, None] < 1000, [0.8, 0.5, 0.2], [0.2, 0.5, 0.8])
    adaptive = (simulate(spec, means, horizon, REPLICATIONS)[1200:] == 2).mean()
    stationary = (simulate({"name": "thompson", "params": {}}, means, horizon, REPLICATIONS)[1200:] == 2).mean()
    assert adaptive >= 0.7, adaptive
    assert stationary < 0.6, stationary


#: Gaussian Thompson sampling's prior before it took its scale from the rewards: a unit scale, whatever the unit.
UNIT_PRIOR = {"prior_mean": 0.0, "prior_count": 0.01, "prior_shape": 1.0, "prior_rate": 1.0}


def starved_runs(spec) -> int:
    """Runs (of 60) that gave the better arm under 5% of 3,000 visits: conversion 4% against 6%, $100 each."""
    chosen = simulate(spec, np.array([0.04, 0.06]), 3000, 60, payout=100.0)
    return int(((chosen == 1).mean(axis=0) < 0.05).sum())


def test_gaussian_thompson_keeps_exploring_revenue():
    """Rewards of $0 or $100 must not starve the better arm, as a prior on a unit scale did.

    Here the default prior (set from the rewards) starves 0 runs of 60, and
    Beta-Bernoulli Thompson sampling on the same data (``reward_range=(0,
    100)``) 0; the unit-scale prior starved 13 (14 of 60 in the report that
    found it). Over 12,000 runs (10 environment seeds) the default starved
    0.12% of them and Beta-Bernoulli Thompson sampling 0.19%, so a correct
    policy starves 2 or more of 60 with probability about 0.25%: we require at
    most 1, and at least 8 for the unit-scale prior, which shows the case
    tells the priors apart.
    """
    assert starved_runs({"name": "gaussian_thompson", "params": {}}) <= 1
    assert starved_runs({"name": "thompson", "params": {"reward_range": (0.0, 100.0)}}) <= 1
    assert starved_runs({"name": "gaussian_thompson", "params": UNIT_PRIOR}) >= 8

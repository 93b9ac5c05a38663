"""LinUCB and LinTS learn a linear contextual problem that context-free policies cannot.

Design. K = 5 arms, d = 5 features, x ~ N(0, I), theta_k ~ N(0, I/d), reward
x^T theta_k + N(0, 0.1^2); 5,000 rounds in four environments (seeds 0-3) run
side by side as a state batch of 4. Any context-free policy earns about 0 per
round (every arm's mean reward is 0), the oracle about 1.1. We compare the
mean reward over the last 1,000 rounds: its standard error is about 0.03 per
environment, so the margins below (0.6 over UCB1 and uniform random, 85% of
the oracle) are over 15 standard errors away from a chance failure.
"""

from __future__ import annotations

import numpy as np
import pytest

from banditkit.policies import UCB1
from banditkit.policies.linear import LinTS, LinUCB

N_ARMS, N_FEATURES, HORIZON, SEEDS, NOISE = 5, 5, 5_000, (0, 1, 2, 3), 0.1


def environment(seed):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(N_ARMS, N_FEATURES)) / np.sqrt(N_FEATURES)
    contexts = rng.normal(size=(HORIZON, N_FEATURES))
    noise = NOISE * rng.normal(size=(HORIZON,))
    return theta, contexts, noise


ENVIRONMENTS = [environment(seed) for seed in SEEDS]
THETA = np.stack([env[0] for env in ENVIRONMENTS])  # (E, K, d)
CONTEXTS = np.stack([env[1] for env in ENVIRONMENTS], axis=1)  # (T, E, d)
NOISES = np.stack([env[2] for env in ENVIRONMENTS], axis=1)  # (T, E)


def last_rewards(policy, contextual: bool, seed: int = 100) -> np.ndarray:
    """Mean expected reward over the last 1,000 rounds, one value per environment."""
    rng = np.random.default_rng(seed)
    batch = len(SEEDS)
    state = policy.init_state(N_ARMS, batch, N_FEATURES if contextual else None)
    mask = np.ones((batch, N_ARMS), bool)
    earned = np.zeros(batch)
    for t in range(HORIZON):
        x = CONTEXTS[t]
        arms = policy.sample(state, rng, mask, x if contextual else None)
        expected = np.einsum("ed,ed->e", x, THETA[np.arange(batch), arms])
        if t >= HORIZON - 1_000:
            earned += expected
        state = policy.update(state, arms, expected + NOISES[t], context=x if contextual else None)
    return earned / 1_000


def oracle() -> np.ndarray:
    return np.einsum("ted,ekd->tek", CONTEXTS[-1_000:], THETA).max(axis=2).mean(axis=0)


def uniform_random() -> np.ndarray:
    arms = np.random.default_rng(7).integers(0, N_ARMS, (1_000, len(SEEDS)))
    chosen = THETA[np.arange(len(SEEDS))[None, :], arms]  # (1000, E, d)
    return np.einsum("ted,ted->te", CONTEXTS[-1_000:], chosen).mean(axis=0)


@pytest.fixture(scope="module")
def ucb1():
    return last_rewards(UCB1(), contextual=False)


@pytest.mark.slow
@pytest.mark.parametrize("policy", [LinUCB(alpha=1.0), LinTS(v=0.3)], ids=["linucb", "lints"])
def test_linear_policies_beat_context_free_ones(policy, ucb1):
    ours = last_rewards(policy, contextual=True)
    random = uniform_random()
    best = oracle()
    assert np.all(ours >= ucb1 + 0.6), (ours, ucb1)
    assert np.all(ours >= random + 0.6), (ours, random)
    assert np.all(ours >= 0.85 * best), (ours, best)

"""Shared policy test cases: every registered non-contextual policy, variants, seeded states and runs."""

from __future__ import annotations

from typing import Any

import numpy as np

import banditkit as bk
from banditkit.policies import REGISTRY

#: Every registered policy that needs no context; new registrations are covered automatically.
NON_CONTEXTUAL = sorted(name for name, cls in REGISTRY.items() if not cls.contextual)

#: Every registered policy whose rewards lie in an interval it maps onto [0, 1] (``reward_range``).
BOUNDED = sorted(name for name in NON_CONTEXTUAL if REGISTRY[name]().reward_range is not None)

#: Extra hyperparameters that exercise a policy's less common code paths (schedules, short windows, rewards on
#: another scale than [0, 1], fixed priors).
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "epsilon_greedy": [{"epsilon": 0.3, "decay": 0.05}],
    "softmax": [{"temperature": 0.2, "anneal": 0.01}],
    "discounted_thompson": [{"gamma": 0.8}, {"gamma": 0.8, "reward_range": (-2.0, 8.0)}],
    "sliding_window_ucb": [{"window": 7}, {"window": 7, "reward_range": (0.0, 500.0)}],
    "exp3": [{"gamma": 0.5}, {"gamma": 0.5, "reward_range": (-2.0, 8.0)}],
    "gaussian_thompson": [
        {"prior_mean": 0.5, "prior_count": 2.0},
        {"prior_mean": 0.0, "prior_count": 0.01, "prior_shape": 1.0, "prior_rate": 1.0},
    ],
    "ucb1": [{"reward_range": (0.0, 500.0)}],
    "kl_ucb": [{"reward_range": (-2.0, 8.0)}],
    "bayes_ucb": [{"reward_range": (0.0, 500.0)}],
    "thompson": [{"reward_range": (-2.0, 8.0)}],
}

SPECS = [{"name": name, "params": {}} for name in NON_CONTEXTUAL] + [
    {"name": name, "params": params} for name in NON_CONTEXTUAL for params in VARIANTS.get(name, [])
]


def spec_id(spec: dict) -> str:
    params = ",".join(f"{k}={v}" for k, v in spec["params"].items())
    return f"{spec['name']}({params})" if params else spec["name"]


def on_scale(policy, unit_rewards):
    """Rewards in [0, 1] mapped onto the policy's ``reward_range`` (unchanged for a policy without one)."""
    if policy.reward_range is None:
        return unit_rewards
    low, high = policy.reward_range
    return low + (high - low) * unit_rewards


def trained_state(policy, n_arms: int = 4, n_rewards: int = 60, seed: int = 5, batch: int = 1):
    """A state after ``n_rewards`` seeded updates with distinct arm means (a non-trivial distribution);
    rewards are 0 or 1 mapped onto the policy's ``reward_range``."""
    rng = np.random.default_rng(seed)
    state = policy.init_state(n_arms, batch)
    means = np.linspace(0.2, 0.8, n_arms)
    for _ in range(n_rewards // 10):
        arms = rng.integers(0, n_arms, size=10 if batch == 1 else batch)
        rewards = on_scale(policy, (rng.random(arms.shape[0]) < means[arms]).astype(float))
        propensities = np.full(arms.shape[0], 1.0 / n_arms)
        state = policy.update(state, arms, rewards, propensities=propensities)
    return state


def bernoulli_run(
    bandit: bk.Bandit, steps: int, env_seed: int = 2024, means=(0.2, 0.5, 0.7), propensity_every: int = 0
) -> tuple[list[int], list[float]]:
    """Play ``steps`` select/update rounds against Bernoulli arms; one environment uniform per round.

    Rewards are 0 or 1, mapped onto the ``reward_range`` of a policy that has one.

    The environment's stream does not depend on the decisions, so two bandits
    fed by the same ``env_seed`` see the same world. Returns the chosen arm
    indices and, every ``propensity_every`` rounds, the decision's propensity.
    """
    env = np.random.default_rng(env_seed)
    means = np.asarray(means)
    arms, propensities = [], []
    for step in range(steps):
        decision = bandit.select()
        arms.append(decision.arm_index)
        if propensity_every and step % propensity_every == 0:
            propensities.append(decision.propensity)
        bandit.update(decision, float(on_scale(bandit.policy, float(env.random() < means[decision.arm_index]))))
    return arms, propensities

"""A served Bandit split into model and additive arrays, and rewards learned as deltas."""

from __future__ import annotations

import numpy as np
import pytest

import banditkit as bk
from banditkit.service.model import apply_rewards, guarded, join, reward_delta, split
from banditkit.service.stores.base import merge_delta, policy_state

POLICIES = [
    "thompson",
    "ucb1",
    "epsilon_greedy",
    "gaussian_thompson",
    "exp3",
    "kl_ucb",
    "softmax",
    "discounted_thompson",
    "sliding_window_ucb",
    "bayes_ucb",
]


def trained(policy: str, seed: int = 3, **kwargs) -> bk.Bandit:
    bandit = bk.Bandit(["a", "b", "c"], policy=policy, seed=seed, **kwargs)
    rng = np.random.default_rng(seed)
    arms = rng.integers(0, 3, 40)
    bandit.update_many(arms, (rng.random(40) < 0.4).astype(float), propensities=np.full(40, 1 / 3))
    return bandit


@pytest.mark.parametrize("policy", POLICIES)
def test_split_and_join_round_trip_exactly(policy):
    bandit = trained(policy)
    bandit.disable_arm("b")
    model, arrays = split(bandit)
    back = join(model, arrays, bandit.version, np.random.default_rng(0))
    assert back.arms == bandit.arms and back.active_arms == ["a", "c"] and back.version == bandit.version
    for key, value in bandit.state.items():
        np.testing.assert_array_equal(back.state[key], value)
    for key in ("pulls", "reward_sums", "reward_sq_sums", "total_reward"):
        assert back.to_dict()[key] == bandit.to_dict()[key]
    assert back.probabilities() == pytest.approx(bandit.probabilities(), abs=1e-12)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_delta_learns_what_update_many_learns(policy):
    served, reference = trained(policy), trained(policy)
    arms, rewards = np.array([0, 2, 2, 1]), np.array([1.0, 0.0, 1.0, 1.0])
    propensities = np.full(4, 0.25)
    delta = reward_delta(served.policy, len(served.arms), served.state, arms, rewards, None, propensities)
    _, before = split(served)
    apply_rewards(served, delta, arms, rewards)
    reference.update_many(arms, rewards, propensities=propensities)
    assert served.version == reference.version
    stored = merge_delta(served.policy, before, delta)  # what the store computes
    for key, value in reference.state.items():
        np.testing.assert_allclose(served.state[key], value, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(served.state[key], policy_state(stored)[key])
    _, after = split(served)
    assert after.keys() == stored.keys()
    for key, value in after.items():  # memory = what the store computes, the ledger included
        np.testing.assert_array_equal(value, stored[key])
    np.testing.assert_array_equal(served.pulls, reference.pulls)


def test_computing_a_delta_changes_nothing():
    bandit = trained("thompson")
    _, snapshot = split(bandit)
    reward_delta(bandit.policy, len(bandit.arms), bandit.state, np.array([0]), np.array([1.0]), None, None)
    for key, value in split(bandit)[1].items():
        np.testing.assert_array_equal(value, snapshot[key])


def test_reactive_guardrails_run_when_rewards_are_applied():
    bandit = bk.Bandit(
        ["a", "b"], policy="thompson", seed=1, guardrails={"default_arm": "a", "min_reward_rate": 0.5, "slo_window": 3}
    )
    before = guarded(bandit)
    arms, rewards = np.array([1, 1, 1]), np.zeros(3)
    delta = reward_delta(bandit.policy, len(bandit.arms), bandit.state, arms, rewards, None, None)
    apply_rewards(bandit, delta, arms, rewards)
    assert guarded(bandit) != before and bandit.active_arms == ["a"]
    assert "SLO" in bandit.disabled_reasons["b"]

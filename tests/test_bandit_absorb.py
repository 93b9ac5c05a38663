"""``Bandit.absorb``: a policy state computed elsewhere (a store adding a delta) learned like update_many."""

from __future__ import annotations

import numpy as np
import pytest

import banditkit as bk


@pytest.mark.parametrize("policy", ["thompson", "ucb1", "exp3", "gaussian_thompson"])
def test_absorbing_the_updated_state_is_update_many(policy):
    arms, rewards = np.array([0, 2, 2, 1]), np.array([1.0, 0.0, 1.0, 1.0])
    reference = bk.Bandit(["a", "b", "c"], policy=policy, seed=3)
    absorbing = bk.Bandit(["a", "b", "c"], policy=policy, seed=3)
    propensities = np.full(4, 0.25)
    updated = absorbing.policy.update(absorbing.state, arms, rewards, propensities=propensities)
    reference.update_many(arms, rewards, propensities=propensities)
    absorbing.absorb(arms, rewards, updated)
    assert absorbing.to_dict() == reference.to_dict()


def test_absorb_runs_the_guardrails():
    bandit = bk.Bandit(
        ["a", "b"], policy="thompson", guardrails={"default_arm": "a", "min_reward_rate": 0.5, "slo_window": 3}
    )
    arms, rewards = np.array([1, 1, 1]), np.zeros(3)
    bandit.absorb(arms, rewards, bandit.policy.update(bandit.state, arms, rewards))
    assert bandit.active_arms == ["a"] and "SLO" in bandit.disabled_reasons["b"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda state: {**state, "successes": state["successes"][:, :2]}, "keys and shapes"),
        (lambda state: {key: value for key, value in state.items() if key != "successes"}, "keys and shapes"),
        (lambda state: {**state, "successes": np.full_like(state["successes"], np.nan)}, "NaN"),
    ],
)
def test_a_bad_state_is_refused_and_nothing_changes(change, message):
    bandit = bk.Bandit(["a", "b", "c"], policy="discounted_thompson", seed=1)
    before = bandit.to_dict()
    with pytest.raises(bk.BanditkitError, match=message):
        bandit.absorb([0], [1.0], change(bandit.policy.update(bandit.state, np.array([0]), np.array([1.0]))))
    assert bandit.to_dict() == before


def test_a_contextual_bandit_without_a_state_refuses_clearly():
    learned = bk.Bandit(["a", "b"], policy="linucb", n_features=2, seed=0)
    learned.update("a", 1.0, context=[1.0, 0.0])
    fresh = bk.Bandit(["a", "b"], policy="linucb", seed=0)  # no context seen, no n_features: no state yet
    with pytest.raises(bk.InvalidParameterError, match="n_features"):
        fresh.absorb(["a"], [1.0], learned.state)
    assert fresh.state is None and fresh.version == 0


def test_bad_arms_and_rewards_are_refused():
    bandit = bk.Bandit(["a", "b"], policy="thompson")
    with pytest.raises(bk.BanditkitError, match="zzz"):
        bandit.absorb(["zzz"], [1.0], bandit.state)
    with pytest.raises(bk.BanditkitError, match="rewards"):
        bandit.absorb([0], [float("nan")], bandit.state)


def test_a_merged_row_buffer_is_absorbed_like_update_many():
    """A model-based policy's state grows with its rows: absorb takes the longer buffers, nothing else."""
    spec = {"name": "bootstrapped_thompson", "params": {"n_replicas": 2, "refit_every": 3}}
    reference = bk.Bandit(["a", "b"], policy=spec, n_features=2, seed=5)
    absorbing = bk.Bandit(["a", "b"], policy=spec, n_features=2, seed=5)
    arms, rewards, contexts = np.array([0, 1, 1, 0]), np.array([1.0, 0.0, 0.5, 2.0]), np.arange(8.0).reshape(4, 2)
    policy = absorbing.policy
    delta = policy.state_delta(absorbing.state, policy.update(absorbing.state, arms, rewards, context=contexts))
    absorbing.absorb(arms, rewards, policy.merge_delta(absorbing.state, delta))
    reference.update_many(arms, rewards, contexts=contexts)
    assert absorbing.to_dict() == reference.to_dict() and absorbing.state["rewards"].shape == (1, 4)
    wider = {**absorbing.state, "contexts": np.zeros((1, 4, 3))}  # a buffer may grow, not change width
    with pytest.raises(bk.BanditkitError, match=r"keys and shapes .* may change length"):
        absorbing.absorb([0], [1.0], wider)


def _ledger_after(bandit: bk.Bandit, arms: np.ndarray, rewards: np.ndarray) -> dict[str, np.ndarray]:
    """The reward ledger a store that merges the ledger's delta itself holds after ``rewards`` (as the planner adds)."""
    n_arms = len(bandit.arms)
    return {
        "pulls": bandit.pulls + np.bincount(arms, minlength=n_arms).astype(np.float64),
        "reward_sums": bandit.reward_sums + np.bincount(arms, weights=rewards, minlength=n_arms),
        "reward_sq_sums": bandit.reward_sq_sums + np.bincount(arms, weights=rewards * rewards, minlength=n_arms),
        "total_reward": np.array([bandit.total_reward]) + np.array([rewards.sum()]),
    }


@pytest.mark.parametrize("policy", ["thompson", "ucb1", "exp3", "gaussian_thompson"])
def test_adopting_the_merged_state_and_ledger_is_absorbing_them(policy):
    """The same Bandit, to the bit, as absorb's (and so update_many's), and the guardrails run after it."""
    absorbing = bk.Bandit(["a", "b", "c"], policy=policy, seed=3, guardrails={"min_reward_rate": 0.4, "slo_window": 2})
    adopting = bk.Bandit(["a", "b", "c"], policy=policy, seed=3, guardrails={"min_reward_rate": 0.4, "slo_window": 2})
    for arms, rewards in [(np.array([0, 2, 2, 1]), np.array([1.0, 0.0, 1.0, 0.1])), (np.array([2]), np.array([0.0]))]:
        propensities = np.full(len(arms), 0.25)
        updated = adopting.policy.update(adopting.state, arms, rewards, propensities=propensities)
        ledger = _ledger_after(adopting, arms, rewards)
        absorbing.absorb(arms, rewards, updated, version=absorbing.version + 2)
        adopting.adopt(updated, ledger, version=adopting.version + 2)
        assert adopting.to_dict() == absorbing.to_dict()
    assert adopting.version == 4 and "SLO" in adopting.disabled_reasons["c"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda ledger: {key: value for key, value in ledger.items() if key != "total_reward"}, "must have the keys"),
        (lambda ledger: {**ledger, "pulls": ledger["pulls"][:2]}, r"ledger\['pulls'\] must have shape \(3,\)"),
        (lambda ledger: {**ledger, "total_reward": np.zeros(2)}, r"ledger\['total_reward'\] must have shape"),
        (lambda ledger: {**ledger, "reward_sq_sums": np.full(3, np.inf)}, r"ledger\['reward_sq_sums'\] holds NaN"),
        (lambda ledger: {**ledger, "total_reward": np.array(np.nan)}, r"ledger\['total_reward'\] holds NaN"),
    ],
)
def test_a_bad_ledger_is_refused_and_nothing_changes(change, message):
    bandit = bk.Bandit(["a", "b", "c"], policy="thompson", seed=1)
    before = bandit.to_dict()
    arms, rewards = np.array([0]), np.array([1.0])
    with pytest.raises(bk.InvalidParameterError, match=message):
        bandit.adopt(bandit.policy.update(bandit.state, arms, rewards), change(_ledger_after(bandit, arms, rewards)))
    with pytest.raises(bk.InvalidParameterError, match="version"):
        bandit.adopt(bandit.state, _ledger_after(bandit, arms, rewards), version=bandit.version)
    assert bandit.to_dict() == before

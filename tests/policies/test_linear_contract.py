"""The contract every registered contextual policy keeps (new contextual registrations are covered automatically)."""

from __future__ import annotations

import numpy as np
import pytest

import banditkit as bk
from banditkit.policies import REGISTRY, make_policy

CONTEXTUAL = sorted(name for name, cls in REGISTRY.items() if cls.contextual)
#: Small, fast settings for the model-based policies (the defaults refit every 50 rows).
PARAMS = {
    "bootstrapped_thompson": {"n_replicas": 3, "refit_every": 10},
    "contextual_epsilon_greedy": {"refit_every": 10},
}
N_ARMS, N_FEATURES = 3, 2


def trained(name, batch=1, seed=0):
    policy = make_policy({"name": name, "params": PARAMS.get(name, {})})
    rng = np.random.default_rng(seed)
    contexts = rng.normal(size=(40, N_FEATURES))
    arms = rng.integers(0, N_ARMS, 40)
    rewards = contexts[:, 0] * (arms == 0) + 0.3 * (arms == 1) + 0.1 * rng.normal(size=40)
    state = policy.init_state(N_ARMS, 1, N_FEATURES)
    state = policy.update(state, arms, rewards, context=contexts)
    if batch > 1:
        state = {key: np.repeat(value, batch, axis=0) for key, value in state.items()}
    return policy, state


@pytest.mark.parametrize("name", CONTEXTUAL)
def test_operations_are_pure_and_probabilities_valid(name):
    policy, state = trained(name)
    before = {key: value.copy() for key, value in state.items()}
    contexts = np.random.default_rng(1).normal(size=(6, N_FEATURES))
    mask = np.ones((6, N_ARMS), bool)
    mask[::2, 1] = False
    probabilities = policy.probabilities(state, mask, contexts)
    arms = policy.sample(state, np.random.default_rng(2), mask, contexts)
    policy.update(state, arms, np.ones(6), context=contexts)
    policy.means(state, contexts)
    for key in state:
        np.testing.assert_array_equal(state[key], before[key], err_msg=key)
    assert probabilities.shape == (6, N_ARMS) and np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(probabilities[~mask] == 0) and np.all(mask[np.arange(6), arms])


@pytest.mark.parametrize("name", CONTEXTUAL)
def test_a_state_batch_is_its_rows_side_by_side(name):
    """State batch B = n (the simulator's layout) gives each row what a batch-1 state would."""
    policy, single = trained(name)
    _, batched = trained(name, batch=4)
    contexts = np.random.default_rng(3).normal(size=(4, N_FEATURES))
    mask = np.ones((4, N_ARMS), bool)
    np.testing.assert_allclose(
        policy.probabilities(batched, mask, contexts), policy.probabilities(single, mask, contexts), atol=1e-12
    )


@pytest.mark.parametrize("name", CONTEXTUAL)
def test_same_seed_same_decisions_and_exact_round_trip(name):
    spec = {"name": name, "params": PARAMS.get(name, {})}
    contexts = np.random.default_rng(4).normal(size=(30, N_FEATURES))

    def run(bandit):
        arms = []
        for x in contexts:
            decision = bandit.select(context=x)
            bandit.update(decision, float(x[0]))
            arms.append(decision.arm)
        return arms

    first, second = (bk.Bandit(["a", "b", "c"], policy=spec, seed=9, n_features=N_FEATURES) for _ in range(2))
    assert run(first) == run(second)
    restored = bk.Bandit.from_json(first.to_json())
    assert run(restored) == run(first)
    probe = np.random.default_rng(5).normal(size=(5, N_FEATURES))
    np.testing.assert_array_equal(restored.probabilities_many(contexts=probe), first.probabilities_many(contexts=probe))


@pytest.mark.parametrize("name", CONTEXTUAL)
def test_contexts_are_required_and_checked(name):
    policy, state = trained(name)
    with pytest.raises(bk.InvalidParameterError, match="context"):
        policy.update(state, [0], [1.0])
    with pytest.raises(bk.InvalidParameterError, match=f"{N_FEATURES} features per row"):
        policy.probabilities(state, np.ones((1, N_ARMS), bool), np.zeros((1, N_FEATURES + 1)))
    with pytest.raises(bk.InvalidParameterError, match="finite"):
        policy.update(state, [0], [1.0], context=[[np.inf, 0.0]])

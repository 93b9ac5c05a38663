"""How every registered policy's state travels as a delta: ``state_delta`` and ``merge_delta`` by its merge rule.

Run over ``banditkit.policies.REGISTRY`` (contextual policies included): a
policy registered without a case in ``CASES`` fails
``test_every_registered_policy_has_cases``. Comparisons are to 1e-12 (absolute
and relative): a delta of floats is a difference ``new - old`` that adding
back may round in the last bit; integer arrays and copied rows match exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import SGDRegressor
from sklearn.tree import DecisionTreeRegressor

from banditkit.policies import REGISTRY, make_policy
from banditkit.policies.base import ADDITIVE, APPEND, ORDERED

N_ARMS, N_FEATURES = 4, 3
MODEL = {"estimator": DecisionTreeRegressor(max_depth=3), "refit_every": 4, "refit_fraction": 0.5}

#: Each registered policy, with the hyperparameters that change how its state merges, and the merge rule it
#: must declare for them.
CASES: dict[str, list[tuple[dict[str, Any], str]]] = {
    "thompson": [({}, ADDITIVE), ({"reward_range": (0.0, 500.0)}, ADDITIVE)],
    "gaussian_thompson": [({}, ADDITIVE), ({"prior_mean": 0.0, "prior_rate": 1.0}, ADDITIVE)],
    "epsilon_greedy": [({"epsilon": 0.3, "decay": 0.1}, ADDITIVE)],
    "softmax": [({}, ADDITIVE)],
    "ucb1": [({}, ADDITIVE), ({"reward_range": (-2.0, 8.0)}, ADDITIVE)],
    "bayes_ucb": [({}, ADDITIVE)],
    "kl_ucb": [({}, ADDITIVE)],
    "exp3": [({"gamma": 0.3}, ADDITIVE), ({"gamma": 0.3, "reward_range": (-2.0, 8.0)}, ADDITIVE)],
    "discounted_thompson": [({"gamma": 0.8}, ORDERED), ({"gamma": 0.8, "reward_range": (0.0, 500.0)}, ORDERED)],
    "sliding_window_ucb": [({"window": 7}, ORDERED)],
    "linucb": [({}, ADDITIVE), ({"standardize": True}, ORDERED)],
    "lints": [({}, ADDITIVE), ({"standardize": True}, ORDERED)],
    "contextual_epsilon_greedy": [(MODEL, APPEND)],
    "bootstrapped_thompson": [
        ({**MODEL, "n_replicas": 3}, APPEND),
        ({**MODEL, "n_replicas": 2, "max_rows": 6}, APPEND),
        ({"estimator": SGDRegressor(random_state=0), "n_replicas": 2, "refit_every": 4, "incremental": True}, APPEND),
    ],
}
POLICIES = [(name, params, rule) for name in sorted(REGISTRY) for params, rule in CASES.get(name, [])]


def case_id(case) -> str:
    name, params, _ = case
    shown = [
        f"{key}={type(value).__name__ if key == 'estimator' else value}"
        for key, value in params.items()
        if key not in MODEL or value is not MODEL[key]
    ]
    return f"{name}({','.join(shown)})" if shown else name


@pytest.fixture(params=POLICIES, ids=case_id)
def case(request):
    name, params, rule = request.param
    return make_policy({"name": name, "params": params}), rule


@pytest.fixture(params=[case for case in POLICIES if case[2] == ADDITIVE], ids=case_id)
def additive(request):
    name, params, _ = request.param
    return make_policy({"name": name, "params": params})


def test_every_registered_policy_has_cases():
    assert sorted(REGISTRY) == sorted(CASES), "add the new policy to CASES with the merge rule it declares"


def test_the_declared_rule(case):
    policy, rule = case
    assert policy.merge_rule == rule
    assert policy.distributable is (rule != ORDERED)


# ---- helpers ----------------------------------------------------------------------------------------
def an_update(policy, rng: np.random.Generator, n: int):
    """A function state -> updated state, for n seeded rewards (multiples of 1/8) with contexts if needed."""
    arms = rng.integers(0, N_ARMS, n)
    rewards = rng.integers(0, 9, n) / 8
    propensities = rng.uniform(0.2, 1.0, n)
    contexts = np.round(rng.normal(size=(n, N_FEATURES)), 3) if policy.contextual else None
    return lambda state: policy.update(state, arms, rewards, propensities=propensities, context=contexts)


def trained(policy, rng: np.random.Generator, batch: int = 1):
    state = policy.init_state(N_ARMS, batch, N_FEATURES if policy.contextual else None)
    for _ in range(4):
        state = an_update(policy, rng, batch if batch > 1 else int(rng.integers(1, 6)))(state)
    return state


def copied(state):
    return {key: value.copy() for key, value in state.items()}


def assert_same_state(actual, expected, tolerance=1e-12):
    assert actual.keys() == expected.keys()
    for key in expected:
        assert actual[key].dtype == expected[key].dtype and actual[key].shape == expected[key].shape, key
        np.testing.assert_allclose(actual[key], expected[key], rtol=tolerance, atol=tolerance, err_msg=key)


def largest_difference(left, right) -> float:
    return max(
        float(np.abs(left[key] - right[key]).max(initial=0.0)) if left[key].shape == right[key].shape else np.inf
        for key in left
    )


# ---- every policy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3], ids=["one-state", "state-per-row"])
def test_merging_the_delta_of_an_update_gives_the_update(case, batch):
    """merge(old, delta(old, new)) == new, for one reward, several, and the simulator's state per row."""
    policy, _ = case
    rng = np.random.default_rng(7)
    old = trained(policy, rng, batch)
    for n in (1, 5, 2) if batch == 1 else (batch, batch):
        new = an_update(policy, rng, n)(old)
        snapshot_old, snapshot_new = copied(old), copied(new)
        delta = policy.state_delta(old, new)
        merged = policy.merge_delta(old, delta)
        assert_same_state(merged, new)
        assert_same_state(old, snapshot_old, 0.0)  # neither input is written to
        assert_same_state(new, snapshot_new, 0.0)
        old = merged


def test_deltas_from_a_stale_state_merge_exactly_when_distributable(case):
    """Two writers compute deltas from the same state; merged one after the other they give the sequential
    update (a distributable policy), or they do not (an ORDERED one: its declaration is needed)."""
    policy, rule = case
    rng = np.random.default_rng(11)
    base = trained(policy, rng)
    first, second = an_update(policy, rng, 3), an_update(policy, rng, 4)
    sequential = second(first(base))
    merged = policy.merge_delta(
        policy.merge_delta(base, policy.state_delta(base, first(base))), policy.state_delta(base, second(base))
    )
    if rule == ORDERED:
        assert largest_difference(merged, sequential) > 1e-6
    else:
        assert_same_state(merged, sequential)


def test_additive_deltas_commute(additive):
    """Merging two deltas in either order gives the same state (APPEND keeps the order of merging instead)."""
    policy = additive
    rng = np.random.default_rng(12)
    base = trained(policy, rng)
    one, two = (policy.state_delta(base, an_update(policy, rng, n)(base)) for n in (3, 5))
    assert_same_state(
        policy.merge_delta(policy.merge_delta(base, one), two), policy.merge_delta(policy.merge_delta(base, two), one)
    )


# ---- merge rules in detail ----------------------------------------------------------------------------
def test_appended_rows_keep_every_row_in_merge_order():
    """Model-based deltas carry their rows; merged out of order, every row is kept, numbered by arrival."""
    policy = make_policy({"name": "bootstrapped_thompson", "params": {**MODEL, "n_replicas": 2}})
    rng = np.random.default_rng(3)
    base = trained(policy, rng)
    first, second = an_update(policy, rng, 3), an_update(policy, rng, 2)
    one, two = policy.state_delta(base, first(base)), policy.state_delta(base, second(base))
    assert one["rewards"].shape == (1, 3) and one["row_ids"].tolist() == [[0, 1, 2]]
    assert set(one) == {"contexts", "arms", "rewards", "row_ids", "rows_seen", "arm_rows"}  # no fit cache
    merged = policy.merge_delta(policy.merge_delta(base, two), one)
    seen = int(base["rows_seen"][0])
    assert merged["rows_seen"].tolist() == [seen + 5]
    assert merged["row_ids"][0, -5:].tolist() == list(range(seen, seen + 5))
    np.testing.assert_array_equal(merged["rewards"][0, -5:], np.concatenate([two["rewards"][0], one["rewards"][0]]))
    assert merged["fit_rows"][0] == policy.fit_point(seen + 5)


@pytest.mark.parametrize("standardize", [False, True])
def test_a_linear_merge_keeps_caches_only_where_they_still_invert_A(standardize):
    """Caches are never the truth: summed, they are kept when they match ``A`` (a delta merged into the state
    it came from), else rebuilt from ``A`` (two writers' deltas on one arm, or a delta without caches)."""
    policy = make_policy({"name": "linucb", "params": {"standardize": standardize}})
    rng = np.random.default_rng(4)
    base = trained(policy, rng)
    contexts = np.round(rng.normal(size=(2, N_FEATURES)), 3)
    first, second = (policy.update(base, np.array([2]), np.array([1.0]), context=contexts[i : i + 1]) for i in (0, 1))
    in_order = policy.merge_delta(base, policy.state_delta(base, first))
    np.testing.assert_array_equal(in_order["rank1_updates"], first["rank1_updates"])  # its own caches, kept
    assert in_order["rank1_updates"][0, 2] == base["rank1_updates"][0, 2] + 1
    stale = policy.merge_delta(in_order, policy.state_delta(base, second))  # same arm, older state
    assert stale["rank1_updates"][0, 2] == 0  # rebuilt from A
    assert_same_state(stale, policy.refresh(stale))
    partial = {key: value for key, value in policy.state_delta(base, first).items() if key in ("A", "b")}
    snapshot = copied(base)
    rebuilt = policy.merge_delta(base, partial)
    assert_same_state(base, snapshot, 0.0)
    assert rebuilt["rank1_updates"][0, 2] == 0
    assert_same_state(policy.refresh(rebuilt), rebuilt)

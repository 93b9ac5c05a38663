"""LinUCB and LinTS: golden values, invariants, round trips, batch = one by one, and the compiled path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import banditkit as bk
from banditkit.policies import make_policy
from banditkit.policies.linear import LinTS, LinUCB

ALL_ARMS = np.ones((1, 2), dtype=bool)

# Two arms, d = 2, three observations:
#   arm 0: x = (1, 0), r = 1;  arm 1: x = (0, 1), r = 0.5;  arm 0: x = (1, 1), r = 0
# so A_0 = [[3, 1], [1, 2]], b_0 = (1, 0), theta_0 = A_0^-1 b_0 = (0.4, -0.2);
#    A_1 = [[1, 0], [0, 2]], b_1 = (0, 0.5), theta_1 = (0, 0.25).
# For the context (1, 1): means 0.2 and 0.25, widths x^T A^-1 x = 0.6 and 1.5.
HAND_ARMS, HAND_REWARDS = [0, 1, 0], [1.0, 0.5, 0.0]
HAND_CONTEXTS = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
PROBE = [[1.0, 1.0]]


def hand_state(policy):
    state = policy.init_state(2, n_features=2)
    for arm, reward, context in zip(HAND_ARMS, HAND_REWARDS, HAND_CONTEXTS, strict=True):
        state = policy.update(state, [arm], [reward], context=[context])
    return state


GOLDEN = {
    "A": [[[3.0, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 2.0]]],
    "b": [[1.0, 0.0], [0.0, 0.5]],
    "theta": [[0.4, -0.2], [0.0, 0.25]],
    "A_inv": [[[0.4, -0.2], [-0.2, 0.6]], [[1.0, 0.0], [0.0, 0.5]]],
}


@pytest.mark.parametrize("policy", [LinUCB(alpha=1.0), LinTS(v=1.0)], ids=["linucb", "lints"])
@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "update_many"])
def test_golden_state(policy, batched, jit_mode):
    if batched:
        state = policy.update(policy.init_state(2, n_features=2), HAND_ARMS, HAND_REWARDS, context=HAND_CONTEXTS)
    else:
        state = hand_state(policy)
    for key, expected in GOLDEN.items():
        np.testing.assert_allclose(state[key][0], expected, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(policy.means(state, PROBE), [[0.2, 0.25]], atol=1e-12)


def test_golden_linucb_scores_and_choice(jit_mode):
    policy = LinUCB(alpha=1.0)
    state = hand_state(policy)
    # UCBs 0.2 + sqrt(0.6) = 0.9746 and 0.25 + sqrt(1.5) = 1.4747: arm 1, with probability 1.
    assert policy.probabilities(state, ALL_ARMS, PROBE).tolist() == [[0.0, 1.0]]
    rng = np.random.default_rng(0)
    assert [int(policy.sample(state, rng, ALL_ARMS, PROBE)[0]) for _ in range(5)] == [1] * 5
    # Greedy (alpha = 0) on the context (1, 0): means 0.4 and 0, so arm 0.
    assert LinUCB(alpha=0.0).probabilities(state, ALL_ARMS, [[1.0, 0.0]]).tolist() == [[1.0, 0.0]]


def test_golden_lints_propensity_closed_form():
    policy = LinTS(v=1.0)
    state = hand_state(policy)
    # Two independent normals: P(arm 0 wins) = Phi((m0 - m1) / sqrt(s0^2 + s1^2)).
    p0 = 0.5 * (1.0 + math.erf((0.2 - 0.25) / math.sqrt(0.6 + 1.5) / math.sqrt(2.0)))
    np.testing.assert_allclose(policy.probabilities(state, ALL_ARMS, PROBE), [[p0, 1.0 - p0]], atol=1e-9)


def test_golden_lints_seeded_draws(jit_mode):
    policy = LinTS(v=1.0)
    state = hand_state(policy)
    rng = np.random.default_rng(42)
    arms = [int(policy.sample(state, rng, ALL_ARMS, PROBE)[0]) for _ in range(12)]
    assert arms == GOLDEN_LINTS_ARMS


# Regression values: LinTS(v=1) on the hand state, context (1, 1), Generator(PCG64(42)).
GOLDEN_LINTS_ARMS = [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1]


def random_stream(seed, n, n_arms=3, n_features=4, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, n_arms, n), rng.normal(size=n), scale * rng.normal(size=(n, n_features)))


@pytest.mark.parametrize(
    "policy",
    [LinUCB(alpha=0.7), LinTS(v=0.5, l2=2.0), LinUCB(standardize=True), LinTS(standardize=True)],
    ids=["linucb", "lints", "linucb-std", "lints-std"],
)
def test_update_many_equals_one_by_one(policy, jit_mode):
    arms, rewards, contexts = random_stream(1, 300)
    contexts[:, 0] += 50.0  # an offset, so standardisation has work to do
    batch = policy.update(policy.init_state(3, n_features=4), arms, rewards, context=contexts)
    single = policy.init_state(3, n_features=4)
    for i in range(arms.shape[0]):
        single = policy.update(single, arms[i : i + 1], rewards[i : i + 1], context=contexts[i : i + 1])
    for key in set(batch) - {"rank1_updates"}:  # that one counts cache steps since a rebuild
        np.testing.assert_allclose(batch[key], single[key], rtol=1e-9, atol=1e-9, err_msg=key)
    probe = np.random.default_rng(2).normal(size=(20, 4))
    mask = np.ones((20, 3), dtype=bool)
    np.testing.assert_allclose(policy.means(batch, probe), policy.means(single, probe), atol=1e-9)
    np.testing.assert_allclose(
        policy.probabilities(batch, mask, probe), policy.probabilities(single, mask, probe), atol=1e-9
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    n_arms=st.integers(1, 4),
    n_features=st.integers(1, 6),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    standardize=st.booleans(),
    thompson=st.booleans(),
)
def test_invariants(seed, n, n_arms, n_features, scale, standardize, thompson):
    policy = LinTS(standardize=standardize) if thompson else LinUCB(standardize=standardize)
    arms, rewards, contexts = random_stream(seed, n, n_arms, n_features, scale)
    state = policy.init_state(n_arms, n_features=n_features)
    before = {key: value.copy() for key, value in state.items()}
    new = policy.update(state, arms, rewards, context=contexts)
    for key in state:  # inputs are not mutated
        np.testing.assert_array_equal(state[key], before[key])
    A = new["A"]
    np.testing.assert_array_equal(A, np.swapaxes(A, -1, -2))  # symmetric, exactly
    np.linalg.cholesky(A)  # positive definite: the factorisation succeeds
    values = np.linalg.eigvalsh(A)  # and no eigenvalue below l2, up to eigvalsh's absolute error
    assert values.min() >= policy.l2 * (1 - 1e-9) - 1e-14 * values.max()
    inverse_check = np.einsum("bkij,bkjl->bkil", A, new["A_inv"])
    np.testing.assert_allclose(inverse_check, np.broadcast_to(np.eye(A.shape[-1]), A.shape), atol=1e-6)
    probe = np.random.default_rng(seed).normal(size=(5, n_features)) * scale
    probabilities = policy.probabilities(new, np.ones((5, n_arms), bool), probe)
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("policy", ["linucb", "lints", {"name": "linucb", "params": {"standardize": True}}])
def test_bandit_json_round_trip_is_exact(policy):
    bandit = bk.Bandit(["a", "b", "c"], policy=policy, seed=3, n_features=3)
    arms, rewards, contexts = random_stream(4, 200, 3, 3)
    bandit.update_many(arms, rewards, contexts=contexts)
    for context in contexts[:20]:
        decision = bandit.select(context=context)
        bandit.update(decision, float(context.sum()))
    restored = bk.Bandit.from_json(bandit.to_json())
    for key, value in bandit.state.items():
        np.testing.assert_array_equal(restored.state[key], value, err_msg=key)
    probe = np.random.default_rng(5).normal(size=(30, 3))
    np.testing.assert_array_equal(
        restored.probabilities_many(contexts=probe), bandit.probabilities_many(contexts=probe)
    )
    np.testing.assert_array_equal(
        restored.policy.means(restored.state, probe), bandit.policy.means(bandit.state, probe)
    )
    assert [restored.select(context=x).arm for x in probe] == [bandit.select(context=x).arm for x in probe]
    assert json.loads(bandit.to_json())["policy"]["name"] == (policy if isinstance(policy, str) else policy["name"])


def test_compiled_path_matches_numpy_path():
    """The compiled one-row kernels choose the same arms and reach the same state as numpy, to rounding."""
    from banditkit.policies import _jit

    if _jit.load() is None:
        pytest.fail("numba is not installed: the compiled path cannot be tested (install banditkit[fast])")
    rng0 = np.random.default_rng(0)
    theta = rng0.normal(size=(6, 8))
    contexts = rng0.normal(size=(1500, 1, 8))
    for policy in (LinUCB(alpha=0.5), LinTS(v=0.3), LinUCB(alpha=0.5, standardize=True)):
        runs = {}
        for enabled in (True, False):
            _jit.set_enabled(enabled)
            state, rng, arms = policy.init_state(6, n_features=8), np.random.default_rng(1), []
            for x in contexts:
                arm = policy.sample(state, rng, np.ones((1, 6), bool), x)
                state = policy.update(state, arm, x @ theta[arm[0]] + 0.1, context=x)
                arms.append(int(arm[0]))
            runs[enabled] = (arms, state, rng.random())
        _jit.set_enabled(True)
        assert runs[True][0] == runs[False][0]
        assert runs[True][2] == runs[False][2]  # same number of draws from the generator
        for key in runs[True][1]:
            np.testing.assert_allclose(runs[True][1][key], runs[False][1][key], rtol=1e-10, atol=1e-10)


def test_registry_and_params_round_trip():
    policy = make_policy({"name": "lints", "params": {"v": 0.2, "l2": 3.0, "standardize": True}})
    assert isinstance(policy, LinTS) and policy.v == 0.2 and policy.l2 == 3.0 and policy.standardize
    assert make_policy(json.loads(json.dumps(policy.to_dict()))) == policy
    assert make_policy("linucb") == LinUCB()


def test_refresh_rebuilds_the_caches_from_the_additive_state(jit_mode):
    policy = LinUCB()
    arms, rewards, contexts = random_stream(6, 200)
    state = policy.init_state(3, n_features=4)
    for i in range(200):
        state = policy.update(state, arms[i : i + 1], rewards[i : i + 1], context=contexts[i : i + 1])
    assert state["rank1_updates"].sum() == 200
    fresh = policy.refresh(state)
    assert fresh["rank1_updates"].sum() == 0
    np.testing.assert_array_equal(fresh["A"], state["A"])
    np.testing.assert_allclose(fresh["A_inv"], state["A_inv"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fresh["theta"], np.linalg.solve(state["A"], state["b"][..., None])[..., 0], atol=1e-10)


def test_a_drifted_cache_is_detected_and_rebuilt(jit_mode):
    """A Sherman-Morrison denominator below 1 is impossible for a sound cache: the arm is rebuilt from A."""
    policy = LinUCB()
    state = policy.update(policy.init_state(2, n_features=2), [0, 0], [1.0, 2.0], context=[[1.0, 0.0], [0.0, 1.0]])
    corrupted = {**state, "A_inv": -state["A_inv"]}  # x^T A_inv x < 0 for every x
    repaired = policy.update(corrupted, [0], [0.5], context=[[1.0, 1.0]])
    expected = np.linalg.solve(repaired["A"][0, 0], np.eye(2))
    np.testing.assert_allclose(repaired["A_inv"][0, 0], expected, atol=1e-12)
    assert repaired["rank1_updates"][0, 0] == 0


def test_caches_are_rebuilt_periodically(monkeypatch, jit_mode):
    from banditkit.policies import _ridge

    monkeypatch.setattr(_ridge, "REFRESH_EVERY", 5)
    policy = LinTS()
    arms, rewards, contexts = random_stream(7, 12, n_arms=1)
    state = policy.init_state(1, n_features=4)
    counts = []
    for i in range(12):
        state = policy.update(state, arms[i : i + 1], rewards[i : i + 1], context=contexts[i : i + 1])
        counts.append(int(state["rank1_updates"][0, 0]))
    assert counts == [1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2]

"""LinUCB/LinTS at the edges: shapes, scales, degenerate features, bad input, numerical health."""
# The invalid-input table passes wrong types on purpose: the runtime checks must refuse them.
# mypy: disable-error-code="arg-type"

from __future__ import annotations

import warnings

import numpy as np
import pytest

import banditkit as bk
from banditkit.errors import InvalidParameterError, InvalidTypeError
from banditkit.policies._ridge import IllConditionedWarning
from banditkit.policies.linear import LinTS, LinUCB

POLICIES = [LinUCB(alpha=0.5), LinTS(v=0.5), LinUCB(standardize=True), LinTS(standardize=True)]
IDS = ["linucb", "lints", "linucb-std", "lints-std"]


def learn(policy, contexts, n_arms=2, seed=0):
    """Feed contexts one by one, arms round-robin, rewards linear in the context."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(n_arms, contexts.shape[1]))
    state = policy.init_state(n_arms, n_features=contexts.shape[1])
    for i, x in enumerate(contexts):
        arm = i % n_arms
        state = policy.update(state, [arm], [float(x @ weights[arm]) + 0.01 * rng.normal()], context=x[None])
    return state, weights


def assert_finite_and_valid(policy, state, probe):
    for key, value in state.items():
        assert np.isfinite(value).all(), key
    n_arms = state["b"].shape[1]
    probabilities = policy.probabilities(state, np.ones((probe.shape[0], n_arms), bool), probe)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
@pytest.mark.parametrize("n_features", [1, 500])
def test_dimensions_one_and_five_hundred(policy, n_features):
    contexts = np.random.default_rng(1).normal(size=(40, n_features))
    state, _ = learn(policy, contexts)
    assert state["A"].shape == (1, 2, n_features + policy.standardize, n_features + policy.standardize)
    assert_finite_and_valid(policy, state, contexts[:3])


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
def test_collinear_and_constant_features_stay_finite(policy):
    z = np.random.default_rng(2).normal(size=(300, 1))
    contexts = np.hstack([z, z, 2 * z, np.ones_like(z), np.full_like(z, 7.0)])  # exactly collinear + constants
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        state, _ = learn(policy, contexts)
    assert_finite_and_valid(policy, state, contexts[:5])
    # The identifiable part is learned: predictions track a reward that is linear in z.
    assert np.isfinite(policy.means(state, contexts[:5])).all()


def test_features_of_a_million_warn_without_standardisation_and_learn_with_it():
    rng = np.random.default_rng(3)
    contexts = 1e6 + rng.normal(size=(600, 3))  # a huge offset, unit spread: cond(A) ~ 1e12 when raw
    weights = np.array([[0.3, -0.2, 0.1], [-0.1, 0.2, 0.3]])
    rewards = 0.5 + np.einsum("nd,nd->n", contexts - 1e6, weights[np.arange(600) % 2])

    def fit(policy):
        state = policy.init_state(2, n_features=3)
        for i in range(600):
            state = policy.update(state, [i % 2], rewards[i : i + 1], context=contexts[i : i + 1])
        return state

    with pytest.warns(IllConditionedWarning, match=r"raise l2 \(now 1.0\) or set standardize=True"):
        raw_state = fit(LinUCB())
        LinUCB().diagnostics(raw_state, ["left", "right"])
    assert_finite_and_valid(LinUCB(), raw_state, contexts[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)
        policy = LinUCB(standardize=True)
        state = fit(policy)
        assert policy.diagnostics(state)["condition_number"].max() < 1e4
    probe = 1e6 + rng.normal(size=(50, 3))
    truth = 0.5 + (probe - 1e6) @ weights.T
    assert np.abs(policy.means(state, probe) - truth).max() < 0.05


def test_diagnostics_name_the_arm_and_the_remedy():
    policy = LinUCB(l2=1e-9)
    state = policy.init_state(2, n_features=2)
    with pytest.warns(IllConditionedWarning, match=r"arm index 1 has a condition number"):  # the batch update
        state = policy.update(state, [1] * 50, np.ones(50), context=np.tile([[1.0, 1.0]], (50, 1)))
    with pytest.warns(IllConditionedWarning, match=r"arm 'beta' has a condition number.*raise l2 \(now 1e-09\)"):
        conditions = policy.diagnostics(state, ["alpha", "beta"])["condition_number"]
    assert conditions.shape == (1, 2) and conditions[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
def test_all_zero_contexts(policy):
    """Zero rows add nothing to A (x x^T = 0); the state stays finite and every arm stays tied at zero."""
    state, _ = learn(policy, np.zeros((30, 3)), n_arms=3)
    zero = np.zeros((1, 3))
    assert_finite_and_valid(policy, state, zero)
    if not policy.standardize:  # with standardisation the intercept feature is never zero
        np.testing.assert_array_equal(state["A"], policy.init_state(3, n_features=3)["A"])
        assert policy.probabilities(state, np.ones((1, 3), bool), zero).tolist() == [[1 / 3] * 3]


def test_zero_context_on_the_prior_ties_every_arm_and_sampling_is_uniform():
    for policy in (LinUCB(), LinTS()):
        state = policy.init_state(4, n_features=3)
        rng = np.random.default_rng(5)
        counts = np.bincount(
            [policy.sample(state, rng, np.ones((1, 4), bool), np.zeros((1, 3)))[0] for _ in range(4000)], minlength=4
        )
        assert policy.probabilities(state, np.ones((1, 4), bool), np.zeros((1, 3))).tolist() == [[0.25] * 4]
        # Chi-square with 3 degrees of freedom: 16.27 is the 0.1% critical value.
        assert ((counts - 1000) ** 2 / 1000).sum() < 16.27


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
def test_one_arm(policy):
    state, _ = learn(policy, np.random.default_rng(6).normal(size=(10, 2)), n_arms=1)
    probe = np.random.default_rng(7).normal(size=(4, 2))
    assert policy.probabilities(state, np.ones((4, 1), bool), probe).tolist() == [[1.0]] * 4
    assert policy.sample(state, np.random.default_rng(0), np.ones((4, 1), bool), probe).tolist() == [0] * 4


INVALID = [
    (lambda: LinUCB(alpha=-1.0), InvalidParameterError, r"alpha must be in \[0.0, inf\], got -1.0"),
    (lambda: LinUCB(l2=0.0), InvalidParameterError, r"l2 must be in \(0.0, inf\], got 0.0"),
    (lambda: LinTS(v=0.0), InvalidParameterError, r"v must be in \(0.0, inf\], got 0.0"),
    (lambda: LinTS(v="big"), InvalidTypeError, r"v must be a real number, got str"),
    (lambda: LinUCB(standardize="yes"), InvalidParameterError, r"standardize must be True or False"),
    (lambda: LinUCB().init_state(2), InvalidParameterError, r"linucb needs n_features >= 1"),
]


@pytest.mark.parametrize("build, error, message", INVALID)
def test_invalid_parameters(build, error, message):
    with pytest.raises(error, match=message):
        build()


CONTEXT_ERRORS = [
    (None, r"linucb is contextual: pass context= with 3 features per row"),
    ([[1.0, 2.0]], r"context must have 3 features per row, got shape \(1, 2\)"),
    ([[1.0, np.nan, 2.0]], r"context must be finite, got .*nan.* at row 0, feature 1"),
    ([[1.0, 2.0, np.inf]], r"context must be finite, got .*inf.* at row 0, feature 2"),
]


@pytest.mark.parametrize("context, message", CONTEXT_ERRORS)
def test_bad_contexts_are_rejected_by_update_with_a_clear_message(context, message):
    policy = LinUCB()
    state = policy.init_state(2, n_features=3)
    with pytest.raises(InvalidParameterError, match=message):
        policy.update(state, [0], [1.0], context=None if context is None else np.array(context))


def test_bandit_boundary_checks_contexts():
    bandit = bk.Bandit(["a", "b"], policy="linucb", n_features=3, seed=0)
    with pytest.raises(InvalidParameterError, match="needs a context"):
        bandit.select()
    with pytest.raises(InvalidParameterError, match="3 features per row"):
        bandit.select(context=[1.0, 2.0])
    with pytest.raises(InvalidParameterError, match="finite"):
        bandit.update("a", 1.0, context=[1.0, np.nan, 0.0])
    plain = bk.Bandit(["a", "b"], policy="ucb1", seed=0)
    with pytest.raises(InvalidParameterError, match="takes no context"):
        plain.select(context=[1.0, 2.0, 3.0])


def test_masking_and_deterministic_assignment_with_contexts():
    bandit = bk.Bandit(["a", "b", "c"], policy="lints", n_features=2, seed=0)
    rng = np.random.default_rng(8)
    contexts = rng.normal(size=(200, 2))
    bandit.update_many(rng.integers(0, 3, 200), contexts[:, 0], contexts=contexts)
    x = [0.3, -1.0]
    masked = bandit.probabilities(context=x, allowed=["a", "c"])
    assert masked["b"] == 0.0 and sum(masked.values()) == pytest.approx(1.0, abs=1e-12)
    for _ in range(30):
        assert bandit.select(context=x, allowed=["a", "c"]).arm in {"a", "c"}
    first = bandit.select(context=x, unit="user-7")
    assert all(bandit.select(context=x, unit="user-7").arm == first.arm for _ in range(5))
    assert first.propensity == pytest.approx(bandit.probabilities(context=x)[first.arm], abs=1e-12)


def test_add_and_remove_arms_keep_the_other_arms_models():
    bandit = bk.Bandit(["a", "b"], policy={"name": "linucb", "params": {"standardize": True}}, n_features=2, seed=0)
    rng = np.random.default_rng(9)
    contexts = rng.normal(size=(100, 2))
    bandit.update_many(rng.integers(0, 2, 100), contexts[:, 1], contexts=contexts)
    before = bandit.policy.means(bandit.state, contexts[:5])
    bandit.add_arm("c")
    after = bandit.policy.means(bandit.state, contexts[:5])
    np.testing.assert_array_equal(after[:, :2], before)
    np.testing.assert_array_equal(after[:, 2], 0.0)
    bandit.remove_arm("a")
    np.testing.assert_array_equal(bandit.policy.means(bandit.state, contexts[:5])[:, 0], before[:, 1])

"""The contract every registered non-contextual policy keeps, checked on the policy and through a Bandit.

Parametrised over ``banditkit.policies.REGISTRY`` (see ``policy_cases``), so a
newly registered policy is held to the same contract without editing this file.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from policy_cases import NON_CONTEXTUAL, bernoulli_run, trained_state
from scipy import stats

import banditkit as bk
from banditkit.policies import _jit, make_policy

# Significance of every chi-square goodness-of-fit test below: a correct policy
# fails one of them with probability 0.001 for a random seed; the seeds are fixed.
ALPHA = 1e-3

MASKS = np.array(
    [[True, True, True, True], [True, False, True, False], [False, False, False, True], [False, True, True, True]]
)


def copy_state(state):
    return {key: value.copy() for key, value in state.items()}


def assert_states_equal(left, right, atol=0.0):
    assert left.keys() == right.keys()
    for key in left:
        assert left[key].shape == right[key].shape, key
        assert left[key].dtype == right[key].dtype, key
        np.testing.assert_allclose(left[key], right[key], rtol=0, atol=atol, err_msg=key)


# ---- serialisation -------------------------------------------------------------------------------
def test_policy_spec_round_trip(policy):
    rebuilt = make_policy(policy.to_dict())
    assert rebuilt == policy and rebuilt is not policy
    assert rebuilt.to_dict() == policy.to_dict()


@pytest.mark.slow
def test_json_round_trip_is_exact_and_continues_identically(policy_spec):
    bandit = bk.Bandit(["a", "b", "c"], policy=policy_spec, seed=3)
    bernoulli_run(bandit, 150, env_seed=1)
    text = bandit.to_json()
    restored = bk.Bandit.from_json(text)
    assert restored.to_json() == text
    original_arms, original_props = bernoulli_run(bandit, 1000, env_seed=9, propensity_every=100)
    restored_arms, restored_props = bernoulli_run(restored, 1000, env_seed=9, propensity_every=100)
    assert restored_arms == original_arms
    assert restored_props == original_props
    assert restored.to_json() == bandit.to_json()


# ---- determinism -----------------------------------------------------------------------------------
def test_same_seed_same_decisions(policy_spec):
    first = bk.Bandit(["a", "b", "c"], policy=policy_spec, seed=11)
    second = bk.Bandit(["a", "b", "c"], policy=policy_spec, seed=11)
    assert bernoulli_run(first, 300, propensity_every=50) == bernoulli_run(second, 300, propensity_every=50)
    batch_one, batch_two = first.select_many(500), second.select_many(500)
    np.testing.assert_array_equal(batch_one.arm_indices, batch_two.arm_indices)


def test_queries_do_not_advance_the_random_stream(policy_name):
    """probabilities(), stats() and a decision's propensity never draw from the bandit's generator."""
    bandit = bk.Bandit(["a", "b", "c"], policy=policy_name, seed=4)
    bernoulli_run(bandit, 40)
    before = copy.deepcopy(bandit.rng.bit_generator.state)
    bandit.probabilities()
    bandit.probabilities(allowed=["a", "c"])
    bandit.probabilities_many(n=3)
    bandit.stats()
    assert bandit.rng.bit_generator.state == before


# ---- purity ------------------------------------------------------------------------------------------
def test_update_does_not_mutate_its_inputs(policy):
    state = trained_state(policy)
    snapshot = copy_state(state)
    arms, rewards = np.array([0, 3, 3, 1, 0]), np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    propensities = np.array([0.25, 0.5, 0.5, 0.3, 0.25])
    arguments = (arms.copy(), rewards.copy(), propensities.copy())
    first = policy.update(state, arms, rewards, propensities=propensities)
    first_snapshot = copy_state(first)
    policy.update(first, arms, rewards, propensities=propensities)  # must not write into ``first``
    assert_states_equal(state, snapshot)
    assert_states_equal(first, first_snapshot)
    for passed, kept in zip((arms, rewards, propensities), arguments, strict=True):
        np.testing.assert_array_equal(passed, kept)


def test_queries_do_not_mutate_state_or_mask(policy):
    state, mask = trained_state(policy), MASKS.copy()
    snapshot = copy_state(state)
    policy.probabilities(state, mask)
    policy.sample(state, np.random.default_rng(0), mask)
    policy.sample(state, np.random.default_rng(0), mask[:1])
    policy.means(state)
    assert_states_equal(state, snapshot)
    np.testing.assert_array_equal(mask, MASKS)


def test_bandit_update_many_does_not_mutate_its_arrays(policy_spec):
    bandit = bk.Bandit(["a", "b", "c"], policy=policy_spec, seed=0)
    arms, rewards = np.array([0, 2, 2, 1]), np.array([0.0, 1.0, 1.0, 0.5])
    names, propensities = np.array(["a", "c", "c", "b"]), np.array([0.2, 0.5, 0.5, 0.3])
    kept = [array.copy() for array in (arms, rewards, names, propensities)]
    bandit.update_many(arms, rewards)
    bandit.update_many(names, rewards, propensities=propensities)
    for passed, original in zip((arms, rewards, names, propensities), kept, strict=True):
        np.testing.assert_array_equal(passed, original)


# ---- probabilities -------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 4], ids=["shared-state", "state-per-row"])
def test_probabilities_are_a_distribution_over_allowed_arms(policy, batch):
    for state in (
        policy.init_state(4, batch),
        trained_state(policy, batch=batch),
        trained_state(policy, n_rewards=400, seed=8, batch=batch),
    ):
        probabilities = policy.probabilities(state, MASKS)
        assert probabilities.shape == MASKS.shape
        assert np.isfinite(probabilities).all()
        assert (probabilities >= 0).all()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-9)
        assert (probabilities[~MASKS] == 0).all()
        arms = policy.sample(state, np.random.default_rng(1), MASKS)
        assert arms.shape == (4,) and MASKS[np.arange(4), arms].all()


def test_bandit_probabilities_are_zero_for_disabled_arms(policy_name):
    bandit = bk.Bandit(["a", "b", "c", "d"], policy=policy_name, seed=2)
    bernoulli_run(bandit, 30, means=(0.2, 0.5, 0.7, 0.9))
    bandit.disable_arm("b")
    for allowed in (None, ["a", "b", "d"], ["b", "c"]):
        probabilities = bandit.probabilities(allowed=allowed)
        assert probabilities["b"] == 0.0
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        if allowed is not None:
            assert all(p == 0.0 for arm, p in probabilities.items() if arm not in allowed)
    assert all(bandit.select().arm != "b" for _ in range(50))


def _chi_square_matches(counts: np.ndarray, probabilities: np.ndarray) -> None:
    """Counts are zero where the probability is zero, and fit the rest at level ALPHA."""
    assert counts[probabilities == 0].sum() == 0
    positive = probabilities > 0
    if positive.sum() > 1:
        result = stats.chisquare(counts[positive], counts.sum() * probabilities[positive])
        assert result.pvalue > ALPHA, (counts, probabilities)


@pytest.mark.slow
@pytest.mark.parametrize("state_kind", ["prior", "trained"])
def test_sampled_frequencies_match_probabilities(policy, state_kind):
    """What makes logged propensities honest: ``sample`` draws from ``probabilities``."""
    state = policy.init_state(4) if state_kind == "prior" else trained_state(policy, n_rewards=30)
    rng = np.random.default_rng(20240)
    for mask in MASKS:
        probabilities = policy.probabilities(state, mask[None])[0]
        rows = np.broadcast_to(mask, (20_000, 4))
        counts = np.bincount(policy.sample(state, rng, rows), minlength=4)
        _chi_square_matches(counts, probabilities)
    if state_kind == "trained":
        # One row at a time: the single-request path (compiled where available).
        probabilities = policy.probabilities(state, MASKS[:1])[0]
        counts = np.bincount([policy.sample(state, rng, MASKS[:1])[0] for _ in range(1000)], minlength=4)
        _chi_square_matches(counts, probabilities)


# ---- batch updates -------------------------------------------------------------------------------
def test_update_many_equals_one_by_one(policy):
    rng = np.random.default_rng(17)
    arms = rng.integers(0, 4, size=40)
    rewards = rng.random(40).round(3)
    propensities = rng.uniform(0.1, 1.0, size=40)
    start = trained_state(policy)
    together = policy.update(start, arms, rewards, propensities=propensities)
    apart = start
    for arm, reward, propensity in zip(arms, rewards, propensities, strict=True):
        apart = policy.update(apart, np.array([arm]), np.array([reward]), propensities=np.array([propensity]))
    assert_states_equal(together, apart, atol=1e-9)


def test_state_per_row_update_equals_each_row_alone(policy):
    """Simulator form: with a state per row, row i's reward goes into state i only."""
    start = trained_state(policy, batch=3)
    arms, rewards, propensities = np.array([2, 0, 2]), np.array([1.0, 0.0, 0.25]), np.array([0.5, 0.2, 0.9])
    together = policy.update(start, arms, rewards, propensities=propensities)
    for row in range(3):
        alone = policy.update(
            {key: value[row : row + 1] for key, value in start.items()},
            arms[row : row + 1],
            rewards[row : row + 1],
            propensities=propensities[row : row + 1],
        )
        assert_states_equal({key: value[row : row + 1] for key, value in together.items()}, alone, atol=1e-12)


def test_bandit_update_many_equals_update_one_by_one(policy_spec):
    rng = np.random.default_rng(3)
    arms = rng.choice(["a", "b", "c"], size=60)
    rewards = (rng.random(60) < 0.5).astype(float)
    propensities = rng.uniform(0.2, 1.0, size=60)
    together = bk.Bandit(["a", "b", "c"], policy=policy_spec, seed=0)
    apart = bk.Bandit(["a", "b", "c"], policy=policy_spec, seed=0)
    together.update_many(arms, rewards, propensities=propensities)
    for arm, reward, propensity in zip(arms, rewards, propensities, strict=True):
        apart.update_many([arm], [reward], propensities=[propensity])
    assert_states_equal(together.state, apart.state, atol=1e-9)
    for left, right in zip(together.stats(), apart.stats(), strict=True):
        assert left.pulls == right.pulls
        assert left.mean == pytest.approx(right.mean, abs=1e-12)


# ---- the one-request operations ------------------------------------------------------------------
def test_choose_is_sample_for_one_request(policy, jit_mode):
    """Same arm, and the generator left in the same state, for every mask and state."""
    for state in (policy.init_state(4), trained_state(policy), trained_state(policy, n_rewards=400, seed=8)):
        for mask in MASKS:
            by_sample, by_choose = np.random.default_rng(9), np.random.default_rng(9)
            for _ in range(5):
                arm = policy.choose(state, by_choose, mask[None])
                assert type(arm) is int
                assert arm == policy.sample(state, by_sample, mask[None])[0]
            assert by_choose.bit_generator.state == by_sample.bit_generator.state


def test_update_one_is_update_with_one_reward(policy):
    """Bit-identical states, and neither input state is written to."""
    for reward, propensity in ((1.0, 0.25), (0.0, 0.5), (0.375, 0.9)):
        state = trained_state(policy)
        for arm in range(4):
            snapshot = copy_state(state)
            by_update = policy.update(state, np.array([arm]), np.array([reward]), propensities=np.array([propensity]))
            by_update_one = policy.update_one(state, arm, reward, propensity=propensity)
            assert_states_equal(by_update_one, by_update)
            assert_states_equal(state, snapshot)
            state = by_update_one


# ---- the compiled path -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", NON_CONTEXTUAL)
def test_compiled_path_equals_numpy_path(name, both_paths, monkeypatch):
    """Bit-identical decisions over 2,000 steps, with and without a serve-time mask: compiled throughout, numpy
    throughout, and by default (numpy first, the kernels loaded mid-run once the numpy path has cost the budget)."""
    monkeypatch.setattr(_jit, "LOAD_AFTER_SECONDS", 0.002)
    runs = {}
    for enabled in (True, False, None):
        _jit.set_enabled(enabled)
        assert (_jit.kernels() is not None) is bool(enabled)
        bandit = bk.Bandit(["a", "b", "c", "d"], policy=name, seed=21)
        env = np.random.default_rng(8)
        chosen, compiled = [], []
        for step in range(2000):
            allowed = ["a", "c", "d"] if step % 7 == 3 else None
            compiled.append(_jit.kernels() is not None)
            decision = bandit.select(allowed=allowed)
            chosen.append(decision.arm_index)
            bandit.update(decision, float(env.random() < (0.3, 0.5, 0.6, 0.4)[decision.arm_index]))
        runs[enabled] = (chosen, bandit.to_json())
        if enabled is None:
            switch = compiled.index(True)  # a ValueError if the kernels were never loaded
            assert switch > 0 and all(compiled[switch:])
    assert runs[True] == runs[False] == runs[None]


def test_a_decision_reports_the_distribution_at_decision_time(policy_name):
    """Propensities are computed lazily from a snapshot: later updates cannot change what a decision says."""
    bandit = bk.Bandit(["a", "b", "c"], policy=policy_name, seed=6)
    bernoulli_run(bandit, 20)
    decision = bandit.select()
    at_decision = bandit.probabilities()
    bandit.update_many(["a", "b", "c"] * 10, [1.0, 0.0, 0.0] * 10)
    bandit.disable_arm("c")
    assert decision.probabilities == at_decision
    assert decision.propensity == at_decision[decision.arm]

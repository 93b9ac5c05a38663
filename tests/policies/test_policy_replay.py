"""Policy.replay of LinUCB, LinTS and the count policies: the compiled loop is choose() and update_one() row by row."""

from __future__ import annotations

import numpy as np
import pytest

from banditkit.policies import _jit
from banditkit.policies._ridge import REFRESH_EVERY
from banditkit.policies.base import Policy
from banditkit.policies.greedy import EpsilonGreedy
from banditkit.policies.linear import LinTS, LinUCB
from banditkit.policies.softmax import Softmax
from banditkit.policies.thompson import ThompsonSampling
from banditkit.policies.ucb import KLUCB, UCB1

# alpha = 0 on integer contexts: many exact ties, broken by the generator; every arm ties at the prior too.
POLICIES = [
    LinUCB(alpha=0.5),
    LinUCB(alpha=0.0),
    LinTS(v=0.5),
    LinUCB(alpha=0.5, standardize=True),
    LinTS(v=0.3, l2=2.0, standardize=True),
]


@pytest.fixture(autouse=True)
def compiled():
    """The compiled kernels loaded for every test, and again after one that switches them."""
    _jit.set_enabled(True)
    if _jit.kernels() is None:
        pytest.fail("numba is not installed: the compiled path cannot be tested (install banditkit[fast])")
    yield
    _jit.set_enabled(True)


def log(seed: int, n: int, n_arms: int, d: int, integers: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logged arms, rewards and contexts of a uniform log; rewards linear in the context plus noise."""
    rng = np.random.default_rng(seed)
    contexts = rng.integers(-2, 3, (n, d)).astype(float) if integers else rng.normal(size=(n, d))
    arms = rng.integers(0, n_arms, n)
    weights = rng.normal(size=(n_arms, d))
    rewards = np.einsum("nd,nd->n", contexts, weights[arms]) + rng.normal(size=n)
    return arms, rewards, contexts


def row_by_row(policy: Policy, state, rng, mask, arms, rewards, contexts, limit):
    """The reference: choose() on every row, update_one() on the accepted ones; ``contexts`` (n, d) or None."""
    accepted: list[int] = []
    for row in range(arms.shape[0]):
        if len(accepted) == limit:
            break
        context = None if contexts is None else contexts[row : row + 1]
        arm = policy.choose(state, rng, mask, context)
        if arm == arms[row]:
            state = policy.update_one(state, arm, float(rewards[row]), context=context)
            accepted.append(row)
    return accepted, state


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize(("seed", "limit"), [(0, None), (1, None), (2, 150)])
def test_replay_is_the_row_by_row_replay(policy, seed, limit):
    """Same accepted rows, same state (the same kernels, so equal to the bit), same draws from the generator.

    Two arms and 5,000 rows accept about 1,250 rows per arm: past the 1,000 rank-1 steps after which an arm's
    caches are rebuilt from A, so the replay stops and resumes around a rebuild.
    """
    arms, rewards, contexts = log(seed, 5000, 2, 3, integers=policy == LinUCB(alpha=0.0))
    start = policy.init_state(2, n_features=3)
    mask = np.ones((1, 2), dtype=bool)
    before = {key: value.copy() for key, value in start.items()}
    fast_rng, slow_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    replayed = policy.replay(start, fast_rng, mask, arms, rewards, contexts, limit)
    assert replayed is not None
    accepted, state = replayed
    expected_rows, expected = row_by_row(policy, start, slow_rng, mask, arms, rewards, contexts, limit)
    assert accepted.tolist() == expected_rows
    if limit is None:
        assert np.bincount(arms[expected_rows]).max() > REFRESH_EVERY, "a rebuild happened on the way"
    else:
        assert len(expected_rows) == limit
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    assert fast_rng.random() == slow_rng.random(), "the same number of draws"
    for key, value in before.items():
        np.testing.assert_array_equal(start[key], value, err_msg=f"{key} was mutated")


def test_replay_keeps_to_the_mask_and_the_learned_state():
    """A disabled arm is never chosen, and the replay starts from the state it is given."""
    policy = LinTS(v=0.5)
    arms, rewards, contexts = log(3, 3000, 3, 4, integers=False)
    start = policy.update(policy.init_state(3, n_features=4), arms[:50], rewards[:50], context=contexts[:50])
    mask = np.array([[True, False, True]])
    replayed = policy.replay(start, np.random.default_rng(3), mask, arms, rewards, contexts)
    assert replayed is not None
    expected_rows, expected = row_by_row(policy, start, np.random.default_rng(3), mask, arms, rewards, contexts, None)
    assert replayed[0].tolist() == expected_rows and set(arms[replayed[0]].tolist()) == {0, 2}
    for key, value in expected.items():
        np.testing.assert_array_equal(replayed[1][key], value, err_msg=key)


# (policy, rewards): "unit" rewards are in [0, 1] with two decimals, "binary" 0 or 1 (exact ties between arms
# with the same counts), "wide" in [-5, 5] (the policy's reward_range, or rewards as they come for epsilon-greedy).
COUNT_POLICIES = [
    (ThompsonSampling(), "unit"),
    (ThompsonSampling(prior_alpha=2.0, prior_beta=0.5, reward_range=(-5, 5)), "wide"),
    (UCB1(), "unit"),
    (UCB1(), "binary"),
    (UCB1(reward_range=(-5, 5)), "wide"),
    (EpsilonGreedy(epsilon=0.2), "binary"),
    (EpsilonGreedy(epsilon=0.0), "binary"),
    (EpsilonGreedy(epsilon=0.5, decay=0.01), "wide"),
    (EpsilonGreedy(epsilon=1.0), "unit"),
]


def count_log(rewards: str, n: int, n_arms: int) -> tuple[np.ndarray, np.ndarray]:
    """Logged arms and rewards of a uniform log without context."""
    rng = np.random.default_rng(8)
    arms = rng.integers(0, n_arms, n)
    if rewards == "binary":
        return arms, (rng.random(n) < np.linspace(0.2, 0.5, n_arms)[arms]).astype(float)
    scale, shift = (10.0, 5.0) if rewards == "wide" else (1.0, 0.0)
    return arms, np.round(rng.random(n) * scale - shift, 2)


@pytest.mark.parametrize(("policy", "rewards"), COUNT_POLICIES, ids=lambda value: repr(value))
@pytest.mark.parametrize("limit", [None, 300])
@pytest.mark.parametrize("learned", [False, True], ids=["prior", "learned"])
def test_count_policy_replay_is_the_row_by_row_replay(policy, rewards, limit, learned):
    """The kernel of choose() per row, rewards learned as update_one learns them (mapped from reward_range).

    Arm 2 is disabled. From the prior every arm ties (UCB1: none tried yet; epsilon-greedy: every mean 0);
    the learned start ties arms 0 and 3 exactly and has tried arm 1 only, and disabled arm 2 never.
    """
    arms, logged_rewards = count_log(rewards, 6000, 4)
    start = policy.init_state(4)
    if learned:
        low, high = policy.reward_range or (0.0, 1.0)
        tied = [low + 0.25 * (high - low), high]
        start = policy.update(start, np.array([0, 3, 0, 3, 1]), np.array([*tied, *tied, low]))
    before = {key: value.copy() for key, value in start.items()}
    mask = np.array([[True, True, False, True]])
    fast_rng, slow_rng = np.random.default_rng(9), np.random.default_rng(9)
    replayed = policy.replay(start, fast_rng, mask, arms, logged_rewards, None, limit)
    assert replayed is not None
    expected_rows, expected = row_by_row(policy, start, slow_rng, mask, arms, logged_rewards, None, limit)
    assert replayed[0].tolist() == expected_rows and len(expected_rows) == (limit or len(expected_rows))
    assert 2 not in arms[expected_rows] and len(expected_rows) > 250
    assert replayed[1].keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(replayed[1][key], value, err_msg=key)
    assert fast_rng.random() == slow_rng.random(), "the same number of draws"
    for key, value in before.items():
        np.testing.assert_array_equal(start[key], value, err_msg=f"{key} was mutated")


def test_no_replay_without_the_compiled_kernels_or_for_other_policies():
    """None tells the caller to replay through choose() and update_one()."""
    arms, rewards, contexts = log(4, 100, 2, 3, integers=False)
    mask = np.ones((1, 2), dtype=bool)
    policy, thompson = LinUCB(), ThompsonSampling()
    _jit.set_enabled(False)
    assert (
        policy.replay(policy.init_state(2, n_features=3), np.random.default_rng(0), mask, arms, rewards, contexts)
        is None
    )
    _jit.set_enabled(None)  # the default: Thompson sampling's kernels not loaded yet, so no compiled loop
    assert thompson.replay(thompson.init_state(2), np.random.default_rng(0), mask, arms, rewards) is None
    _jit.set_enabled(True)
    for other in (KLUCB(), Softmax()):  # count policies without a compiled loop
        assert other.replay(other.init_state(2), np.random.default_rng(0), mask, arms, rewards) is None
    assert thompson.replay(thompson.init_state(2, batch=2), np.random.default_rng(0), mask, arms, rewards) is None
    with pytest.raises(ValueError, match="4 features"):
        policy.replay(policy.init_state(2, n_features=4), np.random.default_rng(0), mask, arms, rewards, contexts)


def test_replay_rebuilds_a_drifted_cache_as_update_does():
    """A cache that no longer inverts A (here negated) is rebuilt at the arm's first accepted row, row by row too."""
    policy = LinUCB(alpha=0.5)
    arms, rewards, contexts = log(5, 400, 2, 3, integers=False)
    learned = policy.update(policy.init_state(2, n_features=3), arms[:20], rewards[:20], context=contexts[:20])
    corrupted = {**learned, "A_inv": -learned["A_inv"]}
    mask = np.ones((1, 2), dtype=bool)
    replayed = policy.replay(corrupted, np.random.default_rng(5), mask, arms, rewards, contexts)
    assert replayed is not None
    expected_rows, expected = row_by_row(
        policy, corrupted, np.random.default_rng(5), mask, arms, rewards, contexts, None
    )
    assert replayed[0].tolist() == expected_rows
    for key, value in expected.items():
        np.testing.assert_array_equal(replayed[1][key], value, err_msg=key)
    per_arm = np.bincount(arms[expected_rows], minlength=2)
    assert (replayed[1]["rank1_updates"][0] < per_arm).all(), "each arm was rebuilt on the way"
    np.testing.assert_allclose(
        replayed[1]["A_inv"][0] @ replayed[1]["A"][0], np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-9
    )

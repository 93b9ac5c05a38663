"""The vectorized runner: equal to a step-by-step Bandit loop, common random numbers, exact edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import banditkit as bk
from banditkit.errors import InvalidParameterError, InvalidTypeError
from banditkit.sim import (
    Bernoulli,
    Delayed,
    Gaussian,
    LinearContextual,
    NonStationary,
    environment_seed,
    policy_seed,
    random_coefficients,
    run,
    runner,
)

from .reference_policies import FixedArm, UniformRandom

MEANS = [0.3, 0.5, 0.45, 0.2]


def bandit_loop(policy, env, horizon, seed):
    """Cumulative regret and rewards of one replication, driven through the public Bandit one step at a time.

    For a ``Delayed`` environment each reward is held back until its arrival step and
    applied, in decision order, just before that step's decision.
    """
    bandit = bk.Bandit(
        [f"arm{k}" for k in range(env.n_arms)], policy=policy, seed=policy_seed(seed, 0), n_features=env.n_features
    )
    chunk = env.draw([np.random.default_rng(environment_seed(seed, 0))], 0, horizon)
    regret, rewards, pending = [], [], []
    for time in range(horizon):
        for _, _, answered, value in sorted(item for item in pending if item[0] == time):
            bandit.update(answered, value)
        pending = [item for item in pending if item[0] != time]
        context = env.contexts(chunk, time)
        decision = bandit.select(context=None if context is None else context[0])
        reward, step_regret = env.outcome(chunk, time, np.array([decision.arm_index]))
        arrival = env.arrival_steps(time, chunk, time) if isinstance(env, Delayed) else time + 1
        pending.append((int(np.ravel(arrival)[0]), time, decision, float(reward[0])))
        regret.append(float(step_regret[0]))
        rewards.append(float(reward[0]))
    return np.cumsum(regret), float(np.sum(rewards))


@pytest.mark.parametrize(
    "policy",
    [
        bk.ThompsonSampling(),
        bk.UCB1(),
        bk.KLUCB(),
        bk.EXP3(gamma=0.2),
        bk.EpsilonGreedy(),
        bk.DiscountedThompsonSampling(gamma=0.95),
        bk.SlidingWindowUCB(window=50),
    ],
    ids=lambda p: p.name,
)
def test_one_replication_equals_a_step_by_step_bandit_loop(policy, jit_mode):
    env = Bernoulli(MEANS)
    result = run({"p": policy}, env, horizon=400, replications=1, seed=11)
    regret, total_reward = bandit_loop(policy, env, 400, seed=11)
    np.testing.assert_array_equal(result.regret("p"), regret)
    assert result.reward_per_step[0, 0] * 400 == pytest.approx(total_reward, abs=1e-9)


@pytest.mark.parametrize("policy", [bk.LinUCB(), bk.LinTS()], ids=lambda p: p.name)
def test_contextual_replication_equals_a_step_by_step_bandit_loop(policy):
    env = LinearContextual(random_coefficients(4, 3, seed=2))
    result = run({"p": policy}, env, horizon=200, replications=1, seed=4)
    regret, _ = bandit_loop(policy, env, 200, seed=4)
    np.testing.assert_array_equal(result.regret("p"), regret)


@pytest.mark.parametrize("rule", [{"delay": 7}, {"mean_delay": 5.0}, {"batch": 25}], ids=str)
def test_delayed_feedback_equals_a_bandit_loop_that_holds_rewards_back(rule):
    env = Delayed(Bernoulli(MEANS), **rule)
    result = run({"ts": "thompson", "exp3": "exp3"}, env, horizon=300, replications=1, seed=5)
    for name, policy in (("ts", bk.ThompsonSampling()), ("exp3", bk.EXP3())):
        regret, _ = bandit_loop(policy, env, 300, seed=5)
        np.testing.assert_array_equal(result.regret(name), regret)


def test_playing_the_best_arm_has_exactly_zero_regret():
    result = run({"best": FixedArm(1), "worst": FixedArm(3)}, Bernoulli(MEANS), horizon=500, replications=7)
    assert np.all(result.regret("best") == 0.0) and np.all(result.final_regret[0] == 0.0)
    np.testing.assert_allclose(result.regret("worst"), 0.3 * np.arange(1, 501))
    assert result.pull_shares.tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]


def test_regret_is_non_decreasing_and_the_interval_brackets_the_mean():
    env = NonStationary([[0.2, 0.8, 0.5], [0.8, 0.2, 0.5]], times=[0, 150], drift=True)
    result = run(["thompson", "ucb1", "discounted_thompson"], env, horizon=300, replications=20, seed=2)
    assert np.all(np.diff(result.regret_mean, axis=1) >= 0)
    assert np.all(result.regret_low <= result.regret_mean) and np.all(result.regret_mean <= result.regret_high)


def test_the_same_seed_gives_the_same_result_whatever_the_threads(monkeypatch):
    monkeypatch.setattr(runner, "BLOCK_SIZE", 8)  # 20 replications in 3 blocks
    env = Bernoulli(MEANS)
    policies = {"ts": "thompson", "ucb": "ucb1"}
    one = run(policies, env, horizon=200, replications=20, seed=9, workers=1)
    two = run(policies, env, horizon=200, replications=20, seed=9, workers=2)
    other = run(policies, env, horizon=200, replications=20, seed=10, workers=2)
    np.testing.assert_array_equal(one.final_regret, two.final_regret)
    np.testing.assert_array_equal(one.regret_mean, two.regret_mean)
    assert not np.array_equal(one.final_regret, other.final_regret)


def test_results_do_not_depend_on_when_the_compiled_kernels_load(monkeypatch):
    """Compiled throughout, numpy throughout, or switching mid-run (the default): the same numbers, bit for bit."""
    from banditkit.policies import _jit

    monkeypatch.setattr(runner, "BLOCK_SIZE", 8)  # 20 replications in 3 blocks, on two threads
    monkeypatch.setattr(_jit, "LOAD_AFTER_SECONDS", 0.005)
    policies = ["thompson", "ucb1", "discounted_thompson"]  # the policies with compiled kernels for many rows
    results = {}
    try:
        for enabled in (True, False, None):
            _jit.set_enabled(enabled)
            result = run(policies, Bernoulli(MEANS), horizon=300, replications=20, seed=5, workers=2)
            results[enabled] = (result.regret_mean, result.final_regret, result.pull_shares)
            assert (_jit.kernels() is not None) is (enabled is not False)  # the default run ended up compiled
    finally:
        _jit.set_enabled(True)
    for enabled in (False, None):
        for compiled, other in zip(results[True], results[enabled], strict=True):
            np.testing.assert_array_equal(compiled, other)


def test_every_policy_faces_the_same_environment_draws():
    # With one shared uniform per step, the better fixed arm pays whenever the worse one does.
    result = run(
        {"a": FixedArm(3), "b": FixedArm(0), "c": FixedArm(1)}, Bernoulli(MEANS), horizon=200, replications=50, seed=4
    )
    low, middle, high = result.reward_per_step
    assert np.all(low <= middle) and np.all(middle <= high) and np.any(low < high)
    # Adding a policy changes nobody else's numbers.
    alone = run({"c": FixedArm(1)}, Bernoulli(MEANS), horizon=200, replications=50, seed=4)
    np.testing.assert_array_equal(alone.reward_per_step[0], high)


@pytest.mark.slow
def test_the_95_percent_interval_covers_the_known_expected_regret():
    # Uniform play on these means has expected regret t * 0.25 exactly. 200 independent runs:
    # coverage is Binomial(200, 0.95) if the interval is right; [0.90, 0.99] holds with prob > 0.997.
    env, horizon = Bernoulli([0.5, 0.25, 0.0, 0.25]), 40
    covered = {10: 0, 40: 0}
    for seed in range(200):
        result = run({"u": UniformRandom()}, env, horizon=horizon, replications=20, seed=seed, workers=1)
        low, high = result.interval("u")
        for step in covered:
            covered[step] += low[step - 1] <= 0.25 * step <= high[step - 1]
    for step, count in covered.items():
        assert 0.90 <= count / 200 <= 0.99, (step, count)


def test_edge_cases_one_arm_one_step_one_replication():
    result = run({"ts": "thompson"}, Bernoulli([0.7]), horizon=1, replications=1, seed=0)
    assert result.regret("ts").tolist() == [0.0] and result.pull_shares.tolist() == [[1.0]]
    assert np.isnan(result.regret_low).all() and np.isnan(result.regret_high).all()
    equal = run({"ucb": "ucb1"}, Bernoulli([0.4, 0.4, 0.4]), horizon=50, replications=3)
    assert np.all(equal.regret("ucb") == 0.0)


INVALID = [
    (dict(horizon=0), InvalidParameterError, "horizon must be in [1"),
    (dict(replications=-1), InvalidParameterError, "replications must be in [1"),
    (dict(horizon=2.5), InvalidTypeError, "horizon must be an integer"),
    (
        dict(policies={"g": "gaussian_thompson", "t": "thompson"}, env=Gaussian([0.0, 1.0])),
        InvalidParameterError,
        "policy 't' (thompson) accepts rewards in [0.0, 1.0] but the environment pays in [-inf, inf]; "
        "policies that fit this environment: epsilon_greedy, gaussian_thompson",
    ),
    (dict(policies={"x": "no_such_policy"}), InvalidParameterError, "policy name must be one of"),
    (dict(policies={}), InvalidParameterError, "at least one policy"),
    (dict(policies=["thompson", "thompson"]), InvalidParameterError, "distinct names"),
    (dict(env="bernoulli"), InvalidTypeError, "env must be a banditkit.sim environment"),
]


@pytest.mark.parametrize("change, error, message", INVALID)
def test_invalid_runs_are_rejected_with_the_argument_named(change, error, message):
    arguments = dict(policies={"ts": "thompson"}, env=Bernoulli(MEANS), horizon=10, replications=2) | change
    with pytest.raises(error) as caught:
        run(**arguments)
    assert message in str(caught.value)


STATIONARY_POLICIES = [
    "thompson",
    "ucb1",
    "kl_ucb",
    "epsilon_greedy",
    "softmax",
    "exp3",
    "discounted_thompson",
    "sliding_window_ucb",
]


@settings(max_examples=25, deadline=None)
@given(
    means=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
    horizon=st.integers(1, 60),
    replications=st.integers(1, 4),
    policy=st.sampled_from(STATIONARY_POLICIES),
    seed=st.integers(0, 2**32),
)
def test_invariants_hold_for_any_bernoulli_problem(means, horizon, replications, policy, seed):
    result = run({"p": policy}, Bernoulli(means), horizon=horizon, replications=replications, seed=seed, workers=1)
    worst_gap = max(means) - min(means)
    assert np.all(np.diff(result.regret_mean[0]) >= 0)
    assert np.all(result.final_regret >= 0) and np.all(result.final_regret <= horizon * worst_gap + 1e-9)
    assert result.pull_shares.sum() == pytest.approx(1.0)
    assert np.all((result.reward_per_step >= 0) & (result.reward_per_step <= 1))
    assert result.steps[-1] == horizon

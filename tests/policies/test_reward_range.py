"""Rewards on any scale: ``reward_range=(low, high)`` on every policy of bounded rewards.

A policy built with ``reward_range`` maps each reward onto [0, 1] before it
learns, so fed ``low + (high - low) * u`` it must decide, report propensities
and hold a state exactly as the default policy fed ``u`` does; its means are on
the rewards' own scale; the range survives JSON; bad ranges and rewards
outside the range get errors that name ``reward_range``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from policy_cases import BOUNDED, NON_CONTEXTUAL

import banditkit as bk
from banditkit.policies import REGISTRY, make_policy

#: Ranges whose map onto [0, 1] is exact for rewards that are multiples of 1/8 (so states compare bit for bit).
RANGES = [(0.0, 500.0), (-2.0, 8.0), (1.0, 5.0)]


def test_every_policy_limited_to_an_interval_can_widen_it():
    """A policy either takes every real reward or declares the interval it maps onto [0, 1] (``reward_range``)."""
    assert BOUNDED == [
        "bayes_ucb",
        "discounted_thompson",
        "exp3",
        "kl_ucb",
        "sliding_window_ucb",
        "thompson",
        "ucb1",
    ]
    for name in NON_CONTEXTUAL:
        policy = REGISTRY[name]()
        if policy.reward_range is None:
            low, high = policy.reward_bounds
            assert low <= -1e100 and high >= 1e100, name
        else:
            assert policy.reward_range == policy.reward_bounds == (0.0, 1.0), name
            assert REGISTRY[name].reward_range == REGISTRY[name].reward_bounds == (0.0, 1.0), name  # on the class
            widened = REGISTRY[name](reward_range=(0, 500))
            assert widened.reward_bounds == widened.reward_range == (0.0, 500.0), name


def scaled_run(bandit: bk.Bandit, reward_range, steps: int = 120):
    """Select/update rounds with rewards k/8 (k seeded) mapped onto ``reward_range``; the chosen arms and the
    propensity of every tenth decision."""
    low, high = reward_range
    env = np.random.default_rng(31)
    arms, propensities = [], []
    for step in range(steps):
        decision = bandit.select()
        arms.append(decision.arm_index)
        if step % 10 == 0:
            propensities.append(decision.propensity)
        unit = int(env.integers(0, 9)) / 8 if decision.arm_index != 1 else int(env.integers(3, 9)) / 8
        bandit.update(decision, low + (high - low) * unit)
    return arms, propensities


@pytest.mark.parametrize("reward_range", RANGES, ids=str)
@pytest.mark.parametrize("name", BOUNDED)
def test_a_scaled_policy_learns_what_the_unit_policy_learns(name, reward_range, jit_mode):
    """Same decisions, same propensities, the same [0, 1] state; means and stats on the rewards' own scale."""
    unit = bk.Bandit(["a", "b", "c"], policy=name, seed=5)
    scaled = bk.Bandit(["a", "b", "c"], policy={"name": name, "params": {"reward_range": reward_range}}, seed=5)
    assert scaled_run(scaled, reward_range) == scaled_run(unit, (0.0, 1.0))
    assert scaled.state.keys() == unit.state.keys()
    for key in unit.state:
        np.testing.assert_array_equal(scaled.state[key], unit.state[key], err_msg=key)
    assert scaled.probabilities() == unit.probabilities()
    low, high = reward_range
    np.testing.assert_allclose(
        scaled.policy.means(scaled.state), low + (high - low) * unit.policy.means(unit.state), rtol=1e-12
    )
    for on_scale, on_unit in zip(scaled.stats(), unit.stats(), strict=True):
        assert on_scale.mean == pytest.approx(low + (high - low) * on_unit.mean, rel=1e-12)
        assert on_scale.low == pytest.approx(low + (high - low) * on_unit.low, rel=1e-12, abs=1e-12)
        assert on_scale.high == pytest.approx(low + (high - low) * on_unit.high, rel=1e-12, abs=1e-12)
        assert low <= on_scale.low <= on_scale.mean <= on_scale.high <= high


@pytest.mark.parametrize("name", BOUNDED)
def test_batch_updates_map_rewards_as_single_ones_do(name):
    """``update`` (arrays, a state per row or shared) and ``update_one`` take the same [0, 1] rewards."""
    unit, scaled = make_policy(name), make_policy({"name": name, "params": {"reward_range": [0, 500]}})
    rng = np.random.default_rng(8)
    arms, rewards = rng.integers(0, 3, 12), rng.integers(0, 9, 12) / 8
    propensities = rng.uniform(0.2, 1.0, 12)
    for batch in (1, 12):
        start = unit.init_state(3, batch)
        expected = unit.update(start, arms, rewards, propensities=propensities)
        got = scaled.update(start, arms, 500 * rewards, propensities=propensities)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    one_unit, one_scaled = unit.init_state(3), unit.init_state(3)
    for arm, reward, propensity in zip(arms, rewards, propensities, strict=True):
        one_unit = unit.update_one(one_unit, int(arm), float(reward), propensity=float(propensity))
        one_scaled = scaled.update_one(one_scaled, int(arm), float(500 * reward), propensity=float(propensity))
    for key in one_unit:
        np.testing.assert_array_equal(one_scaled[key], one_unit[key], err_msg=key)


@pytest.mark.parametrize("name", BOUNDED)
def test_the_default_range_changes_nothing(name):
    """(0, 1) is the identity bit for bit: awkward floats learn the same state with or without it."""
    default, explicit = make_policy(name), make_policy({"name": name, "params": {"reward_range": [0.0, 1.0]}})
    assert default == explicit and default.to_dict() == explicit.to_dict()
    # One reward learned into a fresh state is held as it came (a sum of one [0, 1] reward), awkward floats too.
    for arm, reward in enumerate([0.1, 1 / 3, 5e-324, 0.2 + 0.1, 1.0 - 2**-53]):
        one = default.update_one(default.init_state(5), arm, reward, propensity=0.5)
        held = one["reward_sums"] if "reward_sums" in one else one["successes"]
        assert held[0, arm] == reward


def test_revenue_means_and_json_round_trip():
    """UCB1 on rewards of 0-500: means in dollars; the range travels in the policy spec and the Bandit's JSON."""
    bandit = bk.Bandit(["a", "b"], policy=bk.UCB1(reward_range=(0, 500)), seed=1)
    bandit.update_many(["a", "a", "b"], [100.0, 300.0, 129.99])
    np.testing.assert_allclose(bandit.policy.means(bandit.state), [[200.0, 129.99]], rtol=1e-15)
    assert bandit.policy.to_dict() == {"name": "ucb1", "params": {"reward_range": [0.0, 500.0]}}
    restored = bk.Bandit.from_json(bandit.to_json())
    assert restored.policy == bandit.policy and restored.policy.reward_range == (0.0, 500.0)
    assert restored.to_json() == bandit.to_json()
    assert make_policy({"name": "ucb1", "params": {"reward_range": [0, 500]}}) == bandit.policy
    assert bk.UCB1(reward_range=np.array([0.0, 500.0])) == bandit.policy


@pytest.mark.parametrize(
    "reward_range, error, message",
    [
        ((1.0, 1.0), bk.InvalidParameterError, "low < high, got (1.0, 1.0)"),
        ((5, 0), bk.InvalidParameterError, "low < high, got (5, 0)"),
        ((0.0, math.inf), bk.InvalidParameterError, "must be finite"),
        ((math.nan, 1.0), bk.InvalidParameterError, "must be finite"),
        ((-1e308, 1e308), bk.InvalidParameterError, "must be finite"),
        ((0.0,), bk.InvalidParameterError, "a pair (low, high), got (0.0,)"),
        ([0, 1, 2], bk.InvalidParameterError, "a pair (low, high), got [0, 1, 2]"),
        ("01", bk.InvalidTypeError, "a pair (low, high), got '01'"),
        (500, bk.InvalidTypeError, "a pair (low, high), got 500"),
        (None, bk.InvalidTypeError, "a pair (low, high), got None"),
        ((True, 2), bk.InvalidTypeError, "two real numbers (low, high), got (True, 2)"),
        (("0", "1"), bk.InvalidTypeError, "two real numbers"),
    ],
    ids=lambda case: repr(case) if isinstance(case, tuple | list | str | int | type(None)) else "",
)
def test_invalid_reward_ranges(reward_range, error, message):
    for name in BOUNDED:
        with pytest.raises(error) as raised:
            make_policy({"name": name, "params": {"reward_range": reward_range}})
        assert str(raised.value).startswith("reward_range must be") and message in str(raised.value)
        assert raised.value.field == "reward_range"


@pytest.mark.parametrize("name", BOUNDED)
def test_a_reward_outside_the_range_says_how_to_set_it(name):
    bandit = bk.Bandit(["a", "b"], policy=name, seed=0)
    advice = "set reward_range=(low, high)"
    with pytest.raises(bk.InvalidParameterError, match=r"reward must be in \[0\.0, 1\.0\].*got 129\.99") as one:
        bandit.update("a", 129.99)
    with pytest.raises(bk.InvalidParameterError, match=r"at position 1") as many:
        bandit.update_many(["a", "b"], [1.0, 129.99])
    for raised in (one, many):
        assert advice in str(raised.value) and "reward_range=(0, 500)" in str(raised.value)
        assert '"params": {"reward_range": [0, 500]}' in str(raised.value)
    assert bandit.pulls.tolist() == [0.0, 0.0]  # nothing learned from a rejected batch
    widened = bk.Bandit(["a", "b"], policy={"name": name, "params": {"reward_range": [0, 500]}}, seed=0)
    widened.update("a", 129.99)
    with pytest.raises(bk.InvalidParameterError, match=r"must be in \[0\.0, 500\.0\].*got -0\.5"):
        widened.update("b", -0.5)


def test_unbounded_policies_give_no_advice():
    """A policy that takes every finite reward has nothing to widen: NaN is rejected without a word on ranges."""
    bandit = bk.Bandit(["a", "b"], policy="gaussian_thompson", seed=0)
    with pytest.raises(bk.InvalidParameterError) as raised:
        bandit.update("a", math.nan)
    assert "reward_range" not in str(raised.value)


def test_the_simulator_pairs_a_widened_policy_with_a_revenue_environment():
    """An environment paying 0-100 is refused for UCB1 on [0, 1] and accepted with reward_range=(0, 100)."""
    env = bk.sim.Adversarial(100.0 * np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(bk.InvalidParameterError, match=r"accepts rewards in \[0\.0, 1\.0\]") as refused:
        bk.sim.run({"ucb1": bk.UCB1()}, env, horizon=4, replications=2)
    assert "set reward_range=(low, high)" in str(refused.value)
    with pytest.raises(bk.InvalidParameterError, match=r"pays in \[-inf, inf\]; policies that fit") as unbounded:
        bk.sim.run({"ucb1": bk.UCB1()}, bk.sim.Gaussian([0.0, 1.0]), horizon=4, replications=2)
    assert "reward_range" not in str(unbounded.value)  # no range helps there
    result = bk.sim.run({"ucb1": bk.UCB1(reward_range=(0, 100))}, env, horizon=4, replications=2)
    assert result.summary()["reward_mean"][0] >= 0.0


# ---- Gaussian Thompson sampling: a prior with the rewards' own scale ---------------------------------
@pytest.mark.parametrize("scale, shift", [(100.0, 0.0), (1e-3, 0.0), (129.99, -40.0), (2.0**20, 1e6)])
def test_gaussian_thompson_decides_the_same_on_any_scale(scale, shift, jit_mode):
    """Rewards c * r + d (c > 0) give the decisions and propensities of rewards r: the prior takes its location
    and scale from the rewards, so no unit is built in. Conversions first (all rewards equal for a while, when
    only the unit fallback applies), then real-valued rewards."""
    unit = bk.Bandit(["a", "b", "c"], policy="gaussian_thompson", seed=3)
    scaled = bk.Bandit(["a", "b", "c"], policy="gaussian_thompson", seed=3)
    env = np.random.default_rng(12)
    for step in range(300):
        first, second = unit.select(), scaled.select()
        assert first.arm == second.arm, step
        if step % 25 == 0:
            for arm, probability in first.probabilities.items():
                assert second.probabilities[arm] == pytest.approx(probability, abs=1e-9), step
        arm = first.arm_index
        if step < 150:
            reward = float(env.random() < (0.05, 0.1, 0.15)[arm])
        else:
            reward = (0.2, 0.5, 0.6)[arm] + float(env.standard_normal())
        unit.update(first, reward)
        scaled.update(second, scale * reward + shift)


def test_gaussian_thompson_prior_from_all_rewards_by_hand():
    """Arm 0 saw 2 and 4, arm 1 saw 10, arm 2 nothing: the prior is centred on their mean 16/3 with rate
    prior_shape times their variance (sample variance, n - 1 = 2); then the Normal-Gamma update of each arm."""
    policy = bk.GaussianThompsonSampling()
    count, shape = policy.prior_count, policy.prior_shape
    state = policy.update(policy.init_state(3), np.array([0, 0, 1]), np.array([2.0, 4.0, 10.0]))
    centre = 16 / 3
    rate0 = shape * ((2 - centre) ** 2 + (4 - centre) ** 2 + (10 - centre) ** 2) / 2
    expected = []
    for rewards in ([2.0, 4.0], [10.0], []):
        n = len(rewards)
        mean = sum(rewards) / n if n else 0.0
        kappa = count + n
        rate = rate0 + sum((r - mean) ** 2 for r in rewards) / 2 + count * n * (mean - centre) ** 2 / (2 * kappa)
        expected.append(
            ((count * centre + sum(rewards)) / kappa, math.sqrt(rate / ((shape + n / 2) * kappa)), 2 * shape + n)
        )
    posterior = policy.posterior(state)
    np.testing.assert_allclose(posterior.loc[0], [e[0] for e in expected], rtol=1e-12)
    np.testing.assert_allclose(posterior.scale[0], [e[1] for e in expected], rtol=1e-12)
    np.testing.assert_allclose(posterior.dof[0], [e[2] for e in expected], rtol=1e-12)
    # A fixed prior_mean or prior_rate replaces the value from the rewards, each on its own.
    fixed = bk.GaussianThompsonSampling(prior_mean=0.0, prior_rate=2.0)
    assert fixed.prior(state) == (0.0, 2.0)
    location, rate = bk.GaussianThompsonSampling(prior_rate=2.0).prior(state)
    assert (location[0, 0], rate) == (pytest.approx(centre, rel=1e-15), 2.0)


def test_gaussian_thompson_prior_before_two_different_rewards():
    """No rewards, or all equal: location their mean (0 before any), scale 1; every arm then has the same
    location, so every arm is equally likely among arms pulled equally often."""
    policy = bk.GaussianThompsonSampling()
    mask = np.ones((1, 3), dtype=bool)
    empty = policy.init_state(3)
    assert [float(np.squeeze(v)) for v in policy.prior(empty)] == [0.0, policy.prior_shape]
    np.testing.assert_allclose(policy.probabilities(empty, mask), [[1 / 3] * 3], rtol=0, atol=1e-9)
    same = policy.update(empty, np.array([0, 1, 2, 0, 1, 2]), np.full(6, 130.0))
    location, rate = policy.prior(same)
    assert location[0, 0] == 130.0 and rate[0, 0] == policy.prior_shape
    np.testing.assert_array_equal(policy.posterior(same).loc, [[130.0] * 3])
    np.testing.assert_allclose(policy.probabilities(same, mask), [[1 / 3] * 3], rtol=0, atol=1e-9)


def test_one_large_reward_does_not_take_the_traffic():
    """One reward of 129.99 and nothing else says nothing about which arm is better: with the prior set from
    the rewards both arms keep half the traffic (the former unit prior gave that arm 99.7%)."""
    bandit = bk.Bandit(["a", "b"], policy="gaussian_thompson", seed=0)
    bandit.update("a", 129.99)
    assert bandit.probabilities() == pytest.approx({"a": 0.5, "b": 0.5}, abs=1e-9)
    unit_prior = {"prior_mean": 0.0, "prior_count": 0.01, "prior_shape": 1.0, "prior_rate": 1.0}
    former = bk.Bandit(["a", "b"], policy={"name": "gaussian_thompson", "params": unit_prior}, seed=0)
    former.update("a", 129.99)
    assert former.probabilities()["a"] > 0.99


def test_gaussian_thompson_widens_a_run_of_zeros_to_the_shared_variance_by_hand():
    """Eight zeros on arm 0, 0 and 100 on arm 1: arm 0's own posterior would have scale 4.8; under one
    variance for both arms (the conjugate rate's terms summed over arms, over N = 10) it is wider, and that
    is what it gets (8.3), with 2 * prior_shape + N degrees of freedom. Arm 1's own posterior is the wider one."""
    policy = bk.GaussianThompsonSampling()
    count, shape = policy.prior_count, policy.prior_shape
    arms, rewards = np.array([0] * 8 + [1, 1]), np.array([0.0] * 8 + [0.0, 100.0])
    state = policy.update(policy.init_state(2), arms, rewards)
    centre = 10.0  # mean of all ten rewards
    rate0 = shape * sum((r - centre) ** 2 for r in rewards) / 9
    own, shared_terms = [], 0.0
    for arm in (0, 1):
        mine = rewards[arms == arm]
        n, mean = len(mine), float(mine.mean())
        spread = float(((mine - mean) ** 2).sum())
        shrink = count * n * (mean - centre) ** 2 / (count + n)
        own.append((math.sqrt((rate0 + spread / 2 + shrink / 2) / ((shape + n / 2) * (count + n))), 2 * shape + n))
        shared_terms += spread + shrink
    shared = [math.sqrt(shared_terms / 10 / (count + n)) for n in (8, 2)]
    assert shared[0] > own[0][0] and own[1][0] > shared[1]  # the case exercises both sides
    posterior = policy.posterior(state)
    np.testing.assert_allclose(posterior.scale[0], [shared[0], own[1][0]], rtol=1e-12)
    np.testing.assert_allclose(posterior.dof[0], [2 * shape + 10, own[1][1]], rtol=1e-12)
    # A fixed prior_rate gives the plain conjugate posterior: no widening.
    fixed = bk.GaussianThompsonSampling(prior_rate=float(rate0)).posterior(state)
    np.testing.assert_allclose(fixed.scale[0], [own[0][0], own[1][0]], rtol=1e-12)

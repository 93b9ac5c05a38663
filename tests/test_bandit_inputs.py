"""Invalid inputs in one table, and the edge cases every policy must survive."""
# The invalid-input table passes wrong types on purpose: the runtime checks must refuse them.
# mypy: disable-error-code="arg-type, list-item"

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import banditkit as bk
from banditkit.errors import InvalidParameterError, InvalidTypeError, NoActiveArmError, UnknownArmError
from banditkit.policies import REGISTRY, _jit

NON_CONTEXTUAL = sorted(name for name, cls in REGISTRY.items() if not cls.contextual)
NAN, INF = float("nan"), float("inf")


def thompson_bandit():
    bandit = bk.Bandit(["a", "b", "c"], policy="thompson", seed=1)
    bandit.update_many(["a", "b", "c", "a"], [1.0, 0.0, 1.0, 0.0])
    return bandit


def guarded_bandit():
    bandit = bk.Bandit(["a", "b"], policy="ucb1", seed=2, guardrails=bk.Guardrails(default_arm="a"))
    bandit.update("b", 1.0)
    return bandit


def bandit_without_c():
    bandit = thompson_bandit()
    bandit.disable_arm("c")
    return bandit


def one_arm_bandit():
    return bk.Bandit(["only"], policy="epsilon_greedy", seed=0)


#: (id, bandit factory or None, the bad call, exception class, fragments the message must contain).
#: Every message names the argument and shows the value received.
INVALID = [
    # -- construction ------------------------------------------------------------------------------
    ("no arms", None, lambda _: bk.Bandit([]), InvalidParameterError, ["arms", "[]"]),
    ("arms not a list", None, lambda _: bk.Bandit("abc"), InvalidTypeError, ["arms", "'abc'"]),
    ("duplicate arm", None, lambda _: bk.Bandit(["a", "b", "a"]), InvalidParameterError, ["unique", "'a'"]),
    ("empty arm name", None, lambda _: bk.Bandit(["a", ""]), InvalidParameterError, ["arm names", "''"]),
    ("arm name not a string", None, lambda _: bk.Bandit(["a", 3]), InvalidTypeError, ["arm names", "3"]),
    (
        "unknown policy",
        None,
        lambda _: bk.Bandit(["a"], policy="ucb2"),
        InvalidParameterError,
        ["policy name", "'ucb2'"],
    ),
    ("policy of wrong type", None, lambda _: bk.Bandit(["a"], policy=42), InvalidTypeError, ["policy", "int"]),
    (
        "unknown policy parameter",
        None,
        lambda _: bk.Bandit(["a"], policy={"name": "thompson", "params": {"alpha": 2.0}}),
        InvalidParameterError,
        ["thompson", "'alpha'"],
    ),
    ("epsilon above 1", None, lambda _: bk.EpsilonGreedy(epsilon=1.5), InvalidParameterError, ["epsilon", "1.5"]),
    (
        "epsilon below 0",
        None,
        lambda _: bk.Bandit(["a"], policy={"name": "epsilon_greedy", "params": {"epsilon": -0.1}}),
        InvalidParameterError,
        ["epsilon", "-0.1"],
    ),
    ("epsilon NaN", None, lambda _: bk.EpsilonGreedy(epsilon=NAN), InvalidParameterError, ["epsilon", "nan"]),
    ("epsilon as text", None, lambda _: bk.EpsilonGreedy(epsilon="0.1"), InvalidTypeError, ["epsilon", "'0.1'"]),
    ("negative decay", None, lambda _: bk.EpsilonGreedy(decay=-1.0), InvalidParameterError, ["decay", "-1.0"]),
    (
        "negative temperature",
        None,
        lambda _: bk.Softmax(temperature=-0.5),
        InvalidParameterError,
        ["temperature", "-0.5"],
    ),
    ("zero temperature", None, lambda _: bk.Softmax(temperature=0.0), InvalidParameterError, ["temperature", "0.0"]),
    ("exp3 gamma 0", None, lambda _: bk.EXP3(gamma=0.0), InvalidParameterError, ["gamma", "0.0"]),
    ("kl_ucb negative c", None, lambda _: bk.KLUCB(c=-1.0), InvalidParameterError, ["c ", "-1.0"]),
    ("zero prior", None, lambda _: bk.ThompsonSampling(prior_alpha=0.0), InvalidParameterError, ["prior_alpha", "0.0"]),
    (
        "discount above 1",
        None,
        lambda _: bk.DiscountedThompsonSampling(gamma=1.5),
        InvalidParameterError,
        ["gamma", "1.5"],
    ),
    ("window 0", None, lambda _: bk.SlidingWindowUCB(window=0), InvalidParameterError, ["window", "0"]),
    ("window not an int", None, lambda _: bk.SlidingWindowUCB(window=2.5), InvalidTypeError, ["window", "2.5"]),
    (
        "prior count inf",
        None,
        lambda _: bk.GaussianThompsonSampling(prior_count=INF),
        InvalidParameterError,
        ["prior_count", "inf"],
    ),
    ("empty experiment name", None, lambda _: bk.Bandit(["a"], name=""), InvalidParameterError, ["name", "''"]),
    ("experiment name not a string", None, lambda _: bk.Bandit(["a"], name=7), InvalidTypeError, ["name", "7"]),
    ("seed as text", None, lambda _: bk.Bandit(["a"], seed="x"), InvalidTypeError, ["seed", "'x'"]),
    ("negative seed", None, lambda _: bk.Bandit(["a"], seed=-1), InvalidParameterError, ["seed", "-1"]),
    (
        "n_features for a non-contextual policy",
        None,
        lambda _: bk.Bandit(["a"], policy="ucb1", n_features=3),
        InvalidParameterError,
        ["n_features", "'ucb1'"],
    ),
    (
        "guardrails of wrong type",
        None,
        lambda _: bk.Bandit(["a"], guardrails="strict"),
        InvalidTypeError,
        ["guardrails", "str"],
    ),
    (
        "unknown guardrail",
        None,
        lambda _: bk.Bandit(["a"], guardrails={"max_exploraton": 0.1}),
        InvalidParameterError,
        ["guardrails", "max_exploraton"],
    ),
    (
        "exploration cap above 1",
        None,
        lambda _: bk.Guardrails(max_exploration=2.0),
        InvalidParameterError,
        ["max_exploration", "2.0"],
    ),
    ("slo window 0", None, lambda _: bk.Guardrails(slo_window=0), InvalidParameterError, ["slo_window", "0"]),
    (
        "default arm not an arm",
        None,
        lambda _: bk.Bandit(["a"], guardrails={"default_arm": "z"}),
        UnknownArmError,
        ["default_arm", "'z'"],
    ),
    ("default arm not a string", None, lambda _: bk.Guardrails(default_arm=1), InvalidTypeError, ["default_arm", "1"]),
    # -- rewards -------------------------------------------------------------------------------------
    ("unknown arm", thompson_bandit, lambda b: b.update("z", 1.0), UnknownArmError, ["arm", "'z'"]),
    ("NaN reward", thompson_bandit, lambda b: b.update("a", NAN), InvalidParameterError, ["reward", "nan"]),
    ("infinite reward", thompson_bandit, lambda b: b.update("a", INF), InvalidParameterError, ["reward", "inf"]),
    (
        "reward above 1 for Thompson",
        thompson_bandit,
        lambda b: b.update("a", 1.5),
        InvalidParameterError,
        ["reward", "1.5"],
    ),
    (
        "negative reward for UCB1",
        guarded_bandit,
        lambda b: b.update("a", -0.5),
        InvalidParameterError,
        ["reward", "-0.5"],
    ),
    ("reward as text", thompson_bandit, lambda b: b.update("a", "1"), InvalidTypeError, ["reward", "'1'"]),
    ("reward as bool", thompson_bandit, lambda b: b.update("a", True), InvalidTypeError, ["reward", "True"]),
    ("reward None", thompson_bandit, lambda b: b.update("a", None), InvalidTypeError, ["reward", "None"]),
    (
        "NaN in a batch",
        thompson_bandit,
        lambda b: b.update_many(["a", "b"], [1.0, NAN]),
        InvalidParameterError,
        ["rewards", "nan", "position 1"],
    ),
    (
        "batch reward out of bounds",
        thompson_bandit,
        lambda b: b.update_many(["a", "b"], [2.0, 0.0]),
        InvalidParameterError,
        ["rewards", "2.0", "position 0"],
    ),
    (
        "batch rewards as text",
        thompson_bandit,
        lambda b: b.update_many(["a"], ["x"]),
        InvalidTypeError,
        ["rewards", "'x'"],
    ),
    (
        "batch lengths differ",
        thompson_bandit,
        lambda b: b.update_many(["a", "b"], [1.0]),
        InvalidParameterError,
        ["rewards", "1", "arms", "2"],
    ),
    (
        "unknown arm in a batch",
        thompson_bandit,
        lambda b: b.update_many(["a", "zz"], [1.0, 1.0]),
        UnknownArmError,
        ["arm", "'zz'"],
    ),
    (
        "arm index out of range",
        thompson_bandit,
        lambda b: b.update_many([0, 5], [1.0, 1.0]),
        UnknownArmError,
        ["arm index", "5"],
    ),
    (
        "arms not 1-d",
        thompson_bandit,
        lambda b: b.update_many([[0, 1]], [1.0, 1.0]),
        InvalidParameterError,
        ["arms", "(1, 2)"],
    ),
    (
        "rewards not 1-d",
        thompson_bandit,
        lambda b: b.update_many(["a"], [[1.0]]),
        InvalidParameterError,
        ["rewards", "(1, 1)"],
    ),
    (
        "zero propensity",
        thompson_bandit,
        lambda b: b.update_many(["a"], [1.0], propensities=[0.0]),
        InvalidParameterError,
        ["propensities", "0.0"],
    ),
    (
        "propensity above 1",
        thompson_bandit,
        lambda b: b.update_many(["a"], [1.0], propensities=[1.5]),
        InvalidParameterError,
        ["propensities", "1.5"],
    ),
    (
        "context for a non-contextual policy",
        thompson_bandit,
        lambda b: b.update("a", 1.0, context=[0.5]),
        InvalidParameterError,
        ["context", "'thompson'"],
    ),
    # -- decisions -----------------------------------------------------------------------------------
    ("unknown allowed arm", thompson_bandit, lambda b: b.select(allowed=["a", "zz"]), UnknownArmError, ["arm", "'zz'"]),
    ("allowed as a string", thompson_bandit, lambda b: b.select(allowed="a"), InvalidTypeError, ["allowed", "'a'"]),
    ("empty unit", thompson_bandit, lambda b: b.select(unit=""), InvalidParameterError, ["unit", "''"]),
    ("unit not a string", thompson_bandit, lambda b: b.select(unit=42), InvalidTypeError, ["unit", "42"]),
    (
        "unit not a string, default arm set",
        guarded_bandit,
        lambda b: b.select(unit=42),
        InvalidTypeError,
        ["unit", "42"],
    ),
    (
        "context on select",
        thompson_bandit,
        lambda b: b.select(context=[1.0, 2.0]),
        InvalidParameterError,
        ["context", "'thompson'"],
    ),
    ("select_many of 0", thompson_bandit, lambda b: b.select_many(0), InvalidParameterError, ["n", "0"]),
    ("select_many of 2.5", thompson_bandit, lambda b: b.select_many(2.5), InvalidTypeError, ["n", "2.5"]),
    (
        "select_many units count",
        thompson_bandit,
        lambda b: b.select_many(3, units=["u1"]),
        InvalidParameterError,
        ["units", "1", "3"],
    ),
    (
        "nothing allowed is active",
        bandit_without_c,
        lambda b: b.select(allowed=["c"]),
        NoActiveArmError,
        ["allowed", "'c'"],
    ),
    # -- arms ----------------------------------------------------------------------------------------
    ("add a duplicate arm", thompson_bandit, lambda b: b.add_arm("a"), InvalidParameterError, ["unique", "'a'"]),
    ("add an empty arm name", thompson_bandit, lambda b: b.add_arm(""), InvalidParameterError, ["arm names", "''"]),
    ("add an arm of wrong type", thompson_bandit, lambda b: b.add_arm(7), InvalidTypeError, ["arm names", "7"]),
    ("disable an unknown arm", thompson_bandit, lambda b: b.disable_arm("zz"), UnknownArmError, ["arm", "'zz'"]),
    ("enable an unknown arm", thompson_bandit, lambda b: b.enable_arm("zz"), UnknownArmError, ["arm", "'zz'"]),
    ("remove an unknown arm", thompson_bandit, lambda b: b.remove_arm("zz"), UnknownArmError, ["arm", "'zz'"]),
    (
        "remove the only arm",
        one_arm_bandit,
        lambda b: b.remove_arm("only"),
        InvalidParameterError,
        ["'only'", "only arm"],
    ),
    (
        "remove the default arm",
        guarded_bandit,
        lambda b: b.remove_arm("a"),
        InvalidParameterError,
        ["'a'", "default arm"],
    ),
    # -- serialised form -----------------------------------------------------------------------------
    ("malformed JSON", None, lambda _: bk.Bandit.from_json("{not json"), InvalidParameterError, ["JSON"]),
    (
        "wrong format tag",
        None,
        lambda _: bk.Bandit.from_json('{"format": "other/9"}'),
        InvalidParameterError,
        ["format", "'other/9'"],
    ),
]


@pytest.mark.parametrize(
    "factory, call, error, fragments", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_input_is_rejected_with_a_clear_message(factory, call, error, fragments):
    bandit = factory() if factory is not None else None
    before = bandit.to_json() if bandit is not None else None
    with pytest.raises(error) as caught:
        call(bandit)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert isinstance(caught.value, bk.BanditkitError)
    if bandit is not None:
        assert bandit.to_json() == before, "a rejected call changed the bandit"


def test_rejected_calls_leave_the_state_and_the_random_stream_untouched():
    """After a run of bad calls the bandit continues exactly like a twin that never saw them."""
    bandit, twin = thompson_bandit(), thompson_bandit()
    for _, factory, call, error, _ in INVALID:
        if factory is thompson_bandit:
            with pytest.raises(error):
                call(bandit)
    assert bandit.to_json() == twin.to_json()
    assert [bandit.select().arm for _ in range(20)] == [twin.select().arm for _ in range(20)]


# ---- edge cases ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NON_CONTEXTUAL)
def test_one_arm_is_always_chosen_with_propensity_one(name):
    bandit = bk.Bandit(["only"], policy=name, seed=3)
    for reward in (1.0, 0.0, 1.0, 0.5):
        decision = bandit.select()
        assert (decision.arm, decision.propensity) == ("only", 1.0)
        bandit.update(decision, reward)
    batch = bandit.select_many(50)
    assert set(batch.arms) == {"only"} and (batch.propensities == 1.0).all()
    assert bandit.probabilities() == {"only": 1.0}
    assert bandit.select(unit="user-1").propensity == 1.0


@pytest.mark.parametrize("name", NON_CONTEXTUAL)
def test_a_thousand_arms(name):
    """Learn, decide and report over 1,000 arms within 2 s (measured well under 0.1 s where designed)."""
    arms = [f"arm-{i}" for i in range(1000)]
    rng = np.random.default_rng(0)
    _jit.load()  # the compiled kernels, loaded and readied by a first call, are not timed
    bk.Bandit(["warm", "up"], policy=name).select()
    bandit = bk.Bandit(arms, policy=name, seed=0)
    started = time.perf_counter()
    chosen = rng.integers(0, 1000, size=5000)
    bandit.update_many(chosen, (rng.random(5000) < 0.3 + 0.4 * (chosen == 7)).astype(float))
    decision = bandit.select()
    probabilities = np.array(list(bandit.probabilities().values()))
    batch = bandit.select_many(200)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, elapsed
    assert probabilities.shape == (1000,) and (probabilities >= 0).all()
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)
    assert decision.propensity == pytest.approx(probabilities[decision.arm_index], abs=1e-12)
    assert (probabilities[batch.arm_indices] > 0).all()


@pytest.mark.parametrize("name", NON_CONTEXTUAL)
def test_a_thousand_arms_decide_and_learn(name):
    """Every policy, Thompson sampling included, serves and learns over 1,000 arms (no propensities asked)."""
    _jit.load()  # the compiled kernels, loaded and readied by a first call, are not timed
    bk.Bandit(["warm", "up"], policy=name).select()
    bandit = bk.Bandit([f"arm-{i}" for i in range(1000)], policy=name, seed=0)
    started = time.perf_counter()
    for _ in range(20):
        decision = bandit.select()
        bandit.update(decision, 1.0 if decision.arm_index == 7 else 0.0)
    bandit.update_many(np.arange(1000), np.zeros(1000))
    assert bandit.select().arm_index in range(1000)
    assert time.perf_counter() - started < 2.0
    assert sum(bandit.to_dict()["pulls"]) == 1020


@pytest.mark.parametrize("name", NON_CONTEXTUAL)
def test_all_zero_rewards(name):
    bandit = bk.Bandit(["a", "b", "c"], policy=name, seed=4)
    for _ in range(100):
        bandit.update(bandit.select(), 0.0)
    bandit.update_many(["a", "b", "c"] * 50, np.zeros(150))
    probabilities = np.array(list(bandit.probabilities().values()))
    assert np.isfinite(probabilities).all() and probabilities.sum() == pytest.approx(1.0, abs=1e-9)
    assert all(row.mean == 0.0 and row.low == 0.0 for row in bandit.stats())
    assert np.isfinite(bandit.policy.means(bandit.state)).all()


def test_gaussian_thompson_with_rewards_of_1e12():
    bandit = bk.Bandit(["big", "small"], policy="gaussian_thompson", seed=5)
    rewards = 1e12 + np.array([-3e6, 1e6, 2e6, 0.0, 4e6, -4e6])
    bandit.update_many(["big"] * 6, rewards)
    bandit.update_many(["small"] * 3, [1.0, 2.0, 3.0])
    big, small = bandit.stats()
    assert big.mean == pytest.approx(1e12, rel=1e-15) and small.mean == 2.0
    assert big.low < 1e12 < big.high and math.isfinite(big.high - big.low)
    posterior = bandit.policy.posterior(bandit.state)
    # Posterior mean: the sample mean shrunk by prior_count 1 towards the mean of all nine rewards.
    everything = (rewards.sum() + 6.0) / 9
    assert posterior.loc[0, 0] == pytest.approx((everything + rewards.sum()) / 7, rel=1e-12)
    assert np.isfinite(posterior.scale).all() and (posterior.scale > 0).all()
    # The prior is as wide as all nine rewards (1e12 apart): three rewards of 1-3 leave "small" a 0.8% chance.
    probabilities = bandit.probabilities()
    assert probabilities["big"] > 0.99 and math.isfinite(probabilities["small"])
    assert bandit.select().arm == "big"
    assert bk.Bandit.from_json(bandit.to_json()).to_json() == bandit.to_json()

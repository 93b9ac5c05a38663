"""Guardrails: default-arm fallback, exploration cap, per-arm SLO, abort rule, disabled arms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import banditkit as bk
from banditkit.policies import Policy
from banditkit.policies.base import add_counts, count_state, empirical_means

# Significance of the chi-square test below: a correct implementation fails it w.p. 0.001.
ALPHA = 1e-3


class BrokenPolicy(Policy):
    """A test double: learns like any counting policy, but every decision raises."""

    name = "broken"

    def init_state(self, n_arms, batch=1, n_features=None):
        return count_state(n_arms, batch)

    def probabilities(self, state, mask, context=None):
        raise RuntimeError("the model server is down")

    def sample(self, state, rng, mask, context=None):
        raise RuntimeError("the model server is down")

    def update(self, state, arms, rewards, *, propensities=None, context=None):
        return add_counts(state, arms, rewards)

    def means(self, state, context=None):
        return empirical_means(state)


# ---- default-arm fallback ------------------------------------------------------------------------
def test_fallback_serves_the_default_arm_when_the_policy_fails():
    bandit = bk.Bandit(
        ["control", "new"], policy=BrokenPolicy(), seed=0, guardrails=bk.Guardrails(default_arm="control")
    )
    for call in (lambda: bandit.select(), lambda: bandit.select(unit="user-1"), lambda: bandit.select(allowed=["new"])):
        decision = call()
        assert (decision.arm, decision.fallback, decision.propensity) == ("control", True, 1.0)
        assert decision.probabilities == {"control": 1.0, "new": 0.0}
    batch = bandit.select_many(5)
    assert list(batch.arms) == ["control"] * 5 and batch.fallback.all() and (batch.propensities == 1.0).all()
    # Reporting agrees with what is served, and learning still works.
    assert bandit.probabilities() == {"control": 1.0, "new": 0.0}
    np.testing.assert_array_equal(bandit.probabilities_many(n=2), [[1.0, 0.0], [1.0, 0.0]])
    bandit.update(decision, 1.0)
    assert [(row.pulls, row.probability) for row in bandit.stats()] == [(1, 1.0), (0, 0.0)]


def test_without_a_default_arm_the_policy_error_propagates():
    bandit = bk.Bandit(["control", "new"], policy=BrokenPolicy(), seed=0)
    with pytest.raises(RuntimeError, match="model server"):
        bandit.select()
    with pytest.raises(RuntimeError, match="model server"):
        bandit.select_many(3)


# ---- exploration cap -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy",
    ["softmax", "thompson", "exp3", {"name": "epsilon_greedy", "params": {"epsilon": 0.6}}],
    ids=["softmax", "thompson", "exp3", "epsilon_greedy"],
)
def test_exploration_cap(policy):
    capped = bk.Bandit(["a", "b", "c", "d"], policy=policy, seed=0, guardrails=bk.Guardrails(max_exploration=0.1))
    capped.update_many(["a", "b", "c", "d"] * 3, [0.3, 0.6, 0.5, 0.2] * 3)
    best = int(np.argmax(capped.policy.means(capped.state)[0]))
    assert best == 1
    probabilities = np.array(list(capped.probabilities().values()))
    uncapped = capped.policy.probabilities(capped.state, np.ones((1, 4), dtype=bool))[0]
    assert 1 - uncapped[best] > 0.1, "the scenario must need the cap"
    assert 1 - probabilities[best] == pytest.approx(0.1, abs=1e-12)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-12) and (probabilities >= 0).all()
    others = np.delete(np.arange(4), best)
    # The mass away from the best arm shrinks in proportion: the explored arms keep their ratios.
    np.testing.assert_allclose(
        probabilities[others] / probabilities[others].sum(), uncapped[others] / uncapped[others].sum(), rtol=1e-12
    )
    decision = capped.select()
    assert decision.propensity == pytest.approx(probabilities[decision.arm_index], abs=1e-15)
    batch = capped.select_many(20_000)
    np.testing.assert_allclose(batch.propensities, probabilities[batch.arm_indices], rtol=0, atol=1e-15)
    counts = np.bincount(batch.arm_indices, minlength=4)
    assert stats.chisquare(counts, 20_000 * probabilities).pvalue > ALPHA, counts


def test_exploration_cap_leaves_a_confident_policy_alone():
    capped = bk.Bandit(["a", "b"], policy="softmax", seed=0, guardrails=bk.Guardrails(max_exploration=0.2))
    capped.update_many(["a", "b"] * 5, [0.0, 1.0] * 5)
    free_probabilities = capped.policy.probabilities(capped.state, np.ones((1, 2), dtype=bool))[0]
    assert 1 - free_probabilities[1] < 0.2
    np.testing.assert_allclose(list(capped.probabilities().values()), free_probabilities, rtol=0, atol=1e-15)


# ---- per-arm SLO ---------------------------------------------------------------------------------
def test_slo_disables_an_arm_after_the_window_and_says_why():
    guardrails = bk.Guardrails(min_reward_rate=0.3, slo_window=50)
    bandit = bk.Bandit(["good", "bad"], policy="thompson", seed=0, guardrails=guardrails)
    bandit.update_many(["good"] * 50, [1.0, 0.0] * 25)
    bandit.update_many(["bad"] * 49, [1.0] * 5 + [0.0] * 44)
    assert bandit.active_arms == ["good", "bad"], "49 pulls are not yet a full window"
    bandit.update("bad", 0.0)
    assert bandit.active_arms == ["good"]
    good, bad = bandit.stats()
    assert good.active and good.disabled_reason is None
    assert not bad.active and bad.probability == 0.0
    assert "SLO" in bad.disabled_reason and "min_reward_rate 0.3" in bad.disabled_reason
    assert "0.1" in bad.disabled_reason and "50 pulls" in bad.disabled_reason
    assert all(bandit.select().arm == "good" for _ in range(30))
    restored = bk.Bandit.from_json(bandit.to_json())
    assert restored.stats()[1].disabled_reason == bad.disabled_reason
    restored.enable_arm("bad")  # an operator may bring it back
    assert restored.stats()[1].disabled_reason is None and restored.probabilities()["bad"] > 0


def test_the_default_arm_is_never_slo_disabled():
    guardrails = bk.Guardrails(default_arm="control", min_reward_rate=0.5, slo_window=10)
    bandit = bk.Bandit(["control", "new"], policy="ucb1", seed=0, guardrails=guardrails)
    bandit.update_many(["control", "new"] * 20, [0.0, 0.0] * 20)
    assert bandit.active_arms == ["control"]
    assert bandit.stats()[0].disabled_reason is None
    decision = bandit.select()
    assert decision.arm == "control" and not decision.fallback


# ---- abort rule ----------------------------------------------------------------------------------
def test_abort_serves_the_default_arm_until_resumed():
    guardrails = bk.Guardrails(default_arm="control", ruin_threshold=-5.0)
    bandit = bk.Bandit(["control", "risky"], policy="gaussian_thompson", seed=0, guardrails=guardrails)
    bandit.update_many(["risky"] * 4, [-1.0, -1.5, -1.0, -1.0])  # total -4.5: above the threshold
    assert not bandit.select().fallback
    bandit.update("risky", -0.75)  # total -5.25: ruined
    decisions = [bandit.select() for _ in range(20)] + [bandit.select(unit="u-9"), bandit.select(allowed=["risky"])]
    assert all((d.arm, d.fallback, d.propensity) == ("control", True, 1.0) for d in decisions)
    assert bandit.probabilities() == {"control": 1.0, "risky": 0.0}
    assert bandit.select_many(4).fallback.all()
    assert bk.Bandit.from_json(bandit.to_json()).select().fallback, "the abort survives a round trip"
    bandit.resume()
    assert not any(bandit.select().fallback for _ in range(20))
    assert bandit.probabilities()["risky"] > 0
    bandit.update("control", 0.5)  # total -4.75: back above the threshold
    assert not bandit.select().fallback
    bandit.update("risky", -0.5)  # total -5.25: the rule fires again
    assert bandit.select().fallback


def test_abort_without_a_default_arm_refuses_to_serve():
    bandit = bk.Bandit(["a", "b"], policy="gaussian_thompson", seed=0, guardrails=bk.Guardrails(ruin_threshold=0.0))
    bandit.update("a", -1.0)
    with pytest.raises(bk.NoActiveArmError, match="abort"):
        bandit.select()


# ---- disabled arms -------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["softmax", "thompson", "epsilon_greedy", "ucb1", "exp3", "gaussian_thompson"])
def test_disabled_arms_get_zero_and_the_rest_is_renormalised(policy):
    bandit = bk.Bandit(["a", "b", "c", "d"], policy=policy, seed=0)
    bandit.update_many(["a", "b", "c", "d"] * 4, [0.9, 0.5, 0.8, 0.1] * 4)
    bandit.disable_arm("c")
    probabilities = bandit.probabilities()
    assert probabilities["c"] == 0.0 and sum(probabilities.values()) == pytest.approx(1.0, abs=1e-12)
    # Exactly what the policy gives over the remaining arms.
    assert probabilities == pytest.approx(bandit.probabilities(allowed=["a", "b", "d"]), abs=1e-15)
    assert bandit.stats()[2].disabled_reason == "disabled by operator"
    assert "c" not in {bandit.select().arm for _ in range(100)}


def test_softmax_renormalises_in_proportion():
    bandit = bk.Bandit(["a", "b", "c"], policy=bk.Softmax(temperature=0.5), seed=0)
    bandit.update_many(["a", "b", "c"], [0.2, 0.6, 0.9])
    before = bandit.probabilities()
    bandit.disable_arm("c")
    after = bandit.probabilities()
    kept = before["a"] + before["b"]
    assert after == pytest.approx({"a": before["a"] / kept, "b": before["b"] / kept, "c": 0.0}, abs=1e-15)


def test_exp3_late_rewards_for_arms_no_longer_served_stay_bounded():
    """A reward for a disabled arm, logged without a propensity, must not blow up its weight (or give NaN)."""
    bandit = bk.Bandit(["a", "b", "c"], policy=bk.EXP3(gamma=0.1), seed=0)
    bandit.update_many(["a", "b", "c"], [0.5, 0.5, 0.5])
    bandit.disable_arm("b")
    before = bandit.state["log_weights"].copy()
    bandit.update("b", 1.0)
    delta = bandit.state["log_weights"] - before
    # The importance weight is at most gamma * r / (K * gamma / K) = 1: EXP3 gives every arm >= gamma / K.
    assert 0 < delta[0, 1] <= 1.0 and delta[0, 0] == delta[0, 2] == 0
    for arm in ("a", "c"):
        bandit.disable_arm(arm)
    bandit.update_many(["a", "c"], [1.0, 1.0])
    assert np.isfinite(bandit.state["log_weights"]).all() and bandit.state["log_weights"].max() < 5

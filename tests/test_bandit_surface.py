"""The Bandit's public surface: state with an invariant is read-only, and what is served agrees with what is
reported after every change made through the methods."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import banditkit as bk

READ_ONLY = {
    "aborted": True,
    "active": np.array([True, False, True]),
    "version": 99,
    "state": {},
    "disabled_reasons": {},
    "total_reward": 5.0,
    "policy": bk.UCB1(),
    "guardrails": bk.Guardrails(),
    "name": "other",
    "rng": np.random.default_rng(1),
    "n_features": 3,
    "arms": ["x"],
    "pulls": np.zeros(3),
    "reward_sums": np.zeros(3),
    "active_arms": ["a"],
}


def guarded_bandit(policy="thompson") -> bk.Bandit:
    bandit = bk.Bandit(["control", "b", "c"], policy=policy, seed=4, guardrails={"default_arm": "control"})
    bandit.update_many(["control", "b", "c", "b"], [0.0, 1.0, 1.0, 1.0])
    return bandit


@pytest.mark.parametrize("attribute, value", READ_ONLY.items(), ids=list(READ_ONLY))
def test_state_with_an_invariant_cannot_be_assigned(attribute, value):
    bandit = guarded_bandit()
    before = bandit.to_dict()
    with pytest.raises(AttributeError):
        setattr(bandit, attribute, value)
    assert bandit.to_dict() == before


def test_what_reading_returns_is_a_copy():
    bandit = guarded_bandit()
    before = bandit.to_dict()
    bandit.active[1] = False
    bandit.disabled_reasons["b"] = "edited"
    bandit.state.clear()
    bandit.arms.append("d")
    assert bandit.to_dict() == before and bandit.active_arms == ["control", "b", "c"]


def served(bandit: bk.Bandit, n: int = 400) -> set[str]:
    return {bandit.select().arm for _ in range(n)} | set(bandit.select_many(n).arms)


def reported(bandit: bk.Bandit) -> set[str]:
    return {arm for arm, p in bandit.probabilities().items() if p > 0}


@pytest.mark.parametrize("policy", ["thompson", "ucb1", "exp3", "softmax", "epsilon_greedy"])
def test_select_and_probabilities_agree_after_abort_resume_and_disable(policy):
    bandit = guarded_bandit(policy)
    assert served(bandit) <= reported(bandit) and reported(bandit) - {"control"}

    version = bandit.version
    bandit.abort()
    assert bandit.aborted and bandit.version == version + 1
    assert bandit.probabilities() == {"control": 1.0, "b": 0.0, "c": 0.0}
    decision = bandit.select()
    assert (decision.arm, decision.fallback, decision.propensity) == ("control", True, 1.0)
    assert served(bandit) == {"control"}

    bandit.resume()
    assert not bandit.aborted and bandit.version == version + 2
    assert served(bandit) <= reported(bandit) and reported(bandit) - {"control"}

    bandit.disable_arm("b", "too slow")
    assert reported(bandit) <= {"control", "c"} and served(bandit) <= reported(bandit)
    assert bandit.disabled_reasons == {"b": "too slow"} and bandit.active.tolist() == [True, False, True]
    bandit.enable_arm("b")
    assert bandit.active.all() and bandit.disabled_reasons == {} and served(bandit) <= reported(bandit)


def test_the_abort_rule_and_the_slo_keep_select_and_probabilities_in_step():
    bandit = bk.Bandit(
        ["control", "b"],
        policy="gaussian_thompson",
        seed=0,
        guardrails={"default_arm": "control", "ruin_threshold": -5.0},
    )
    bandit.update_many(["b"] * 3, [-3.0, -3.0, 0.5])
    assert bandit.aborted and served(bandit) == {"control"} and reported(bandit) == {"control"}

    slo = bk.Bandit(
        ["control", "b"],
        policy="thompson",
        seed=0,
        guardrails={"default_arm": "control", "min_reward_rate": 0.5, "slo_window": 2},
    )
    slo.update_many(["b", "b"], [0.0, 0.0])
    assert slo.active_arms == ["control"] and served(slo) == {"control"} and reported(slo) == {"control"}


def test_abort_without_a_default_arm_stops_serving():
    bandit = bk.Bandit(["a", "b"], policy="thompson", seed=0)
    bandit.abort()
    with pytest.raises(bk.NoActiveArmError, match="abort"):
        bandit.select()
    bandit.resume()
    assert bandit.select().arm in {"a", "b"}


def test_an_abort_survives_the_round_trip():
    bandit = guarded_bandit()
    bandit.abort()
    restored = bk.Bandit.from_json(bandit.to_json())
    assert restored.aborted and served(restored) == {"control"} and reported(restored) == {"control"}


def test_a_shallow_copy_is_a_consistent_view():
    """The service computes distributions on a shallow copy taken under its lock; later changes must not leak."""
    bandit = guarded_bandit()
    view = copy.copy(bandit)
    before = view.to_dict()
    bandit.disable_arm("c")
    bandit.add_arm("d")
    bandit.update_many(["b"], [1.0])
    bandit.absorb([0], [1.0], bandit.policy.update(bandit.state, np.array([0]), np.array([1.0])))
    assert view.to_dict() == before and reported(view) == {"control", "b", "c"}


def test_absorb_takes_the_store_version_and_refuses_to_go_back():
    bandit = guarded_bandit()
    state = bandit.policy.update(bandit.state, np.array([1]), np.array([1.0]))
    with pytest.raises(bk.InvalidParameterError, match="version must be in"):
        bandit.absorb([1], [1.0], state, version=bandit.version)
    version = bandit.version
    bandit.absorb([1], [1.0], state, version=version + 7)
    assert bandit.version == version + 7 and bandit.pulls.tolist() == [1.0, 3.0, 1.0]


def test_from_dict_takes_the_policy_state_kept_apart():
    bandit = guarded_bandit()
    data = dict(bandit.to_dict(), state=None)
    restored = bk.Bandit.from_dict(data, state=bandit.state)
    assert restored.to_dict() == bandit.to_dict()
    with pytest.raises(bk.InvalidParameterError, match="state must have the keys"):
        bk.Bandit.from_dict(data, state={"alpha": np.ones((1, 3))})
    with pytest.raises(bk.InvalidParameterError, match="given twice"):
        bk.Bandit.from_dict(bandit.to_dict(), state=bandit.state)

"""A Hypothesis state machine drives a real Bandit beside a naive model of arms, pulls and reward sums."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import banditkit as bk
from banditkit.policies import REGISTRY

NON_CONTEXTUAL = sorted(name for name, cls in REGISTRY.items() if not cls.contextual)
REWARDS = st.sampled_from([0.0, 1.0, 0.25, 0.5, 0.75])
UNITS = st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=8)


class BanditMachine(RuleBasedStateMachine):
    """Reference model: the arm list, the active set, and per-arm pull counts and reward sums."""

    @initialize(policy=st.sampled_from(NON_CONTEXTUAL), seed=st.integers(0, 2**32 - 1))
    def start(self, policy, seed):
        self.bandit = bk.Bandit(["a0", "a1", "a2"], policy=policy, seed=seed)
        self.arms = ["a0", "a1", "a2"]
        self.active = {"a0", "a1", "a2"}
        self.pulls = {arm: 0 for arm in self.arms}
        self.sums = {arm: 0.0 for arm in self.arms}
        self.decisions: list[bk.Decision] = []
        self.next_arm = 3

    # ---- decisions -------------------------------------------------------------------------------
    def _check_decision(self, decision, allowed=None):
        assert decision.arm in self.active
        assert allowed is None or decision.arm in allowed
        assert not decision.fallback
        assert 0.0 < decision.propensity <= 1.0
        expected = self.bandit.probabilities(allowed=allowed)
        assert decision.propensity == pytest.approx(expected[decision.arm], abs=1e-12)
        self.decisions = ([*self.decisions, decision])[-8:]

    @rule()
    def select(self):
        if not self.active:
            with pytest.raises(bk.NoActiveArmError):
                self.bandit.select()
            return
        self._check_decision(self.bandit.select())

    @rule(data=st.data())
    def select_allowed(self, data):
        allowed = data.draw(st.lists(st.sampled_from(self.arms), min_size=1, unique=True))
        if not self.active & set(allowed):
            with pytest.raises(bk.NoActiveArmError):
                self.bandit.select(allowed=allowed)
            return
        self._check_decision(self.bandit.select(allowed=allowed), allowed)

    @rule(unit=UNITS)
    def select_unit(self, unit):
        if not self.active:
            return
        first = self.bandit.select(unit=unit)
        self._check_decision(first)
        assert self.bandit.select(unit=unit).arm == first.arm
        assert first.unit == unit

    # ---- learning --------------------------------------------------------------------------------
    def _observe(self, arm, reward):
        self.pulls[arm] += 1
        self.sums[arm] += reward

    @rule(data=st.data(), reward=REWARDS)
    def update_by_name(self, data, reward):
        arm = data.draw(st.sampled_from(self.arms))
        self.bandit.update(arm, reward)
        self._observe(arm, reward)

    @precondition(lambda self: any(d.arm in self.arms for d in self.decisions))
    @rule(data=st.data(), reward=REWARDS)
    def update_by_decision(self, data, reward):
        decision = data.draw(st.sampled_from([d for d in self.decisions if d.arm in self.arms]))
        self.bandit.update(decision, reward)
        self._observe(decision.arm, reward)

    @rule(data=st.data())
    def update_many(self, data):
        arms = data.draw(st.lists(st.sampled_from(self.arms), min_size=1, max_size=12))
        rewards = data.draw(st.lists(REWARDS, min_size=len(arms), max_size=len(arms)))
        self.bandit.update_many(arms, rewards)
        for arm, reward in zip(arms, rewards, strict=True):
            self._observe(arm, reward)

    # ---- arms ------------------------------------------------------------------------------------
    @precondition(lambda self: len(self.arms) < 7)
    @rule()
    def add_arm(self):
        arm = f"a{self.next_arm}"
        self.next_arm += 1
        self.bandit.add_arm(arm)
        self.arms.append(arm)
        self.active.add(arm)
        self.pulls[arm], self.sums[arm] = 0, 0.0

    @rule(data=st.data())
    def disable_arm(self, data):
        arm = data.draw(st.sampled_from(self.arms))
        self.bandit.disable_arm(arm)
        self.active.discard(arm)

    @rule(data=st.data())
    def enable_arm(self, data):
        arm = data.draw(st.sampled_from(self.arms))
        self.bandit.enable_arm(arm)
        self.active.add(arm)

    @precondition(lambda self: len(self.arms) > 1)
    @rule(data=st.data())
    def remove_arm(self, data):
        arm = data.draw(st.sampled_from(self.arms))
        self.bandit.remove_arm(arm)
        self.arms.remove(arm)
        self.active.discard(arm)
        del self.pulls[arm], self.sums[arm]

    @rule()
    def json_round_trip(self):
        text = self.bandit.to_json()
        self.bandit = bk.Bandit.from_json(text)
        assert self.bandit.to_json() == text

    # ---- invariants ------------------------------------------------------------------------------
    @invariant()
    def arms_match_the_model(self):
        assert self.bandit.arms == self.arms
        assert self.bandit.active_arms == [arm for arm in self.arms if arm in self.active]

    @invariant()
    def probabilities_are_a_distribution_over_active_arms(self):
        if not self.active:
            return
        probabilities = self.bandit.probabilities()
        assert list(probabilities) == self.arms
        assert math.fsum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(p >= 0.0 for p in probabilities.values())
        assert all(probabilities[arm] == 0.0 for arm in self.arms if arm not in self.active)

    @invariant()
    def counts_and_stats_match_the_model(self):
        rows = self.bandit.stats() if self.active else []
        for row in rows:
            assert row.pulls == self.pulls[row.arm] >= 0
            assert row.active == (row.arm in self.active)
            if row.pulls:
                assert row.mean == pytest.approx(self.sums[row.arm] / row.pulls, abs=1e-12)
                if row.low is not None:  # intervals need two rewards unless rewards are bounded
                    assert row.low <= row.mean <= row.high
            else:
                assert row.mean is None
        state = self.bandit.state
        if "pulls" in state:  # the policy's own counts (windows here hold every reward)
            assert state["pulls"].min() >= 0
            assert state["pulls"][0].tolist() == [self.pulls[arm] for arm in self.arms]


BanditMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestBanditMachine = BanditMachine.TestCase

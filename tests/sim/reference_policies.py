"""Two policies with known regret, written against the public protocol, for the simulator's tests."""

from __future__ import annotations

import numpy as np

from banditkit.policies import Policy
from banditkit.policies.base import arm_sums, batch_rows


class FixedArm(Policy):
    """Always plays ``arm``; counts pulls so that updates are visible."""

    name = "fixed_arm_test"

    def __init__(self, arm: int = 0):
        self.arm = arm

    def init_state(self, n_arms, batch=1, n_features=None):
        return {"arm_counts": np.zeros((batch, n_arms))}

    def probabilities(self, state, mask, context=None):
        out = np.zeros(mask.shape)
        out[:, self.arm] = 1.0
        return out

    def sample(self, state, rng, mask, context=None):
        return np.full(mask.shape[0], self.arm, dtype=np.intp)

    def update(self, state, arms, rewards, *, propensities=None, context=None):
        n_arms = state["arm_counts"].shape[1]
        return {"arm_counts": state["arm_counts"] + arm_sums(state, arms, np.ones(arms.shape[0]), n_arms)}

    def means(self, state, context=None):
        return np.zeros_like(state["arm_counts"])


class UniformRandom(Policy):
    """Plays every allowed arm with equal probability: expected regret t * mean gap."""

    name = "uniform_test"

    def __init__(self):
        pass

    def init_state(self, n_arms, batch=1, n_features=None):
        return {"arm_counts": np.zeros((batch, n_arms))}

    def probabilities(self, state, mask, context=None):
        return mask / mask.sum(axis=1, keepdims=True)

    def sample(self, state, rng, mask, context=None):
        batch_rows(state, mask.shape[0])
        probabilities = self.probabilities(state, mask)
        return (probabilities.cumsum(axis=1) <= rng.random(mask.shape[0])[:, None]).sum(axis=1)

    def update(self, state, arms, rewards, *, propensities=None, context=None):
        n_arms = state["arm_counts"].shape[1]
        return {"arm_counts": state["arm_counts"] + arm_sums(state, arms, np.ones(arms.shape[0]), n_arms)}

    def means(self, state, context=None):
        return np.zeros_like(state["arm_counts"])

"""EXP3: exponential weights on importance-weighted reward estimates, for adversarial rewards.

Reference: Auer, Cesa-Bianchi, Freund & Schapire, "The Nonstochastic
Multiarmed Bandit Problem" (SIAM J. Computing, 2002), Exp3 with rewards in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TypeVar

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from .._validation import check_real
from . import _jit
from .base import State, add_count, add_counts, arm_sums, categorical
from .bounded import BoundedCountPolicy
from .registry import register
from .softmax import masked_softmax

#: A float for one reward, an array (n,) for many.
_Rewards = TypeVar("_Rewards", float, FloatArray)


@register
class EXP3(BoundedCountPolicy):
    """p = (1 - gamma) * softmax(log_weights) + gamma / K over allowed arms.

    A reward r of arm a chosen with probability p_a adds gamma * r / (K * p_a)
    to its log-weight: an unbiased importance-weighted estimate, kept in log
    space so a million rewards of 1 cannot overflow. ``update`` takes the
    propensity logged with the decision; the log-weights are a plain sum.
    Rewards in another interval ``reward_range`` are mapped onto [0, 1] first.

    >>> import numpy as np
    >>> policy = EXP3(gamma=0.1)
    >>> state = policy.init_state(2)
    >>> policy.probabilities(state, np.ones((1, 2), dtype=bool)).tolist()
    [[0.5, 0.5]]
    """

    name = "exp3"
    needs_propensities = True

    def __init__(self, gamma: float = 0.1, reward_range: Sequence[float] = (0.0, 1.0)):
        self.gamma = check_real("gamma", gamma, low=0.0, high=1.0, low_open=True)
        super().__init__(reward_range)

    def init_state(self, n_arms: int, batch: int = 1, n_features: int | None = None) -> State:
        state = super().init_state(n_arms, batch)
        state["log_weights"] = np.zeros((batch, n_arms))
        return state

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        compiled = _jit.kernels()
        if compiled is not None and mask.shape[0] == 1 and state["log_weights"].shape[0] == 1:
            distribution: FloatArray = compiled.exp3_probabilities(state["log_weights"], self.gamma, mask)
            return distribution
        exploit = masked_softmax(np.broadcast_to(state["log_weights"], mask.shape), mask)
        distribution = (1.0 - self.gamma) * exploit + self.gamma * mask / mask.sum(axis=1, keepdims=True)
        return distribution

    def sample_numpy(self, state: State, rng: np.random.Generator, mask: BoolArray) -> IntArray:
        return categorical(self.probabilities(state, mask), rng)

    def choose_compiled(self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray) -> int:
        arm: int = compiled.exp3_choice(_jit.generator_pointers(rng), state["log_weights"], self.gamma, mask)
        return arm

    def learn(self, state: State, arms: IntArray, rewards: FloatArray, propensities: FloatArray | None) -> State:
        if propensities is None:
            raise ValueError("EXP3 needs the propensity of each chosen arm")
        if arms.shape[0] == 1 and state["log_weights"].shape[0] == 1:
            return self.learn_one(state, int(arms[0]), float(rewards[0]), float(propensities[0]))
        n_arms = state["log_weights"].shape[1]
        new = add_counts(state, arms, rewards)
        increments = self._log_weight_increment(rewards, propensities, n_arms)
        new["log_weights"] = state["log_weights"] + arm_sums(state, arms, increments, n_arms)
        return new

    def learn_one(self, state: State, arm: int, reward: float, propensity: float | None) -> State:
        if propensity is None:
            raise ValueError("EXP3 needs the propensity of each chosen arm")
        new = add_count(state, arm, reward)
        new["log_weights"] = log_weights = state["log_weights"].copy()
        log_weights[0, arm] += self._log_weight_increment(reward, propensity, log_weights.shape[1])
        return new

    def _log_weight_increment(self, rewards: _Rewards, propensities: _Rewards, n_arms: int) -> _Rewards:
        """Log-weight increment gamma * r / (K * p): the importance-weighted reward (arrays or floats)."""
        return self.gamma * rewards / (n_arms * propensities)

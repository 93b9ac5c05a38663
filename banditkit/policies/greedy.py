"""Epsilon-greedy: exploit the best empirical mean, explore uniformly with probability epsilon.

Reference: Sutton & Barto, "Reinforcement Learning: An Introduction" (2nd ed.,
2018), section 2.2; the decaying schedule follows Auer et al. (2002)'s
epsilon_n-greedy in spirit (epsilon shrinking like 1/t).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from .._validation import check_real
from . import _jit
from .base import State, argmax_probabilities, argmax_random_ties, categorical, empirical_means
from .counts import CountPolicy
from .registry import register


@register
class EpsilonGreedy(CountPolicy):
    """Explore a uniformly random allowed arm iff u < epsilon_t, else play the best mean (random ties).

    Schedule: ``epsilon_t = epsilon / (1 + decay * t)`` where t is the number
    of rewards seen so far; ``decay=0`` keeps epsilon fixed. Arms never pulled
    have mean 0.

    >>> import numpy as np
    >>> policy = EpsilonGreedy(epsilon=0.2)
    >>> state = policy.update(policy.init_state(2), np.array([1]), np.array([1.0]))
    >>> policy.probabilities(state, np.ones((1, 2), dtype=bool)).tolist()
    [[0.1, 0.9]]
    """

    name = "epsilon_greedy"

    def __init__(self, epsilon: float = 0.1, decay: float = 0.0):
        self.epsilon = check_real("epsilon", epsilon, low=0.0, high=1.0)
        self.decay = check_real("decay", decay, low=0.0)

    def exploration_rate(self, state: State) -> np.ndarray:
        """Current epsilon per state row, shape (B, 1)."""
        steps = state["pulls"].sum(axis=1, keepdims=True)
        rate: FloatArray = self.epsilon / (1.0 + self.decay * steps)
        return rate

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        means = np.broadcast_to(empirical_means(state), mask.shape)
        epsilon = self.exploration_rate(state)
        uniform = mask / mask.sum(axis=1, keepdims=True)
        distribution: FloatArray = epsilon * uniform + (1.0 - epsilon) * argmax_probabilities(means, mask)
        return distribution

    def sample_numpy(self, state: State, rng: np.random.Generator, mask: BoolArray) -> IntArray:
        explore = rng.random(mask.shape[0]) < self.exploration_rate(state)[:, 0]
        uniform_arms = categorical(mask / mask.sum(axis=1, keepdims=True), rng)
        greedy_arms = argmax_random_ties(np.broadcast_to(empirical_means(state), mask.shape), mask, rng)
        return np.where(explore, uniform_arms, greedy_arms)

    def choose_compiled(self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray) -> int:
        arm: int = compiled.epsilon_greedy_choice(
            _jit.generator_pointers(rng), state["pulls"], state["reward_sums"], self.epsilon, self.decay, mask
        )
        return arm

    def replay_kernel(self, compiled: ModuleType) -> tuple[Callable[..., int], tuple[float, ...]]:
        return compiled.epsilon_greedy_replay, (self.epsilon, self.decay)

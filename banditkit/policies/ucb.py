"""Optimism in the face of uncertainty: play the arm with the highest upper confidence bound.

References: Auer, Cesa-Bianchi & Fischer, "Finite-time Analysis of the
Multiarmed Bandit Problem" (Machine Learning, 2002) for UCB1; Garivier &
Cappé, "The KL-UCB Algorithm for Bounded Stochastic Bandits and Beyond"
(COLT 2011) for KL-UCB.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from .._validation import check_real
from . import _jit
from .base import State, argmax_probabilities, argmax_random_ties, empirical_means
from .bounded import BoundedCountPolicy
from .registry import register


class IndexPolicy(BoundedCountPolicy):
    """A policy that plays the argmax of a per-arm index, ties broken uniformly at random.

    Its rewards lie in ``reward_range`` (default (0, 1)) and are learned mapped onto [0, 1], so
    indices are on that unit scale (see ``policies/bounded.py``).
    """

    @abstractmethod
    def indices(self, state: State) -> np.ndarray:
        """Per-arm index, shape (B, K); +inf for arms to try first."""

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        return argmax_probabilities(_rows(self.indices(state), mask), mask)

    def sample_numpy(self, state: State, rng: np.random.Generator, mask: BoolArray) -> IntArray:
        return argmax_random_ties(_rows(self.indices(state), mask), mask, rng)


def _rows(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scores of a one-row state repeated for every request row."""
    return np.broadcast_to(scores, mask.shape)


@register
class UCB1(IndexPolicy):
    """UCB1: mean + sqrt(2 ln t / n), natural log, every arm played once first.

    The mean is of rewards mapped from ``reward_range`` onto [0, 1], where the bonus is calibrated.

    >>> import numpy as np
    >>> policy = UCB1()
    >>> state = policy.update(policy.init_state(2), np.array([0, 1]), np.array([1.0, 0.0]))
    >>> policy.indices(state).round(4).tolist()
    [[2.1774, 1.1774]]
    """

    name = "ucb1"

    def indices(self, state: State) -> FloatArray:
        pulls = state["pulls"]
        total = pulls.sum(axis=1, keepdims=True)
        log_total = np.log(np.maximum(total, 1.0))
        bonus = np.sqrt(np.divide(2.0 * log_total, pulls, out=np.full(pulls.shape, np.inf), where=pulls > 0))
        indices: FloatArray = empirical_means(state) + bonus
        return indices

    def choose_compiled(self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray) -> int:
        arm: int = compiled.ucb1_choice(_jit.generator_pointers(rng), state["pulls"], state["reward_sums"], mask)
        return arm

    def sample_compiled(
        self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray
    ) -> IntArray:
        return _jit.choose_rows(compiled.ucb1_argmax, rng, mask, state["pulls"], state["reward_sums"])

    def replay_kernel(self, compiled: ModuleType) -> tuple[Callable[..., int], tuple[float, ...]]:
        return compiled.ucb1_replay, ()


def bernoulli_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL divergence between Bernoulli(p) and Bernoulli(q), with 0 log 0 = 0 (q in (0, 1))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        success = np.where(p > 0, p * np.log(p / q), 0.0)
        failure = np.where(p < 1, (1 - p) * np.log((1 - p) / (1 - q)), 0.0)
    return success + failure


@register
class KLUCB(IndexPolicy):
    """KL-UCB: the largest q with n * kl(mean, q) <= ln t + c ln ln t, for rewards mapped onto [0, 1].

    Solved by 50 bisection steps (error below 1e-15), vectorized over arms and rows.
    ``c = 0`` is the choice Garivier & Cappé recommend in practice (c = 3 in their theorem).

    >>> import numpy as np
    >>> policy = KLUCB()
    >>> state = policy.update(policy.init_state(2), np.array([0, 1]), np.array([1.0, 0.0]))
    >>> policy.indices(state).round(4).tolist()
    [[1.0, 0.5]]
    """

    name = "kl_ucb"

    def __init__(self, c: float = 0.0, reward_range: Sequence[float] = (0.0, 1.0)):
        self.c = check_real("c", c, low=0.0)
        super().__init__(reward_range)

    def indices(self, state: State) -> FloatArray:
        pulls = state["pulls"]
        total = pulls.sum(axis=1, keepdims=True)
        log_total = np.log(np.maximum(total, 1.0))
        log_log = np.log(np.maximum(log_total, 1.0))
        budget = np.divide(log_total + self.c * log_log, pulls, out=np.full(pulls.shape, np.inf), where=pulls > 0)
        means = np.clip(empirical_means(state), 0.0, 1.0)
        low, high = means.copy(), np.ones_like(means)
        for _ in range(50):
            middle = (low + high) / 2
            inside = bernoulli_kl(means, middle) <= budget
            low = np.where(inside, middle, low)
            high = np.where(inside, high, middle)
        return np.where(pulls > 0, low, np.inf)

    def choose_compiled(self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray) -> int:
        arm: int = compiled.kl_ucb_argmax(
            _jit.generator_pointers(rng), state["pulls"], state["reward_sums"], self.c, mask
        )
        return arm

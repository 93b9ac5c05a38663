"""Softmax (Boltzmann) exploration: play arms in proportion to exp(mean / temperature).

Reference: Sutton & Barto (2018), section 2.8; Cesa-Bianchi et al., "Boltzmann
Exploration Done Right" (NeurIPS 2017) on why a fixed temperature is not enough.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from .._validation import check_real
from . import _jit
from .base import State, categorical, empirical_means
from .counts import CountPolicy
from .registry import register


def masked_softmax(logits: FloatArray, mask: BoolArray) -> FloatArray:
    """Row-wise softmax over allowed entries by exp-normalize (no overflow); zero elsewhere."""
    shifted = np.where(mask, logits, -np.inf)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    distribution: FloatArray = weights / weights.sum(axis=1, keepdims=True)
    return distribution


@register
class Softmax(CountPolicy):
    """Probabilities proportional to exp(mean / temperature_t), temperature_t = temperature / (1 + anneal * t).

    t counts the rewards seen so far; ``anneal=0`` keeps the temperature fixed,
    ``anneal>0`` cools it so play concentrates on the best arm.

    >>> import numpy as np
    >>> policy = Softmax(temperature=1.0)
    >>> state = policy.update(policy.init_state(2), np.array([1]), np.array([1.0]))
    >>> policy.probabilities(state, np.ones((1, 2), dtype=bool)).round(4).tolist()
    [[0.2689, 0.7311]]
    """

    name = "softmax"

    def __init__(self, temperature: float = 0.1, anneal: float = 0.0):
        self.temperature = check_real("temperature", temperature, low=0.0, low_open=True)
        self.anneal = check_real("anneal", anneal, low=0.0)

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        steps = state["pulls"].sum(axis=1, keepdims=True)
        temperature = self.temperature / (1.0 + self.anneal * steps)
        return masked_softmax(np.broadcast_to(empirical_means(state) / temperature, mask.shape), mask)

    def sample_numpy(self, state: State, rng: np.random.Generator, mask: BoolArray) -> IntArray:
        return categorical(self.probabilities(state, mask), rng)

    def choose_compiled(self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray) -> int:
        arm: int = compiled.softmax_choice(
            _jit.generator_pointers(rng), state["pulls"], state["reward_sums"], self.temperature, self.anneal, mask
        )
        return arm

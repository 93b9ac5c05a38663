"""Policies for rewards in a known interval: they learn every reward mapped onto [0, 1].

UCB1, KL-UCB, Bayes-UCB, EXP3 and the Beta-Bernoulli Thompson samplers are
defined for rewards in [0, 1]. ``reward_range=(low, high)`` declares the
interval the rewards really come in (revenue in [0, 500], a rating in [1, 5]);
``update`` and ``update_one`` map each reward to ``(r - low) / (high - low)``
here, once, before any family's own learning (numpy or compiled) sees it. The
state therefore holds [0, 1] statistics whatever the range, so indices,
posteriors, propensities and merges are those of the unit policy, and
``means`` maps back to the rewards' own scale. For the default (0, 1) the map
is the identity, bit for bit.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from numbers import Real
from typing import TypeVar

import numpy as np

from .._typing import FloatArray, IntArray
from ..errors import InvalidParameterError, InvalidTypeError
from .base import Policy, State, add_count, add_counts, empirical_means
from .counts import CountPolicy

#: A float for one reward, an array for many.
_Rewards = TypeVar("_Rewards", float, FloatArray)


def check_reward_range(value: object) -> tuple[float, float]:
    """``value`` as a (low, high) pair of finite floats with low < high, or an error naming ``reward_range``."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise InvalidTypeError(f"reward_range must be a pair (low, high), got {value!r}", field="reward_range")
    if len(value) != 2:
        raise InvalidParameterError(f"reward_range must be a pair (low, high), got {value!r}", field="reward_range")
    low, high = value
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, Real):
            raise InvalidTypeError(
                f"reward_range must be two real numbers (low, high), got {value!r}", field="reward_range"
            )
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high and math.isfinite(high - low)):
        raise InvalidParameterError(
            f"reward_range must be finite (low, high) with low < high, got {value!r}", field="reward_range"
        )
    return low, high


class BoundedPolicy(Policy):
    """A policy for rewards in ``reward_range``, learned as rewards mapped onto [0, 1].

    A family implements :meth:`learn` (and :meth:`learn_one` when it has a
    faster form for one reward) on [0, 1] rewards, and :meth:`unit_means`;
    this class supplies ``update``, ``update_one`` and ``means`` around them.
    """

    #: The default interval, on the class too: a check that reads the registry's classes sees (0, 1).
    reward_range: tuple[float, float] = (0.0, 1.0)
    reward_bounds: tuple[float, float] = (0.0, 1.0)

    def __init__(self, reward_range: Sequence[float] = (0.0, 1.0)):
        self.reward_range = self.reward_bounds = check_reward_range(reward_range)

    def to_unit(self, rewards: _Rewards) -> _Rewards:
        """Rewards in ``reward_range`` mapped onto [0, 1] (a float, or an array of any shape)."""
        low, high = self.reward_range
        return (rewards - low) / (high - low)

    def reward_advice(self) -> str:
        example = f"{type(self).__name__}(reward_range=(0, 500))"
        return (
            f"; for rewards on another scale set reward_range=(low, high): {example} in Python, "
            f'"params": {{"reward_range": [0, 500]}} in the service'
        )

    # ---- learning on [0, 1] ------------------------------------------------
    @abstractmethod
    def learn(self, state: State, arms: IntArray, rewards: FloatArray, propensities: FloatArray | None) -> State:
        """:meth:`update` for ``rewards`` (n,) already mapped onto [0, 1]."""

    def learn_one(self, state: State, arm: int, reward: float, propensity: float | None) -> State:
        """:meth:`update_one` for one reward already mapped onto [0, 1]; by default :meth:`learn`."""
        return self.learn(
            state, np.array([arm]), np.array([reward]), None if propensity is None else np.array([propensity])
        )

    @abstractmethod
    def unit_means(self, state: State) -> FloatArray:
        """Point estimate of each arm's expected [0, 1] reward, shape (B, K)."""

    # ---- the protocol, on the rewards' own scale ---------------------------
    def update(
        self,
        state: State,
        arms: IntArray,
        rewards: FloatArray,
        *,
        propensities: FloatArray | None = None,
        context: FloatArray | None = None,
    ) -> State:
        return self.learn(state, arms, self.to_unit(rewards), propensities)

    def update_one(
        self,
        state: State,
        arm: int,
        reward: float,
        *,
        propensity: float | None = None,
        context: FloatArray | None = None,
    ) -> State:
        low, high = self.reward_range  # to_unit, inline: this runs once per served reward
        return self.learn_one(state, arm, (reward - low) / (high - low), propensity)

    def means(self, state: State, context: FloatArray | None = None) -> FloatArray:
        low, high = self.reward_range
        means: FloatArray = low + (high - low) * self.unit_means(state)
        return means


class BoundedCountPolicy(BoundedPolicy, CountPolicy):
    """A :class:`CountPolicy` for rewards in ``reward_range``: ``pulls`` and ``reward_sums`` of [0, 1] rewards."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        """A family that learns more than counts from one reward (its own ``learn_one``) maps, then calls it."""
        super().__init_subclass__(**kwargs)
        if "learn_one" in cls.__dict__ and "update_one" not in cls.__dict__:
            cls.update_one = BoundedPolicy.update_one  # type: ignore[method-assign]

    def learn(self, state: State, arms: IntArray, rewards: FloatArray, propensities: FloatArray | None) -> State:
        return add_counts(state, arms, rewards, self.squares)

    def learn_one(self, state: State, arm: int, reward: float, propensity: float | None) -> State:
        return add_count(state, arm, reward, self.squares)

    def update_one(
        self,
        state: State,
        arm: int,
        reward: float,
        *,
        propensity: float | None = None,
        context: FloatArray | None = None,
    ) -> State:
        # learn_one inline: every served reward passes here, and counts need no more (a family with its own
        # learn_one gets the generic form back: see __init_subclass__).
        low, high = self.reward_range
        return add_count(state, arm, (reward - low) / (high - low), self.squares)

    def unit_means(self, state: State) -> FloatArray:
        return empirical_means(state)

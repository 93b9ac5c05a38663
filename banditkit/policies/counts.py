"""The base of every policy that learns per-arm pull counts and reward sums.

Such a policy keeps ``pulls`` and ``reward_sums`` (and ``reward_sq_sums`` when
it needs a variance), each of shape (B, K), learns by adding to them, and
decides from them. What differs between the policies is only how a decision
is drawn; this base supplies the rest, and the choice between the compiled
one-request kernel (when numba is installed and loaded, see :mod:`._jit`) and
the numpy path, which give identical decisions.

A subclass implements :meth:`CountPolicy.sample_numpy` (its numpy decision
for any number of rows) and, when it has a compiled kernel,
:meth:`CountPolicy.choose_compiled` (one request on a one-row state),
:meth:`CountPolicy.sample_compiled` (any number of rows) and
:meth:`CountPolicy.replay_kernel` (the replay of a log in one compiled loop).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from types import ModuleType
from typing import ClassVar

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from . import _jit
from .base import Policy, State, add_count, add_counts, count_state, empirical_means


class CountPolicy(Policy):
    """A policy whose state is per-arm ``pulls`` and ``reward_sums``, learned by addition."""

    #: True when the state also keeps ``reward_sq_sums`` (the sum of squared rewards).
    squares: ClassVar[bool] = False

    def init_state(self, n_arms: int, batch: int = 1, n_features: int | None = None) -> State:
        return count_state(n_arms, batch, self.squares)

    @abstractmethod
    def sample_numpy(self, state: State, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
        """:meth:`sample` on the numpy path, one arm per row of ``mask`` (n, K)."""

    def choose_compiled(self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: np.ndarray) -> int:
        """:meth:`choose` through the compiled ``kernels`` module; by default (no kernel) the numpy path."""
        return int(self.sample_numpy(state, rng, mask)[0])

    def sample_compiled(
        self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: np.ndarray
    ) -> np.ndarray:
        """:meth:`sample` through the compiled ``kernels`` module for several rows; by default the numpy path."""
        return self.sample_numpy(state, rng, mask)

    def replay_kernel(self, compiled: ModuleType) -> tuple[Callable[..., int], tuple[float, ...]] | None:
        """The compiled loop of :meth:`replay` and the hyperparameters it takes; by default None (no loop).

        The loop is called as ``kernel(pointers, pulls, reward_sums, *hyperparameters, mask, logged, rewards,
        accepted)`` (see ``_jit_kernels.bernoulli_thompson_replay``): it decides each row with the kernel of
        :meth:`choose_compiled` and adds the counts of an accepted row to ``pulls`` and ``reward_sums`` in place
        (so a family that keeps ``reward_sq_sums`` has none).
        """
        return None

    def replay(
        self,
        state: State,
        rng: np.random.Generator,
        mask: BoolArray,
        logged: IntArray,
        rewards: FloatArray,
        context: FloatArray | None = None,
        limit: int | None = None,
    ) -> tuple[IntArray, State] | None:
        """The replay in the family's compiled loop (:meth:`replay_kernel`), once the compiled kernels are loaded.

        Loading them is left to the rule of :mod:`._jit`: a replay long enough to pay for it loads them
        along the way, on the per-row path, and the replays after it take this loop. Rewards are learned as
        :meth:`update_one` learns them: mapped from ``reward_range`` onto [0, 1] when the policy has one.
        """
        compiled = _jit.kernels()
        loop = None if compiled is None else self.replay_kernel(compiled)
        if loop is None or state["pulls"].shape[0] != 1:
            return None
        kernel, hyperparameters = loop
        learned = np.asarray(rewards, dtype=np.float64)
        if self.reward_range is not None:
            low, high = self.reward_range
            learned = (learned - low) / (high - low)
        new = {key: value.copy() for key, value in state.items()}
        accepted = np.empty(logged.shape[0] if limit is None else min(limit, logged.shape[0]), dtype=np.intp)
        steps = kernel(
            _jit.generator_pointers(rng),
            new["pulls"],
            new["reward_sums"],
            *hyperparameters,
            np.asarray(mask, dtype=bool)[0],
            np.ascontiguousarray(logged, dtype=np.intp),
            np.ascontiguousarray(learned),
            accepted,
        )
        return accepted[:steps], new

    def sample(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None = None
    ) -> IntArray:
        compiled = _jit.kernels()
        if compiled is None:
            return _jit.numpy_path(self.sample_numpy, state, rng, mask)
        if mask.shape[0] == 1 and state["pulls"].shape[0] == 1:
            return np.array([self.choose_compiled(compiled, state, rng, mask)])
        return self.sample_compiled(compiled, state, rng, mask)

    def choose(self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None = None) -> int:
        compiled = _jit.kernels()
        if compiled is None:
            return int(_jit.numpy_path(self.sample_numpy, state, rng, mask)[0])
        return self.choose_compiled(compiled, state, rng, mask)

    def update(
        self,
        state: State,
        arms: IntArray,
        rewards: FloatArray,
        *,
        propensities: FloatArray | None = None,
        context: FloatArray | None = None,
    ) -> State:
        return add_counts(state, arms, rewards, self.squares)

    def update_one(
        self,
        state: State,
        arm: int,
        reward: float,
        *,
        propensity: float | None = None,
        context: FloatArray | None = None,
    ) -> State:
        return add_count(state, arm, reward, self.squares)

    def means(self, state: State, context: FloatArray | None = None) -> FloatArray:
        return empirical_means(state)

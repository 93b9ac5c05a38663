"""Stochastic environments for the simulator: the environment protocol, Bernoulli and Gaussian arms.

An environment turns per-replication random streams into *draws* (the noise of
each step, contexts, delays), then answers three questions per step for a whole
block of replications at once: the expected reward of every arm, the realised
reward of the chosen arms, and the reference reward regret is measured against.

Common random numbers: a step's noise is one number per replication shared by
all arms (a uniform for Bernoulli, a standard normal for Gaussian), so two
policies run on the same draws face exactly the same luck, and the policy only
ever sees the arm it chose, so each arm's reward still has the right law.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_real
from ..errors import InvalidParameterError, InvalidTypeError


@dataclass(frozen=True)
class Chunk:
    """Draws for ``n_steps`` consecutive steps from ``start``: arrays of shape (n_steps, R, ...)."""

    start: int
    arrays: dict[str, np.ndarray]


def check_vector(name: str, values, *, low: float = -np.inf, high: float = np.inf, ndim: int = 1) -> np.ndarray:
    """Return ``values`` as a finite float array of ``ndim`` dimensions inside [low, high], or raise naming ``name``."""
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidTypeError(f"{name} must be numbers, got {values!r}", field=name) from error
    if array.ndim != ndim or array.size == 0:
        raise InvalidParameterError(f"{name} must be a non-empty {ndim}-d array, got shape {array.shape}", field=name)
    bad = ~np.isfinite(array) | (array < low) | (array > high)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        position = where[0] if ndim == 1 else where
        raise InvalidParameterError(
            f"{name} must be finite and in [{low}, {high}], got {array[where].item()!r} at position {position}",
            field=name,
        )
    return array


def bernoulli_kl(p: np.ndarray, q: float) -> np.ndarray:
    """Kullback-Leibler divergence KL(Bernoulli(p) || Bernoulli(q)), elementwise, for q in (0, 1)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


class Environment(ABC):
    """Base class of simulated environments; ``n_arms`` arms, rewards within ``reward_bounds``.

    The runner asks an environment for chunks of draws (one generator per replication, so a replication's
    rewards do not depend on how many run beside it), then for the expected and realised rewards of the arms
    the policies chose at each step.

    Examples
    --------
    >>> import numpy as np
    >>> from banditkit.sim import Bernoulli
    >>> env = Bernoulli([0.2, 0.5])
    >>> chunk = env.draw([np.random.default_rng(0), np.random.default_rng(1)], start=0, n_steps=5)
    >>> env.expected_rewards(chunk, step=0).tolist()
    [[0.2, 0.5]]
    >>> rewards, regret = env.outcome(chunk, 0, arms=np.array([1, 0]))  # replication 0 chose arm 1, 1 chose 0
    >>> regret.tolist()
    [0.0, 0.3]
    """

    n_arms: int
    #: Width of the context vector for contextual environments, None otherwise.
    n_features: int | None = None
    #: Closed interval every reward falls in; checked against each policy's accepted rewards.
    reward_bounds: tuple[float, float] = (0.0, 1.0)

    def check_horizon(self, horizon: int) -> None:  # noqa: B027 - an optional hook: most environments run forever
        """Raise if the environment cannot run ``horizon`` steps (e.g. a reward table too short)."""

    @abstractmethod
    def draw(self, rngs: Sequence[np.random.Generator], start: int, n_steps: int) -> Chunk:
        """Draws for steps [start, start + n_steps), one generator per replication (consumed in order)."""

    @abstractmethod
    def expected_rewards(self, chunk: Chunk, step: int) -> np.ndarray:
        """Expected reward of every arm at ``chunk.start + step``, shape (R or 1, K)."""

    @abstractmethod
    def rewards(self, chunk: Chunk, step: int, arms: np.ndarray, expected: np.ndarray) -> np.ndarray:
        """Realised rewards of the chosen ``arms`` (R,), given ``expected`` from :meth:`expected_rewards`."""

    def outcome(self, chunk: Chunk, step: int, arms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rewards (R,) of the chosen ``arms`` and their pseudo-regret (R,): reference minus chosen expectation."""
        expected = self.expected_rewards(chunk, step)
        chosen = expected[0, arms] if expected.shape[0] == 1 else expected[np.arange(arms.shape[0]), arms]
        return self.rewards(chunk, step, arms, expected), self.reference_rewards(expected) - chosen

    def contexts(self, chunk: Chunk, step: int) -> np.ndarray | None:
        """Context vectors shown to the policy at this step, shape (R, n_features), or None."""
        return None

    def reference_rewards(self, expected: np.ndarray) -> np.ndarray:
        """Expected reward regret is measured against (R or 1,): the best arm's at this step."""
        return expected.max(axis=1)

    def lower_bound_constant(self) -> float | None:
        """Lai-Robbins constant C with regret >= C log T asymptotically, where one is known."""
        return None

    def arrival_steps(self, time: int, chunk: Chunk, step: int) -> int | np.ndarray:
        """Step before whose decision the feedback of ``time`` arrives: the next one here.

        An int, or one per replication (R,); :class:`~banditkit.sim.Delayed` holds feedback back.
        """
        return time + 1

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """``{"kind": ..., **parameters}`` as JSON-ready values, stored with the results."""


def uniform_noise(rngs: Sequence[np.random.Generator], n_steps: int) -> np.ndarray:
    """One uniform per step and replication, shape (n_steps, R): the shared noise of Bernoulli arms."""
    return np.stack([rng.random(n_steps) for rng in rngs], axis=1)


class Bernoulli(Environment):
    """Arms paying 1 with probability ``means[k]`` and 0 otherwise.

    Parameters
    ----------
    means : array_like, shape (K,)
        Success probability of each arm, each in [0, 1].

    Examples
    --------
    >>> env = Bernoulli([0.2, 0.5])
    >>> round(env.lower_bound_constant(), 4)
    1.5565
    """

    def __init__(self, means: Sequence[float]):
        self.means = check_vector("means", means, low=0.0, high=1.0)
        self.n_arms = self.means.size
        self._expected = self.means[None, :]
        self._gaps = self.means.max() - self.means

    def draw(self, rngs, start, n_steps):
        return Chunk(start, {"uniform": uniform_noise(rngs, n_steps)})

    def outcome(self, chunk, step, arms):
        return (chunk.arrays["uniform"][step] < self.means[arms]).astype(np.float64), self._gaps[arms]

    def expected_rewards(self, chunk, step):
        return self._expected

    def rewards(self, chunk, step, arms, expected):
        return (chunk.arrays["uniform"][step] < self.means[arms]).astype(np.float64)

    def lower_bound_constant(self) -> float | None:
        """Sum over suboptimal arms of gap / KL(mean, best mean) (Lai and Robbins, 1985)."""
        best = self.means.max()
        if best >= 1.0 or best <= 0.0:
            return None
        worse = self.means[self.means < best]
        return float(np.sum((best - worse) / bernoulli_kl(worse, best)))

    def describe(self):
        return {"kind": "bernoulli", "means": self.means.tolist()}


class Gaussian(Environment):
    """Arms paying ``means[k] + sigma[k] * z`` with z standard normal.

    Parameters
    ----------
    means : array_like, shape (K,)
        Expected reward of each arm.
    sigma : float or array_like, shape (K,)
        Noise standard deviation, each > 0.

    Examples
    --------
    >>> Gaussian([0.0, 1.0], sigma=0.5).describe()
    {'kind': 'gaussian', 'means': [0.0, 1.0], 'sigma': [0.5, 0.5]}
    """

    reward_bounds = (-np.inf, np.inf)

    def __init__(self, means: Sequence[float], sigma: float | Sequence[float] = 1.0):
        self.means = check_vector("means", means)
        self.n_arms = self.means.size
        if np.ndim(sigma) == 0:
            sigma = [check_real("sigma", sigma, low=0.0, low_open=True)] * self.n_arms
        self.sigma = check_vector("sigma", sigma, low=np.finfo(float).tiny)
        if self.sigma.size != self.n_arms:
            raise InvalidParameterError(
                f"sigma must have one value per arm ({self.n_arms}), got {self.sigma.size}", field="sigma"
            )
        self._expected = self.means[None, :]
        self._gaps = self.means.max() - self.means

    def draw(self, rngs, start, n_steps):
        return Chunk(start, {"normal": np.stack([rng.standard_normal(n_steps) for rng in rngs], axis=1)})

    def expected_rewards(self, chunk, step):
        return self._expected

    def rewards(self, chunk, step, arms, expected):
        return self.means[arms] + self.sigma[arms] * chunk.arrays["normal"][step]

    def outcome(self, chunk, step, arms):
        return self.rewards(chunk, step, arms, self._expected), self._gaps[arms]

    def describe(self):
        return {"kind": "gaussian", "means": self.means.tolist(), "sigma": self.sigma.tolist()}

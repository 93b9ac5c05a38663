"""Contextual environments: each step shows a context x, arm k's expected reward depends on x . theta_k.

Contexts are drawn per replication and step as independent N(0, context_sigma^2 I)
vectors; regret is measured against the best arm *for that context*.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._validation import check_int, check_real
from .environments import Chunk, Environment, check_vector


def random_coefficients(n_arms: int, n_features: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Arm coefficients (K, d) drawn N(0, scale^2 / d), a reproducible problem for examples and benchmarks.

    The variance 1 / d keeps an arm's score ``x @ theta_k`` of the same spread whatever the number of features.

    Examples
    --------
    >>> from banditkit.sim import LinearContextual
    >>> coefficients = random_coefficients(3, 4, seed=0)
    >>> coefficients.shape, coefficients[0].round(2).tolist()
    ((3, 4), [0.06, -0.07, 0.32, 0.05])
    >>> LinearContextual(coefficients).n_features
    4
    """
    n_arms = check_int("n_arms", n_arms, low=1)
    n_features = check_int("n_features", n_features, low=1)
    scale = check_real("scale", scale, low=0.0, low_open=True)
    seed = check_int("seed", seed, low=0)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return rng.normal(0.0, scale / np.sqrt(n_features), size=(n_arms, n_features))


class _Contextual(Environment):
    """Shared draws and bookkeeping of the linear-score environments."""

    noise_name = "uniform"

    def __init__(self, coefficients, context_sigma: float):
        self.coefficients = check_vector("coefficients", coefficients, ndim=2)
        self.n_arms, self.n_features = self.coefficients.shape
        self.context_sigma = check_real("context_sigma", context_sigma, low=0.0, low_open=True)

    def draw(self, rngs, start, n_steps):
        contexts, noise = [], []
        for rng in rngs:
            contexts.append(rng.normal(0.0, self.context_sigma, size=(n_steps, self.n_features)))
            noise.append(rng.random(n_steps) if self.noise_name == "uniform" else rng.standard_normal(n_steps))
        return Chunk(start, {"context": np.stack(contexts, axis=1), self.noise_name: np.stack(noise, axis=1)})

    def contexts(self, chunk, step):
        return chunk.arrays["context"][step]

    def _scores(self, chunk: Chunk, step: int) -> np.ndarray:
        return chunk.arrays["context"][step] @ self.coefficients.T


class LinearContextual(_Contextual):
    """Expected reward ``x . theta_k``, observed with Gaussian noise of sd ``noise_sigma``.

    Parameters
    ----------
    coefficients : array_like, shape (K, d)
        Theta per arm.
    noise_sigma : float > 0
        Standard deviation of the reward noise.
    context_sigma : float > 0
        Standard deviation of each context feature.

    Examples
    --------
    >>> env = LinearContextual(random_coefficients(3, 4, seed=1))
    >>> env.n_arms, env.n_features
    (3, 4)
    """

    noise_name = "normal"
    reward_bounds = (-np.inf, np.inf)

    def __init__(self, coefficients: Sequence[Sequence[float]], noise_sigma: float = 0.1, context_sigma: float = 1.0):
        super().__init__(coefficients, context_sigma)
        self.noise_sigma = check_real("noise_sigma", noise_sigma, low=0.0, low_open=True)

    def expected_rewards(self, chunk, step):
        return self._scores(chunk, step)

    def rewards(self, chunk, step, arms, expected):
        rows = np.arange(arms.shape[0])
        return expected[rows, arms] + self.noise_sigma * chunk.arrays["normal"][step]

    def describe(self):
        return {
            "kind": "linear_contextual",
            "coefficients": self.coefficients.tolist(),
            "noise_sigma": self.noise_sigma,
            "context_sigma": self.context_sigma,
        }


class LogisticContextual(_Contextual):
    """Binary rewards with success probability ``sigmoid(x . theta_k)`` (clicks given features).

    Parameters
    ----------
    coefficients : array_like, shape (K, d)
        Theta per arm.
    context_sigma : float > 0
        Standard deviation of each context feature.

    Examples
    --------
    >>> env = LogisticContextual([[1.0, 0.0], [0.0, 1.0]])
    >>> env.reward_bounds
    (0.0, 1.0)
    """

    def __init__(self, coefficients: Sequence[Sequence[float]], context_sigma: float = 1.0):
        super().__init__(coefficients, context_sigma)

    def expected_rewards(self, chunk, step):
        # Clipping keeps exp finite; sigmoid(+-40) is 0 or 1 to double precision anyway.
        return 1.0 / (1.0 + np.exp(-np.clip(self._scores(chunk, step), -40.0, 40.0)))

    def rewards(self, chunk, step, arms, expected):
        rows = np.arange(arms.shape[0])
        return (chunk.arrays["uniform"][step] < expected[rows, arms]).astype(np.float64)

    def describe(self):
        return {
            "kind": "logistic_contextual",
            "coefficients": self.coefficients.tolist(),
            "context_sigma": self.context_sigma,
        }

"""Thompson sampling: play each arm with the posterior probability that it is the best.

References: Thompson (1933); Chapelle & Li, "An Empirical Evaluation of
Thompson Sampling" (NeurIPS 2011); Agrawal & Goyal, "Analysis of Thompson
Sampling for the Multi-armed Bandit Problem" (COLT 2012).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from .._validation import check_real
from . import _jit
from ._maxprob import BetaPosteriors, StudentPosteriors, broadcast_rows, max_probabilities
from .base import State, batch_rows
from .counts import CountPolicy
from .registry import register


def beta_argmax(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Arm of the largest Beta(alpha, beta) draw per row; alpha, beta (B, K), mask (n, K); compiled once loaded."""
    compiled = _jit.kernels()
    if compiled is not None:
        return _jit.choose_rows(compiled.beta_argmax, rng, mask, alpha, beta)
    return _jit.numpy_path(beta_argmax_numpy, alpha, beta, rng, mask)


def beta_argmax_numpy(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> IntArray:
    """:func:`beta_argmax` on the numpy path."""
    draws = rng.beta(alpha, beta, size=mask.shape)
    arms: IntArray = np.where(mask, draws, -np.inf).argmax(axis=1)
    return arms


def beta_max_probabilities(alpha: np.ndarray, beta: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Exact Thompson-sampling action distribution for Beta posteriors (B, K), shape (n, K)."""
    return broadcast_rows(
        lambda rows, m: max_probabilities(BetaPosteriors(alpha[rows], beta[rows]), m), alpha.shape[0], mask
    )


@register
class ThompsonSampling(CountPolicy):
    """Beta-Bernoulli Thompson sampling with a Beta(prior_alpha, prior_beta) prior per arm.

    Each round draws one success rate per arm from its posterior and plays the
    largest. Rewards in [0, 1] use the *fractional* update (alpha += r,
    beta += 1 - r): exact for 0/1 rewards, deterministic and additive for
    fractional ones (unlike the Bernoulli trick, which spends randomness).

    >>> import numpy as np
    >>> policy = ThompsonSampling()
    >>> state = policy.update(policy.init_state(2), np.array([0, 0]), np.array([1.0, 1.0]))
    >>> policy.means(state).round(3).tolist()
    [[0.75, 0.5]]
    """

    name = "thompson"
    reward_bounds = (0.0, 1.0)

    def __init__(self, prior_alpha: float = 1.0, prior_beta: float = 1.0):
        self.prior_alpha = check_real("prior_alpha", prior_alpha, low=0.0, low_open=True)
        self.prior_beta = check_real("prior_beta", prior_beta, low=0.0, low_open=True)

    def posterior(self, state: State) -> tuple[np.ndarray, np.ndarray]:
        """Beta parameters (alpha, beta), each (B, K)."""
        successes = state["reward_sums"]
        return self.prior_alpha + successes, self.prior_beta + state["pulls"] - successes

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        return beta_max_probabilities(*self.posterior(state), mask)

    def sample_numpy(self, state: State, rng: np.random.Generator, mask: BoolArray) -> IntArray:
        return beta_argmax_numpy(*self.posterior(state), rng, mask)

    def choose_compiled(self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray) -> int:
        arm: int = compiled.bernoulli_thompson_choice(
            _jit.generator_pointers(rng), state["pulls"], state["reward_sums"], self.prior_alpha, self.prior_beta, mask
        )
        return arm

    def sample_compiled(
        self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray
    ) -> IntArray:
        return _jit.choose_rows(
            compiled.bernoulli_thompson_argmax,
            rng,
            mask,
            state["pulls"],
            state["reward_sums"],
            self.prior_alpha,
            self.prior_beta,
        )

    def means(self, state: State, context: FloatArray | None = None) -> FloatArray:
        alpha, beta = self.posterior(state)
        means: FloatArray = alpha / (alpha + beta)
        return means


@register
class GaussianThompsonSampling(CountPolicy):
    """Thompson sampling for real-valued rewards of unknown mean and variance (Normal-Gamma prior).

    Prior: precision ~ Gamma(prior_shape, prior_rate), mean | precision ~
    Normal(prior_mean, 1 / (prior_count * precision)). The posterior of each
    arm's mean is a Student-t, drawn directly. State is counts, sums and sums
    of squares, so updates add; the spread is computed as
    max(sum_sq - sum^2 / n, 0), which stays finite for rewards up to 1e100.

    Reference: Murphy, "Conjugate Bayesian analysis of the Gaussian
    distribution" (2007), section 3; Honda & Takemura (2014).

    >>> import numpy as np
    >>> policy = GaussianThompsonSampling()
    >>> state = policy.update(policy.init_state(2), np.array([1, 1]), np.array([10.0, 12.0]))
    >>> policy.means(state).round(2).tolist()
    [[0.0, 10.95]]
    """

    name = "gaussian_thompson"
    reward_bounds = (-1e100, 1e100)
    squares = True

    def __init__(
        self, prior_mean: float = 0.0, prior_count: float = 0.01, prior_shape: float = 1.0, prior_rate: float = 1.0
    ):
        self.prior_mean = check_real("prior_mean", prior_mean)
        self.prior_count = check_real("prior_count", prior_count, low=0.0, low_open=True)
        self.prior_shape = check_real("prior_shape", prior_shape, low=0.0, low_open=True)
        self.prior_rate = check_real("prior_rate", prior_rate, low=0.0, low_open=True)

    def posterior(self, state: State) -> StudentPosteriors:
        """Student-t posterior of each arm's mean: loc, scale and degrees of freedom, each (B, K)."""
        pulls, sums = state["pulls"], state["reward_sums"]
        count = self.prior_count + pulls
        loc = (self.prior_count * self.prior_mean + sums) / count
        mean = np.divide(sums, pulls, out=np.zeros_like(sums), where=pulls > 0)
        spread = np.maximum(state["reward_sq_sums"] - sums * mean, 0.0)
        shape = self.prior_shape + pulls / 2
        rate = self.prior_rate + spread / 2 + self.prior_count * pulls * (mean - self.prior_mean) ** 2 / (2 * count)
        return StudentPosteriors(loc, np.sqrt(rate / (shape * count)), 2 * shape)

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        t = self.posterior(state)

        def compute(rows: IntArray, m: BoolArray) -> FloatArray:
            # Which arm is largest does not change when every location moves by the same amount; measured
            # from the best allowed arm, posteriors narrower than float spacing at their location (rewards
            # of 1e12, scale 1e-5) stay apart, where at 1e12 they would fall on the same grid points.
            loc = t.loc[rows]
            best = np.where(m, loc, -np.inf).max(axis=1, keepdims=True)
            centred = loc - np.where(np.isfinite(best), best, 0.0)
            return max_probabilities(StudentPosteriors(centred, t.scale[rows], t.dof[rows]), m)

        return broadcast_rows(compute, t.loc.shape[0], mask)

    def sample_numpy(self, state: State, rng: np.random.Generator, mask: BoolArray) -> IntArray:
        t = self.posterior(state)
        rows = batch_rows(state, mask.shape[0])
        draws = t.loc[rows] + t.scale[rows] * rng.standard_t(t.dof[rows])
        arms: IntArray = np.where(mask, draws, -np.inf).argmax(axis=1)
        return arms

    def choose_compiled(self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray) -> int:
        arm: int = compiled.gaussian_thompson_argmax(
            _jit.generator_pointers(rng),
            state["pulls"],
            state["reward_sums"],
            state["reward_sq_sums"],
            self.prior_mean,
            self.prior_count,
            self.prior_shape,
            self.prior_rate,
            mask,
        )
        return arm

    def means(self, state: State, context: FloatArray | None = None) -> FloatArray:
        return self.posterior(state).loc

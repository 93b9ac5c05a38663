"""Thompson sampling: play each arm with the posterior probability that it is the best.

References: Thompson (1933); Chapelle & Li, "An Empirical Evaluation of
Thompson Sampling" (NeurIPS 2011); Agrawal & Goyal, "Analysis of Thompson
Sampling for the Multi-armed Bandit Problem" (COLT 2012).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from .._validation import check_real
from . import _jit
from ._maxprob import BetaPosteriors, StudentPosteriors, broadcast_rows, max_probabilities
from .base import State, batch_rows
from .bounded import BoundedCountPolicy
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
class ThompsonSampling(BoundedCountPolicy):
    """Beta-Bernoulli Thompson sampling with a Beta(prior_alpha, prior_beta) prior per arm.

    Each round draws one success rate per arm from its posterior and plays the
    largest. Rewards in [0, 1] use the *fractional* update (alpha += r,
    beta += 1 - r): exact for 0/1 rewards, deterministic and additive for
    fractional ones (unlike the Bernoulli trick, which spends randomness).
    Rewards in another interval ``reward_range`` are mapped onto [0, 1] first.

    >>> import numpy as np
    >>> policy = ThompsonSampling()
    >>> state = policy.update(policy.init_state(2), np.array([0, 0]), np.array([1.0, 1.0]))
    >>> policy.means(state).round(3).tolist()
    [[0.75, 0.5]]
    """

    name = "thompson"

    def __init__(self, prior_alpha: float = 1.0, prior_beta: float = 1.0, reward_range: Sequence[float] = (0.0, 1.0)):
        self.prior_alpha = check_real("prior_alpha", prior_alpha, low=0.0, low_open=True)
        self.prior_beta = check_real("prior_beta", prior_beta, low=0.0, low_open=True)
        super().__init__(reward_range)

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

    def replay_kernel(self, compiled: ModuleType) -> tuple[Callable[..., int], tuple[float, ...]]:
        return compiled.bernoulli_thompson_replay, (self.prior_alpha, self.prior_beta)

    def unit_means(self, state: State) -> FloatArray:
        alpha, beta = self.posterior(state)
        means: FloatArray = alpha / (alpha + beta)
        return means


@register
class GaussianThompsonSampling(CountPolicy):
    """Thompson sampling for real-valued rewards of unknown mean and variance (Normal-Gamma prior).

    Prior per arm: precision ~ Gamma(prior_shape, rate), mean | precision ~
    Normal(location, 1 / (prior_count * precision)); the posterior of each
    arm's mean is a Student-t with 2 * prior_shape + n degrees of freedom,
    drawn directly. By default the prior takes its location and scale from the
    rewards of all arms so far (empirical Bayes): the location is their mean
    and the rate prior_shape times their variance, so the prior is as wide as
    the rewards are, whatever their unit. An arm's posterior is then never
    narrower than the one a single variance shared by all arms gives (learned
    from every reward, 2 * prior_shape + N degrees of freedom): a run of equal
    rewards (no conversion yet) does not make an arm look certain. Multiplying
    every reward by c > 0 and adding d changes no decision and no propensity.
    Before two different rewards have been seen the scale is 1; every arm then
    has the same location, so that unit cannot change a decision either.
    ``prior_mean`` and ``prior_rate`` fix the prior instead; with a fixed
    ``prior_rate`` the posterior is the plain conjugate one. See
    docs/policies.md, "Gaussian Thompson sampling's prior", for the reasons.

    State is counts, sums and sums of squares, so updates add (the prior is a
    function of those sums); spreads are computed as max(sum_sq - sum^2 / n,
    0), which stays finite for rewards up to 1e100.

    Parameters
    ----------
    prior_mean : float or None
        Location of the prior on each arm's mean; None: the mean of every reward so far (0 before any).
    prior_count : float > 0
        How many rewards the prior on the mean is worth.
    prior_shape : float > 0
        Gamma shape of the prior on the precision: the prior variance is worth 2 * prior_shape rewards.
    prior_rate : float > 0 or None
        Gamma rate of the prior on the precision; None: prior_shape times the variance of every reward so far.

    References
    ----------
    Murphy, "Conjugate Bayesian analysis of the Gaussian
    distribution" (2007), section 3; Honda & Takemura (2014); Efron & Morris
    (1973) and Smyth (2004) for priors estimated from all arms; Agrawal &
    Goyal (2013) for Gaussian posteriors with one variance for all arms.

    Examples
    --------
    >>> import numpy as np
    >>> policy = GaussianThompsonSampling()
    >>> state = policy.update(policy.init_state(2), np.array([0, 1, 1]), np.array([0.0, 10.0, 12.0]))
    >>> policy.means(state).round(2).tolist()  # shrunk towards the mean of all rewards, 22 / 3
    [[3.67, 9.78]]
    """

    name = "gaussian_thompson"
    reward_bounds = (-1e100, 1e100)
    squares = True

    def __init__(
        self,
        prior_mean: float | None = None,
        prior_count: float = 1.0,
        prior_shape: float = 1.0,
        prior_rate: float | None = None,
    ):
        self.prior_mean = None if prior_mean is None else check_real("prior_mean", prior_mean)
        self.prior_count = check_real("prior_count", prior_count, low=0.0, low_open=True)
        self.prior_shape = check_real("prior_shape", prior_shape, low=0.0, low_open=True)
        self.prior_rate = None if prior_rate is None else check_real("prior_rate", prior_rate, low=0.0, low_open=True)

    def prior(self, state: State) -> tuple[FloatArray | float, FloatArray | float]:
        """The prior's location and Gamma rate: the fixed values, or per state row (B, 1) from all its rewards."""
        if self.prior_mean is not None and self.prior_rate is not None:
            return self.prior_mean, self.prior_rate
        pulls = state["pulls"].sum(axis=1, keepdims=True)
        sums = state["reward_sums"].sum(axis=1, keepdims=True)
        mean = np.divide(sums, pulls, out=np.zeros_like(sums), where=pulls > 0)
        spread = np.maximum(state["reward_sq_sums"].sum(axis=1, keepdims=True) - sums * mean, 0.0)
        variance = np.divide(spread, np.maximum(pulls - 1.0, 1.0), out=np.ones_like(spread), where=spread > 0)
        location = mean if self.prior_mean is None else self.prior_mean
        rate = self.prior_shape * variance if self.prior_rate is None else self.prior_rate
        return location, rate

    def posterior(self, state: State) -> StudentPosteriors:
        """Student-t posterior of each arm's mean: loc, scale and degrees of freedom, each (B, K)."""
        prior_mean, prior_rate = self.prior(state)
        pulls, sums = state["pulls"], state["reward_sums"]
        count = self.prior_count + pulls
        loc = (self.prior_count * prior_mean + sums) / count
        mean = np.divide(sums, pulls, out=np.zeros_like(sums), where=pulls > 0)
        spread = np.maximum(state["reward_sq_sums"] - sums * mean, 0.0)
        shape = self.prior_shape + pulls / 2
        rate = prior_rate + spread / 2 + self.prior_count * pulls * (mean - prior_mean) ** 2 / (2 * count)
        scale, dof = np.sqrt(rate / (shape * count)), 2 * shape
        if self.prior_rate is not None:
            return StudentPosteriors(loc, scale, dof)
        # The same means under one variance for all arms, learned from every reward: squared distances of the
        # rewards and of the prior's pseudo-reward from each arm's posterior mean (the conjugate rate's terms),
        # over N. An arm is never taken to be surer of its mean than that model is.
        rewards = pulls.sum(axis=1, keepdims=True)
        common = (spread + self.prior_count * pulls * (mean - prior_mean) ** 2 / count).sum(axis=1, keepdims=True)
        variance = np.divide(common, rewards, out=np.ones_like(common), where=common > 0)
        common_scale = np.sqrt(variance / count)
        wider = common_scale > scale
        return StudentPosteriors(
            loc, np.where(wider, common_scale, scale), np.where(wider, 2 * self.prior_shape + rewards, dof)
        )

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
            np.nan if self.prior_mean is None else self.prior_mean,  # NaN: the kernel sets it from the rewards
            self.prior_count,
            self.prior_shape,
            np.nan if self.prior_rate is None else self.prior_rate,
            mask,
        )
        return arm

    def means(self, state: State, context: FloatArray | None = None) -> FloatArray:
        return self.posterior(state).loc

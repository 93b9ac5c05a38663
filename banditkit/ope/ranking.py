"""Per-position action distribution of a Thompson-sampling ranker over Beta posteriors.

A ranking Thompson sampler draws ``theta_k ~ Beta(alpha_k, beta_k)`` for each
of K items and shows the L largest draws in order. Item k lands in position l
(0-based) exactly when l of the other draws exceed its own:

    P(k at l) = integral f_k(x) * P(exactly l of {theta_j, j != k} > x) dx.

The inner probability is a Poisson-binomial count, computed for every item at
once with prefix and suffix dynamic programmes truncated at L; the integral
runs over the log-odds of x, as the single-position propensities of
:mod:`banditkit.policies.thompson` do, on Gauss-Legendre panels broken at
every posterior's quantiles. The Monte-Carlo alternative ranks ``n_draws``
posterior samples and reports its standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray
from .._validation import check_int
from ..errors import InvalidParameterError
from ..policies._maxprob import BetaPosteriors

_TAILS = np.array([1e-12, 1e-9, 1e-6, 1e-4, 1e-2, 0.1, 0.3])  # and their mirror images, and the median
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)


@dataclass(frozen=True, eq=False)
class RankingDistribution:
    """P(item k shown at position l) of a ranking policy, the target of a position-based evaluation.

    probabilities : (K, L), column l sums to 1; standard_error : (K, L), zeros when exact;
    method : how it was computed ("exact" or "monte_carlo"); n_draws : the Monte-Carlo draws, or None.

    Examples
    --------
    >>> from banditkit.ope import thompson_ranking_distribution
    >>> ranking = thompson_ranking_distribution([2.0, 1.0, 1.0], [1.0, 1.0, 2.0], n_positions=2)
    >>> ranking.method, ranking.probabilities.round(4).tolist()
    ('exact', [[0.6, 0.3], [0.3, 0.4], [0.1, 0.3]])
    >>> ranking.for_rows(5).shape  # the same distribution on every logged row
    (5, 3, 2)
    """

    probabilities: np.ndarray
    standard_error: np.ndarray
    method: str
    n_draws: int | None = None

    def for_rows(self, n_rows: int = 1) -> np.ndarray:
        """The same distribution for every row, shape (n_rows, K, L) (a read-only broadcast view)."""
        return np.broadcast_to(self.probabilities, (n_rows, *self.probabilities.shape))


def thompson_ranking_distribution(
    alpha: ArrayLike,
    beta: ArrayLike,
    n_positions: int,
    *,
    method: str = "exact",
    rng: np.random.Generator | None = None,
    n_draws: int = 100_000,
) -> RankingDistribution:
    """P(item k shown at position l) for a Thompson ranker with Beta(alpha, beta) posteriors.

    Parameters
    ----------
    alpha, beta : array, shape (K,)
        Posterior parameters, all > 0.
    n_positions : int
        Number of positions L filled by the L largest draws (1 <= L <= K).
    method : "exact" (quadrature, error below 1e-8) or "monte_carlo" (needs ``rng``).
    rng : numpy.random.Generator
        Source of the posterior draws for ``method="monte_carlo"``.
    n_draws : int
        Monte-Carlo rankings; the standard error of each probability is sqrt(p (1 - p) / n_draws).

    Examples
    --------
    >>> exact = thompson_ranking_distribution([2.0, 1.0, 1.0], [1.0, 1.0, 2.0], 2)
    >>> exact.probabilities.sum(axis=0).round(9).tolist()
    [1.0, 1.0]
    >>> print(exact.probabilities[:, 0].round(4))
    [0.6 0.3 0.1]
    """
    alpha, beta = _check_parameters(alpha, beta)
    n_positions = check_int("n_positions", n_positions, low=1, high=alpha.shape[0])
    if method == "exact":
        probabilities = _exact(alpha, beta, n_positions)
        return RankingDistribution(probabilities, np.zeros_like(probabilities), "exact")
    if method == "monte_carlo":
        if not isinstance(rng, np.random.Generator):
            raise InvalidParameterError("method='monte_carlo' needs rng=numpy.random.Generator")
        n_draws = check_int("n_draws", n_draws, low=1)
        probabilities = _monte_carlo(alpha, beta, n_positions, rng, n_draws)
        error = np.sqrt(probabilities * (1 - probabilities) / n_draws)
        return RankingDistribution(probabilities, error, "monte_carlo", n_draws)
    raise InvalidParameterError(f"method must be 'exact' or 'monte_carlo', got {method!r}")


def _check_parameters(alpha: ArrayLike, beta: ArrayLike) -> tuple[FloatArray, FloatArray]:
    alphas, betas = np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    if alphas.ndim != 1 or alphas.shape != betas.shape:
        raise InvalidParameterError(f"alpha and beta must be 1-d of one length, got {alphas.shape} and {betas.shape}")
    for name, values in (("alpha", alphas), ("beta", betas)):
        if not (np.isfinite(values).all() and (values > 0).all()):
            raise InvalidParameterError(f"{name} must be finite and > 0, got {values[~(values > 0)][:1]}")
    return alphas, betas


def _grid(posteriors: BetaPosteriors) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights in log-odds, on panels broken at every item's quantiles."""
    breaks = np.unique(posteriors.quantiles(_TAILS).ravel())
    left, width = breaks[:-1], np.diff(breaks)
    nodes = (left[:, None] + width[:, None] * (_NODES + 1) / 2).ravel()
    weights = (width[:, None] * _WEIGHTS / 2).ravel()
    return nodes, weights


def _exact(alpha: np.ndarray, beta: np.ndarray, n_positions: int) -> np.ndarray:
    posteriors = BetaPosteriors(alpha[None], beta[None])
    nodes, weights = _grid(posteriors)
    rows = np.zeros(nodes.shape, dtype=np.intp)
    below = posteriors.cdf(nodes, rows).T  # (K, G): P(theta_j <= x)
    density = posteriors.pdf(nodes, rows).T  # (K, G), density of the log-odds
    prefix = _count_distributions(below, n_positions)  # (K+1, L, G), items < k
    suffix = _count_distributions(below[::-1], n_positions)[::-1]  # (K+1, L, G), items >= k
    n_items = alpha.shape[0]
    probabilities = np.empty((n_items, n_positions))
    for position in range(n_positions):
        # P(exactly `position` others exceed x) = sum over the split of the count before and after k.
        others = sum(prefix[:-1, c] * suffix[1:, position - c] for c in range(position + 1))
        probabilities[:, position] = (density * others) @ weights
    probabilities = np.maximum(probabilities, 0.0)
    distributions: FloatArray = probabilities / probabilities.sum(axis=0, keepdims=True)
    return distributions


def _count_distributions(below: np.ndarray, n_positions: int) -> np.ndarray:
    """P(c of the first k items exceed x) for c < L, every k in 0..K: shape (K+1, L, G)."""
    n_items, n_nodes = below.shape
    out = np.zeros((n_items + 1, n_positions, n_nodes))
    out[0, 0] = 1.0
    for k in range(n_items):
        out[k + 1] = out[k] * below[k]
        out[k + 1, 1:] += out[k, :-1] * (1.0 - below[k])
    return out


def _monte_carlo(
    alpha: FloatArray, beta: FloatArray, n_positions: int, rng: np.random.Generator, n_draws: int
) -> FloatArray:
    n_items = alpha.shape[0]
    counts = np.zeros((n_items, n_positions))
    for start in range(0, n_draws, 20_000):
        size = min(20_000, n_draws - start)
        draws = rng.beta(alpha, beta, size=(size, n_items))
        top = np.argsort(-draws, axis=1)[:, :n_positions]
        for position in range(n_positions):
            counts[:, position] += np.bincount(top[:, position], minlength=n_items)
    return counts / n_draws

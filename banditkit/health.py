"""Experiment health that survives adaptive allocation and peeking, from each arm's reward sums.

``Bandit.stats()`` and the service's ``/stats`` report, per arm, two intervals
for the mean reward:

* the fixed-n interval (``low``, ``high``): 95% for a sample size fixed in
  advance and looked at once (Wilson's score interval for rewards in a known
  range, Student's normal interval otherwise). Looked at after every reward
  of an adaptive experiment it misses far more often than 5%.
* the confidence sequence (``cs_low``, ``cs_high``): 95% *anytime-valid*, so
  with probability at least 0.95 it holds the arm's true mean at every
  sample size at once. It may be read after every reward, and an experiment
  stopped whenever it looks decided, without losing its coverage.

The confidence sequence, for rewards in a known range [lo, hi] mapped onto
y = (x - lo) / (hi - lo) in [0, 1], is the set of means m where the posterior
density of a uniform prior after n rewards of sum s stays above alpha:

    CS_n = {m : m^s (1 - m)^(n - s) / B(s + 1, n - s + 1) > alpha}.

Its reciprocal density is the mixture over p ~ Uniform(0, 1) of the
likelihood ratios prod_i (p / m)^y_i ((1 - p) / (1 - m))^(1 - y_i) (Robbins
1970's mixture method; Howard, Ramdas, McAuliffe & Sekhon 2021, the
beta-binomial conjugate mixture; Waudby-Smith & Ramdas 2020 call it the
prior-posterior ratio). For any y in [0, 1] of conditional mean m each factor
has expectation at most 1, because a^y b^(1 - y) is convex in y
(Hoeffding 1963: bounded rewards are sub-Bernoulli), so the mixture is a
nonnegative supermartingale at the true mean and Ville's inequality bounds the
chance that it ever exceeds 1 / alpha by alpha. The set holds the observed
mean always and is an interval, since the log density is concave in the
log-odds. For 0/1 rewards it is exact likelihood; for fractional rewards it is
conservative. It needs only n and the sum, unlike empirical-Bernstein or
betting sequences, which need every reward in order. Its width adapts to
the mean: after a million rewards at a 2% rate it is 2.8 times narrower than
the sub-Gaussian normal-mixture boundary with sigma = (hi - lo) / 2 tuned for
that sample size (Howard et al. 2021), and at a 50% rate 1.2 times wider.

Adaptive allocation keeps it valid. Each arm's rewards are a sequence in
the arm's own clock (its 1st, 2nd, ... reward); whenever the policy chooses
the arm, the next reward has the arm's mean given everything before, so the
mixture above is a supermartingale along that clock and the bound holds for
every n at once, in particular at the random number of pulls the policy gave
the arm (the "stack of rewards" view of a bandit, Lattimore & Szepesvari
2020, chapter 4). This assumes the arm's reward
distribution does not change over time; contextual policies have no single
mean per arm, so none of these numbers is reported for them.

Rewards without a known range have no confidence sequence here: without a
bound on their tails none is valid (``cs_low`` and ``cs_high`` are None).
Declare ``reward_range`` to get one.

``p_best`` and ``p_beats_default`` come from independent posteriors of the
arms' means, integrated by the deterministic quadrature of Thompson
sampling's propensities (``policies/_maxprob.py``): Beta(1 + s, 1 + n - s)
for rewards in a known range (the uniform prior of the confidence sequence,
for every policy alike: they are read from the Bandit's ledger of rewards,
not from the policy's state), and for others the Student-t posterior
t_(n-1)(mean, s^2 / n) of the noninformative prior p(mu, sigma^2) ~
1 / sigma^2 (Gelman et al., Bayesian Data Analysis, 3rd ed., section 3.2),
which needs two distinct rewards per arm; three are asked for, so that the
quadrature is accurate (``_STUDENT_MIN_PULLS``). An arm short of them makes
``p_best`` None for every arm. Nothing draws random numbers: the same sums
give the same numbers.

The cumulative regret so far, R = sum_k n_k (mu* - mu_k) over the rewards
observed, is estimated by the observed means, N max_k mean_k - total reward
(what always playing the arm with the best observed mean would have earned,
less what was earned), and bounded by its smallest and largest value over
the box of every arm's confidence sequence at level alpha / K. By the union
bound every mean then lies in its box at every step with probability
1 - alpha, so the interval is anytime-valid for the regret too.

References: Robbins, "Statistical methods related to the law of the iterated
logarithm", Ann. Math. Statist. 41 (1970); Howard, Ramdas, McAuliffe &
Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Ann. Statist. 49 (2021); Waudby-Smith & Ramdas, "Confidence sequences for
sampling without replacement", NeurIPS (2020); Hoeffding, "Probability
inequalities for sums of bounded random variables", JASA 58 (1963);
Lattimore & Szepesvari, "Bandit Algorithms" (2020).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike

from ._typing import BoolArray, FloatArray
from .errors import InvalidParameterError
from .policies._maxprob import BetaPosteriors, StudentPosteriors, max_probabilities

#: Level of every interval reported: 95%.
LEVEL = 0.95
#: Error rate of the intervals, 1 - LEVEL.
ALPHA = 1.0 - LEVEL
_Z95 = 1.959963984540054  # standard normal 97.5% quantile
_NEWTON_ROUNDS = 60  # Newton converges in 4 to 8; the rest is a guard
# Log-odds the root finder stays within: the mode of 1e-320 successes in 1e100 pulls is at -967, and
# expit(-1000) is 0 in double precision.
_LOG_ODDS_LIMIT = 1000.0
# Rewards an arm needs for its Student posterior (n - 1 >= 2 degrees of freedom): with two the posterior is a
# Cauchy, whose tails the quadrature of policies/_maxprob.py resolves only to a few percent (checked with
# scipy's adaptive quad: P(t_1(2, 1) > t_1(1, 1)) comes out 0.588 for 0.648); from 1.3 on it agrees to 1e-9.
_STUDENT_MIN_PULLS = 3
_MEMO_SIZE = 64  # ledgers remembered by assess_ledger: a few per experiment being watched


def fixed_n_interval(
    pulls: ArrayLike, sums: ArrayLike, sq_sums: ArrayLike, bounds: tuple[float, float] | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Mean and 95% fixed-n interval of each arm's rewards, arrays of the shape of ``pulls`` (NaN before data).

    Valid for a sample size fixed in advance, not for one an adaptive policy
    chose or for looking after every reward (see the module docstring). For
    rewards in known ``bounds``: Wilson's score interval on them mapped onto
    [0, 1], mapped back; otherwise the normal interval with the sample
    variance, which needs two rewards.

    >>> mean, low, high = fixed_n_interval([10], [7.0], [7.0], (0.0, 1.0))
    >>> [round(float(x), 4) for x in (mean[0], low[0], high[0])]
    [0.7, 0.3968, 0.8922]
    """
    n, total, sq_total = (np.asarray(value, dtype=float) for value in (pulls, sums, sq_sums))
    seen = n > 0
    safe_n = np.where(seen, n, 1.0)
    mean = np.where(seen, total / safe_n, np.nan)
    z = _Z95
    if bounds is not None:
        lo, hi = bounds
        width = hi - lo
        p = np.clip((mean - lo) / width, 0.0, 1.0)
        centre = (p + z * z / (2 * safe_n)) / (1 + z * z / safe_n)
        half = z * np.sqrt(p * (1 - p) / safe_n + z * z / (4 * safe_n * safe_n)) / (1 + z * z / safe_n)
        low = np.minimum(lo + width * np.maximum(centre - half, 0.0), mean)
        high = np.maximum(lo + width * np.minimum(centre + half, 1.0), mean)
        return mean, low, high
    two = n >= 2
    spread = np.maximum(sq_total - total * mean, 0.0)
    half = np.where(two, z * np.sqrt(spread / np.where(two, n - 1, 1.0) / safe_n), np.nan)
    return mean, mean - half, mean + half


def confidence_sequence(
    pulls: ArrayLike, sums: ArrayLike, bounds: tuple[float, float], alpha: ArrayLike = ALPHA
) -> tuple[FloatArray, FloatArray]:
    """Anytime-valid (1 - alpha) confidence sequence for each arm's mean reward, elementwise (any shape).

    The uniform-mixture (beta-binomial) confidence sequence of the module
    docstring, for rewards in ``bounds``; ``pulls`` and ``sums`` are each
    arm's count and sum of rewards, ``alpha`` in (0, 1) broadcasts against
    them. Before any reward it is the whole range. It always holds the
    observed mean. A bad ``bounds``, ``alpha``, ``pulls`` or ``sums`` is an
    InvalidParameterError naming it.

    >>> low, high = confidence_sequence([10, 0], [7.0, 0.0], (0.0, 1.0))
    >>> low.round(4).tolist(), high.round(4).tolist()
    ([0.2667, 0.0], [0.9634, 1.0])
    """
    lo, hi = bounds
    width = hi - lo
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(width) and lo < hi):
        message = f"bounds must be finite (low, high) with low < high, got {bounds!r}"
        raise InvalidParameterError(message, field="bounds")
    levels = np.asarray(alpha, dtype=float)
    if not ((levels > 0) & (levels < 1)).all():
        raise InvalidParameterError(f"alpha must be in (0, 1), got {alpha!r}", field="alpha")
    n, total = np.asarray(pulls, dtype=float), np.asarray(sums, dtype=float)
    if not (np.isfinite(n) & (n >= 0)).all():
        raise InvalidParameterError(f"pulls must be finite and >= 0, got {pulls!r}", field="pulls")
    if not np.isfinite(total).all():
        raise InvalidParameterError(f"sums must be finite, got {sums!r}", field="sums")
    n, total, log_alpha = np.broadcast_arrays(n, total, np.log(levels))
    successes = np.clip((total - n * lo) / width, 0.0, n)
    lower, upper = _unit_sequence(n, successes, log_alpha)
    low, high = lo + width * lower, lo + width * upper
    seen = n > 0
    mean = np.where(seen, total / np.where(seen, n, 1.0), lo)
    # The observed mean is inside by construction; these guard its last bit against rounding (a mean
    # computed an ulp outside the range stays inside its sequence).
    low = np.where(seen, np.minimum(np.clip(low, lo, hi), mean), lo)
    high = np.where(seen, np.maximum(np.clip(high, lo, hi), mean), hi)
    return low, high


def _unit_sequence(n: FloatArray, s: FloatArray, log_alpha: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The confidence sequence on [0, 1] for ``s`` successes in ``n`` (same shapes), as (lower, upper).

    In log-odds t the log posterior density is h(t) = s t - n softplus(t) -
    log B(s + 1, n - s + 1); the ends solve h(t) = log alpha on each side of
    the mode t0 = log(s / (n - s)). h is concave, so Newton's method started
    on the correct side of t0 converges monotonically from outside after
    its first step. At s = 0 or s = n one end is 0 or 1 and the other has a
    closed form; at n = 0 the sequence is [0, 1].
    """
    from scipy import special

    lower, upper = np.zeros(n.shape), np.ones(n.shape)
    threshold = special.betaln(s + 1.0, n - s + 1.0) + log_alpha  # h(t) = 0 at the ends, with this moved over
    # No success: the density (n + 1)(1 - m)^n is above alpha up to 1 - (alpha / (n + 1))^(1/n); all: mirrored.
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = -np.expm1(threshold / n)
    none, every = (n > 0) & (s <= 0), (n > 0) & (s >= n)
    upper[none], lower[every] = edge[none], 1.0 - edge[every]
    inner = (n > 0) & (s > 0) & (s < n)
    if inner.any():
        count, hits, level = n[inner], s[inner], threshold[inner]
        mode = np.log(hits) - np.log(count - hits)
        peak = hits * mode - count * np.logaddexp(0.0, mode) - level  # > 0: a density's maximum is >= 1 > alpha
        with np.errstate(over="ignore", divide="ignore"):  # a denormal sum: the quadratic step overflows
            step = np.sqrt(2.0 * peak * count / (hits * (count - hits)))  # where the quadratic at the mode is 0
        start = np.clip(np.stack([mode - step, mode + step]), -_LOG_ODDS_LIMIT, _LOG_ODDS_LIMIT)
        ends = _newton(start, hits, count, level)
        # An end held at the limit lies beyond the smallest double: the sequence reaches 0 or 1 there.
        lower[inner] = np.where(ends[0] <= -_LOG_ODDS_LIMIT, 0.0, special.expit(ends[0]))
        upper[inner] = np.where(ends[1] >= _LOG_ODDS_LIMIT, 1.0, special.expit(ends[1]))
    return lower, upper


def _newton(start: FloatArray, hits: FloatArray, count: FloatArray, level: FloatArray) -> FloatArray:
    """Roots of h(t) = hits t - count softplus(t) - level from ``start`` (2, m), each on its side of the mode."""
    from scipy import special

    t = start
    for _ in range(_NEWTON_ROUNDS):
        value = hits * t - count * np.logaddexp(0.0, t) - level
        slope = hits - count * special.expit(t)
        with np.errstate(over="ignore"):  # a root past the limit (a denormal sum) is held at the limit
            moved = np.clip(t - value / slope, -_LOG_ODDS_LIMIT, _LOG_ODDS_LIMIT)
        done = np.abs(moved - t) <= 1e-13 * np.maximum(1.0, np.abs(t))
        t = moved
        if done.all():
            break
    return t


def mean_posteriors(
    pulls: ArrayLike, sums: ArrayLike, sq_sums: ArrayLike, bounds: tuple[float, float] | None
) -> tuple[BetaPosteriors | StudentPosteriors, BoolArray]:
    """Each arm's posterior of its mean reward, arrays of shape (1, K), and which of them are proper (K,).

    Beta(1 + s, 1 + n - s) on rewards in ``bounds`` mapped onto [0, 1]
    (every arm proper, an arm without rewards at its uniform prior); else
    Student-t t_(n-1)(mean, var / n), proper only for an arm with three
    rewards, not all equal (the others hold a placeholder).
    """
    n, total, sq_total = (np.asarray(value, dtype=float) for value in (pulls, sums, sq_sums))
    if bounds is not None:
        lo, hi = bounds
        successes = np.clip((total - n * lo) / (hi - lo), 0.0, n)
        return BetaPosteriors(1.0 + successes[None, :], 1.0 + (n - successes)[None, :]), np.ones(n.shape, bool)
    enough = n >= _STUDENT_MIN_PULLS
    safe_n = np.where(enough, n, _STUDENT_MIN_PULLS)
    mean = total / safe_n
    variance = np.maximum(sq_total - total * mean, 0.0) / (safe_n - 1.0)
    proper = enough & (variance > 0)
    scale = np.where(proper, np.sqrt(np.where(proper, variance, 1.0) / safe_n), 1.0)
    loc = np.where(proper, mean, 0.0)
    return StudentPosteriors(loc[None, :], scale[None, :], (safe_n - 1.0)[None, :]), proper


def best_probabilities(posteriors: BetaPosteriors | StudentPosteriors, proper: BoolArray) -> FloatArray:
    """P(arm k has the largest mean) under ``posteriors`` (1, K), shape (K,); NaN unless every arm is proper."""
    if not proper.all():
        return np.full(proper.shape, np.nan)
    best: FloatArray = max_probabilities(posteriors, np.ones((1, proper.size), dtype=bool))[0]
    return best


def beat_probabilities(posteriors: BetaPosteriors | StudentPosteriors, proper: BoolArray, default: int) -> FloatArray:
    """P(arm k's mean > arm ``default``'s) for every arm, shape (K,); NaN for the default and improper arms.

    One quadrature over rows (arm k, default), one row per other arm.
    """
    out = np.full(proper.shape, np.nan)
    others = np.flatnonzero(proper & (np.arange(proper.size) != default))
    if not proper[default] or others.size == 0:
        return out

    def pair(values: FloatArray) -> FloatArray:
        return np.stack([values[0, others], np.full(others.size, values[0, default])], axis=1)

    pairs = type(posteriors)(**{field.name: pair(getattr(posteriors, field.name)) for field in fields(posteriors)})
    out[others] = max_probabilities(pairs, np.ones((others.size, 2), dtype=bool))[:, 0]
    return out


def regret_estimate(pulls: ArrayLike, sums: ArrayLike) -> FloatArray:
    """Plug-in cumulative regret N max_k mean_k - sum of rewards, for arrays (..., K), shape (...).

    What always playing the arm with the best observed mean would have
    earned, less what was earned; arms without rewards add nothing, and it
    is 0 before any reward.

    >>> regret_estimate([10, 30], [2.0, 9.0])  # 40 * 0.3 - 11
    array(1.)
    """
    n, total = np.asarray(pulls, dtype=float), np.asarray(sums, dtype=float)
    seen = n > 0
    best = np.where(seen, total / np.where(seen, n, 1.0), -np.inf).max(axis=-1)
    count, reward = n.sum(axis=-1), total.sum(axis=-1)
    estimate: FloatArray = np.where(count > 0, np.maximum(count * np.where(count > 0, best, 0.0) - reward, 0.0), 0.0)
    return estimate


def regret_interval(
    pulls: ArrayLike, cs_low: ArrayLike, cs_high: ArrayLike, estimate: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Smallest and largest cumulative regret over the box [cs_low, cs_high] of the arms' means, arrays (..., K).

    The regret of the rewards so far, R(mu) = N max_j mu_j - sum_k n_k mu_k,
    is convex in the means: its largest value over the box is at a corner,
    max_j sum_(k != j) n_k (cs_high_j - cs_low_k); its smallest sets every
    mean to min(cs_high_k, m), m the largest lower end: sum_k n_k max(m -
    cs_high_k, 0). The box must hold every arm's mean at once (each
    sequence at level alpha / K for a joint 1 - alpha). ``estimate`` (...)
    lies inside in exact arithmetic (its means are in the box); the ends are
    widened to it against rounding.
    """
    n, lows, highs = (np.asarray(value, dtype=float) for value in (pulls, cs_low, cs_high))
    floor = (np.maximum(lows.max(axis=-1, keepdims=True) - highs, 0.0) * n).sum(axis=-1)
    spent = (n * lows).sum(axis=-1, keepdims=True)
    ceiling = ((n.sum(axis=-1, keepdims=True) - n) * highs - (spent - n * lows)).max(axis=-1)
    return np.minimum(floor, estimate), np.maximum(ceiling, estimate)


@dataclass(frozen=True)
class Health:
    """Per-arm numbers, arrays (K,) with NaN where one is not defined, and the regret so far."""

    mean: FloatArray
    low: FloatArray
    high: FloatArray
    cs_low: FloatArray
    cs_high: FloatArray
    p_best: FloatArray
    p_beats_default: FloatArray
    #: Cumulative regret so far and its anytime 95% interval (NaN where not defined).
    regret_estimate: float
    regret_low: float
    regret_high: float

    def __post_init__(self) -> None:
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False


def assess(
    pulls: ArrayLike,
    sums: ArrayLike,
    sq_sums: ArrayLike,
    bounds: tuple[float, float] | None,
    default: int | None = None,
    *,
    comparable: bool = True,
) -> Health:
    """Everything ``Bandit.stats()`` reports about the arms' means, from their counts and sums (K,).

    ``bounds`` is the rewards' known range (None: unbounded), ``default`` the
    index of the default arm. ``comparable`` False (a contextual policy,
    whose arms have no single mean) keeps only the means and fixed-n
    intervals.

    >>> health = assess([10, 30], [2.0, 9.0], [2.0, 9.0], (0.0, 1.0), default=0)
    >>> round(float(health.p_best.sum()), 12), health.regret_estimate
    (1.0, 1.0)
    """
    n, total, sq_total = (np.asarray(value, dtype=float) for value in (pulls, sums, sq_sums))
    mean, low, high = fixed_n_interval(n, total, sq_total, bounds)
    missing = np.full(n.shape, np.nan)
    if not comparable:
        return Health(mean, low, high, missing, missing, missing, missing, math.nan, math.nan, math.nan)
    estimate = regret_estimate(n, total)
    if bounds is None:
        cs_low = cs_high = missing
        regret_low = regret_high = math.nan
    else:
        # The reported sequences at alpha, and at alpha / K for the regret's joint box: one root-finding pass.
        both_low, both_high = confidence_sequence(n, total, bounds, np.array([[ALPHA], [ALPHA / max(n.size, 1)]]))
        cs_low, cs_high = both_low[0], both_high[0]
        regret_low, regret_high = (float(end) for end in regret_interval(n, both_low[1], both_high[1], estimate))
    posteriors, proper = mean_posteriors(n, total, sq_total, bounds)
    p_best = best_probabilities(posteriors, proper)
    beats = missing if default is None else beat_probabilities(posteriors, proper, default)
    return Health(mean, low, high, cs_low, cs_high, p_best, beats, float(estimate), regret_low, regret_high)


@functools.lru_cache(maxsize=_MEMO_SIZE)
def assess_ledger(
    pulls: tuple[float, ...],
    sums: tuple[float, ...],
    sq_sums: tuple[float, ...],
    bounds: tuple[float, float] | None,
    default: int | None,
    comparable: bool,
) -> Health:
    """:func:`assess` of a ledger given as tuples, remembered for the last few ledgers.

    The quadratures take milliseconds (3 ms for 10 arms, 90 ms for 1,000); a
    dashboard that reads ``/stats`` again before a new reward arrives gets
    the same numbers for the cost of hashing the sums. The arrays returned
    are read-only, since they are shared.
    """
    return assess(pulls, sums, sq_sums, bounds, default, comparable=comparable)


def optional(value: float) -> float | None:
    """A float, or None for NaN (a number that is not defined)."""
    return None if math.isnan(value) else float(value)

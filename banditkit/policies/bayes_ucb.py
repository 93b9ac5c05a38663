"""Bayes-UCB: play the arm whose posterior quantile of level 1 - 1/(t (log n)^c) is largest.

Reference: Kaufmann, Cappé & Garivier, "On Bayesian Upper Confidence Bounds
for Bandit Problems" (AISTATS 2012), Bayes-UCB for Bernoulli rewards with a
uniform prior; ``c = 0`` is the choice they recommend in practice (c = 5 in
their theorem).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._typing import FloatArray
from .._validation import check_int, check_real
from .base import State
from .registry import register
from .ucb import IndexPolicy


@register
class BayesUCB(IndexPolicy):
    """Bayes-UCB for Bernoulli rewards: the argmax of each arm's Beta posterior quantile, ties at random.

    Every arm's posterior is Beta(1 + s, 1 + n - s) after n rewards summing to s
    (the uniform prior, fractional rewards added as in Thompson sampling). In
    round t (t - 1 rewards seen, so t = 1 first) the index is the posterior
    quantile of level 1 - 1 / (t (log n)^c): optimism that shrinks as evidence
    grows, without Thompson sampling's random draw. n is ``horizon``, or t when
    the horizon is not known; (log n)^c is floored at 1 so that early rounds keep
    a level in [0, 1). The default ``c = 0`` makes the horizon irrelevant.

    Parameters
    ----------
    c : float, >= 0
        Exponent of the log-horizon factor.
    horizon : int >= 2 or None
        The number of rounds n, when known.
    reward_range : (low, high), default (0, 1)
        The interval rewards come in; they are learned mapped onto [0, 1], the scale of the Beta posterior.

    Examples
    --------
    >>> import numpy as np
    >>> policy = BayesUCB()
    >>> state = policy.update(policy.init_state(2), np.array([0, 1, 1]), np.array([1.0, 0.0, 1.0]))
    >>> policy.indices(state).round(4).tolist()   # level 3/4: Beta(2, 1) and Beta(2, 2) quantiles
    [[0.866, 0.6736]]
    """

    name = "bayes_ucb"

    def __init__(self, c: float = 0.0, horizon: int | None = None, reward_range: Sequence[float] = (0.0, 1.0)):
        self.c = check_real("c", c, low=0.0)
        self.horizon = None if horizon is None else check_int("horizon", horizon, low=2)
        super().__init__(reward_range)

    def quantile_level(self, state: State) -> FloatArray:
        """Level 1 - 1 / (t (log n)^c) of the round being decided, per state row, shape (B, 1)."""
        t = state["pulls"].sum(axis=1, keepdims=True) + 1.0
        n = t if self.horizon is None else float(self.horizon)
        log_factor = np.maximum(np.log(n), 1.0) ** self.c if self.c else 1.0
        level: FloatArray = 1.0 - 1.0 / (t * log_factor)
        return level

    def indices(self, state: State) -> FloatArray:
        from scipy.special import betaincinv  # deferred: scipy.special is slow to import

        pulls, successes = state["pulls"], state["reward_sums"]
        level = np.broadcast_to(self.quantile_level(state), pulls.shape)
        indices: FloatArray = betaincinv(1.0 + successes, 1.0 + pulls - successes, level)
        return indices

    def unit_means(self, state: State) -> FloatArray:
        unit_means: FloatArray = (1.0 + state["reward_sums"]) / (2.0 + state["pulls"])
        return unit_means

"""Guardrails that keep an adaptive experiment safe in production; the Bandit applies them.

* default-arm fallback: when the policy fails, serve ``default_arm`` (flagged);
* exploration cap: at most ``max_exploration`` of the probability mass away
  from the current best arm (by estimated mean);
* per-arm SLO: after ``slo_window`` pulls, an arm whose mean reward is below
  ``min_reward_rate`` is disabled, with the reason kept for ``stats()``;
* abort rule: once the cumulative reward falls below ``ruin_threshold``
  (meaningful for signed rewards such as profit), stop exploring and serve the
  default arm until ``Bandit.resume()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import check_int, check_real
from .errors import InvalidTypeError


@dataclass(frozen=True)
class Guardrails:
    """Production safety settings; every field is optional and off by default.

    Each field turns on the guardrail of the same name described in this module's docstring.

    Examples
    --------
    >>> import banditkit as bk
    >>> guardrails = bk.Guardrails(default_arm="a", max_exploration=0.1)
    >>> bandit = bk.Bandit(["a", "b", "c"], policy=bk.EpsilonGreedy(0.5), seed=0, guardrails=guardrails)
    >>> {arm: round(p, 2) for arm, p in bandit.probabilities().items()}  # 10% at most away from the best
    {'a': 0.9, 'b': 0.05, 'c': 0.05}
    """

    default_arm: str | None = None
    max_exploration: float | None = None
    min_reward_rate: float | None = None
    slo_window: int = 1000
    ruin_threshold: float | None = None

    def __post_init__(self):
        if self.default_arm is not None and not isinstance(self.default_arm, str):
            raise InvalidTypeError(f"default_arm must be an arm name, got {self.default_arm!r}")
        if self.max_exploration is not None:
            check_real("max_exploration", self.max_exploration, low=0.0, high=1.0)
        if self.min_reward_rate is not None:
            check_real("min_reward_rate", self.min_reward_rate)
        check_int("slo_window", self.slo_window, low=1)
        if self.ruin_threshold is not None:
            check_real("ruin_threshold", self.ruin_threshold)

    def cap_exploration(self, probabilities: np.ndarray, best: np.ndarray) -> np.ndarray:
        """Shrink the mass off the best arm (n,) to at most ``max_exploration``; rows still sum to 1."""
        if self.max_exploration is None:
            return probabilities
        rows = np.arange(probabilities.shape[0])
        away = 1.0 - probabilities[rows, best]
        scale = np.where(away > self.max_exploration, self.max_exploration / np.maximum(away, 1e-300), 1.0)
        capped = probabilities * scale[:, None]
        capped[rows, best] = 1.0 - away * scale
        return capped

    def slo_violations(self, pulls: np.ndarray, reward_sums: np.ndarray) -> np.ndarray:
        """Boolean (K,) of arms whose SLO is breached: enough pulls and a mean below the floor."""
        if self.min_reward_rate is None:
            return np.zeros(pulls.shape, dtype=bool)
        enough = pulls >= self.slo_window
        means = np.divide(reward_sums, pulls, out=np.zeros(pulls.shape), where=pulls > 0)
        return enough & (means < self.min_reward_rate)

    def ruined(self, total_reward: float) -> bool:
        """True once the cumulative reward is below the ruin threshold."""
        return self.ruin_threshold is not None and total_reward < self.ruin_threshold

"""Several candidate policies evaluated on one log: one table, values relative to the logged policy, a verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .report import Estimate, _data_frame, _Named

#: The estimator a recommendation rests on: the first of these that was computed.
PREFERRED = ("dr", "switch_dr", "snips", "ips", "clipped_ips", "dm", "replay")


@dataclass(frozen=True)
class Ratio:
    """A candidate's value over the logged policy's own (mean logged reward), with a bootstrap interval.

    Examples
    --------
    >>> import numpy as np
    >>> from banditkit.ope import evaluate
    >>> rng = np.random.default_rng(0)
    >>> arms = rng.integers(0, 2, 2000)
    >>> log = {"arm": arms, "reward": (rng.random(2000) < np.where(arms == 1, 0.7, 0.3)).astype(float),
    ...        "propensity": np.full(2000, 0.5)}
    >>> comparison = evaluate(log, {"always_b": np.tile([0.0, 1.0], (2000, 1))}, ["ips"], n_bootstrap=100, rng=0)
    >>> ratio = comparison.ratios["always_b"]["ips"]
    >>> round(ratio.value, 2), ratio.low > 1.0
    (1.44, True)
    """

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison(_Named[dict[str, Estimate]]):
    """Estimates per candidate and estimator, each also as a ratio to the logged policy's value.

    ``candidates[name][estimator]`` is the :class:`Estimate` of that candidate (as one-target
    :func:`evaluate` reports it); ``logged`` the on-policy mean of the logged rewards; ``ratios[name]
    [estimator]`` the candidate's value over it, with a percentile interval from the same Poisson
    bootstrap resamples (numerator and denominator reweighted together). ``recommendation`` names the best
    candidate only when its interval clears every other candidate's, else says why it does not pick.

    Examples
    --------
    >>> import numpy as np
    >>> from banditkit.ope import evaluate
    >>> rng = np.random.default_rng(0)
    >>> arms = rng.integers(0, 2, 2000)
    >>> log = {"arm": arms, "reward": (rng.random(2000) < np.where(arms == 1, 0.7, 0.3)).astype(float),
    ...        "propensity": np.full(2000, 0.5)}
    >>> candidates = {"always_b": np.tile([0.0, 1.0], (2000, 1)), "uniform": np.full((2000, 2), 0.5)}
    >>> comparison = evaluate(log, candidates, ["ips"], n_bootstrap=100, rng=0)
    >>> round(comparison.candidates["always_b"]["ips"].value, 3)
    0.742
    >>> comparison.recommendation.startswith("recommend 'always_b' by ips")
    True
    """

    candidates: dict[str, dict[str, Estimate]]
    logged: Estimate
    ratios: dict[str, dict[str, Ratio]]
    recommendation: str
    warnings: tuple[str, ...] = field(default=())
    _noun: ClassVar[str] = "candidate"

    def _named(self) -> dict[str, dict[str, Estimate]]:
        return self.candidates

    def rows(self) -> list[dict[str, Any]]:
        """One dict per candidate and estimator, then the logged policy's row (ratio 1)."""
        out = []
        for name, estimates in self.candidates.items():
            for estimator, estimate in estimates.items():
                ratio = self.ratios[name][estimator]
                out.append({"candidate": name, **estimate.to_dict(), **_ratio_columns(ratio)})
        logged = Ratio(1.0, 1.0, 1.0)
        out.append({"candidate": "logged policy", **self.logged.to_dict(), **_ratio_columns(logged)})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"estimates": self.rows(), "recommendation": self.recommendation, "warnings": list(self.warnings)}

    def to_frame(self) -> Any:
        """A pandas DataFrame with one row per candidate and estimator (and the logged policy)."""
        return _data_frame(self.rows())

    def plot(self, path: str | Path | None = None) -> Any:
        """Each candidate's estimates with their intervals, the logged policy's value as a band; the Figure."""
        from .rendering import plot_estimates

        return plot_estimates(self.candidates, self.logged, path)

    def to_html(self, path: str | Path) -> None:
        """A self-contained HTML page: the recommendation, the table, the plot (embedded PNG), the warnings."""
        from .rendering import write_html

        title = "Offline comparison of candidate policies"
        write_html(path, title, self.rows(), self.plot(), [self.recommendation], self.warnings)


def _ratio_columns(ratio: Ratio) -> dict[str, float | None]:
    return {
        key: None if math.isnan(value) else value
        for key, value in (("ratio", ratio.value), ("ratio_low", ratio.low), ("ratio_high", ratio.high))
    }


def recommend(candidates: dict[str, dict[str, Estimate]], ratios: dict[str, dict[str, Ratio]]) -> str:
    """One line: the best candidate by the preferred estimator, or why none is picked."""
    estimator = next(name for name in (*PREFERRED, *next(iter(candidates.values()))) if _computed(candidates, name))
    bounds = {name: estimates[estimator].interval() for name, estimates in candidates.items()}
    level = f"{next(iter(candidates.values()))[estimator].confidence:.0%}"
    best = max(candidates, key=lambda name: candidates[name][estimator].value)
    low, high = bounds[best]
    if math.isnan(low):
        return f"no recommendation: {best!r} leads by {estimator}, but its estimate has no interval (too few rows)"
    overlapping = [name for name, (o_low, o_high) in bounds.items() if name != best and not o_high < low]
    if overlapping:
        return (
            f"no recommendation: by {estimator}, the {level} interval of the leader {best!r} "
            f"[{low:.4g}, {high:.4g}] overlaps {', '.join(repr(name) for name in overlapping)}'s; "
            "collect more data before choosing"
        )
    ratio = ratios[best][estimator]
    versus = (
        "no interval on the ratio without bootstrap resamples"
        if math.isnan(ratio.low)
        else "better than the logged policy"
        if ratio.low > 1
        else "worse than the logged policy"
        if ratio.high < 1
        else "not distinguishable from the logged policy"
    )
    picked = "" if len(candidates) == 1 else f", its {level} interval clear of every other candidate's"
    return (
        f"recommend {best!r} by {estimator}: {candidates[best][estimator].value:.4g} [{low:.4g}, {high:.4g}]"
        f"{picked}; x{ratio.value:.3g} [{ratio.low:.3g}, {ratio.high:.3g}] the logged policy's value, {versus}"
    )


def _computed(candidates: dict[str, dict[str, Estimate]], estimator: str) -> bool:
    return all(estimator in estimates for estimates in candidates.values())

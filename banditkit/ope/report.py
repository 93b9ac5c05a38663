"""What an evaluation returns: one Estimate per estimator, gathered in a Report."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from ..errors import BanditkitError

_V = TypeVar("_V")


@dataclass(frozen=True)
class Estimate:
    """An estimate of the target policy's value with its 95% intervals and diagnostics.

    ``low``/``high``: Poisson-bootstrap percentile interval; ``normal_low``/``normal_high``: value
    +- z * std_error. ``ess``: effective sample size (sum w)^2 / sum w^2 of the importance weights
    the estimator applies (n for DM, accepted rows for replay); ``max_weight``: the largest weight
    (None when the estimator applies none); ``tiny_propensity_share``: share of rows whose logged
    propensity is below 1e-3 (None when the estimator does not use propensities). ``support``: the rows
    that carry the estimate, every row for a mean and the rows with a nonzero denominator for a ratio
    (replay's accepted rows); below ``MIN_INTERVAL_ROWS`` (10) the intervals and standard error are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from banditkit.ope import ips
    >>> rewards = (np.random.default_rng(0).random(40) < 0.5).astype(float)
    >>> estimate = ips(rewards, [0.5] * 40, [[0.0, 1.0]] * 40, [0, 1] * 20, n_bootstrap=200)
    >>> estimate.value, estimate.ess, estimate.max_weight, estimate.support
    (0.55, 20.0, 2.0, 40)
    >>> bool(estimate.low < estimate.value < estimate.high)
    True
    >>> ips([1.0], [0.5], [1.0]).to_dict()["low"] is None  # one row: no interval (NaN, None in JSON)
    True
    """

    estimator: str
    value: float
    low: float
    high: float
    normal_low: float
    normal_high: float
    std_error: float
    ess: float
    max_weight: float | None
    tiny_propensity_share: float | None
    n_rows: int
    support: int
    confidence: float = 0.95

    def interval(self) -> tuple[float, float]:
        """The bootstrap interval, else (no resamples) the normal one; NaN when there are too few rows."""
        if not math.isnan(self.low):
            return self.low, self.high
        return self.normal_low, self.normal_high

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (NaN becomes None)."""
        return {
            key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in asdict(self).items()
        }


class _Named(ABC, Generic[_V]):
    """What a report is as a mapping: ``report[name]`` (a KeyError that lists the names), iteration, ``len``."""

    #: What a name stands for, in the KeyError's message.
    _noun: ClassVar[str]

    @abstractmethod
    def _named(self) -> dict[str, _V]:
        """The entries by name."""

    def __getitem__(self, name: str) -> _V:
        entries = self._named()
        try:
            return entries[name]
        except KeyError:
            raise KeyError(f"no {self._noun} {name!r}; the report holds {list(entries)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._named())

    def __len__(self) -> int:
        return len(self._named())


def _data_frame(rows: list[dict[str, Any]]) -> Any:
    """A report's rows as a pandas DataFrame; pandas is imported here, on first use."""
    try:
        import pandas as pd
    except ImportError as error:
        raise BanditkitError("to_frame needs pandas: pip install pandas (or use report.rows())") from error
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Report(_Named[Estimate]):
    """Estimates by estimator name; ``by_position[l]`` holds the estimates on the rows of slot l.

    ``warnings`` says, in words, which estimates to distrust and why (too few rows, a small effective
    sample size, tiny propensities). ``source`` says how the log was read (in memory, or streamed in
    chunks) and ``reward_model`` how DM/DR's reward model was fitted (None without them).

    Examples
    --------
    >>> import numpy as np
    >>> from banditkit.ope import evaluate
    >>> log = {"arm": [0, 1, 0, 1], "reward": [1.0, 0.0, 1.0, 1.0], "propensity": [0.5] * 4}
    >>> report = evaluate(log, np.array([[1.0, 0.0]]), ["ips", "snips"], n_bootstrap=200)
    >>> list(report), report["snips"].value
    (['ips', 'snips'], 1.0)
    >>> print(report.warnings[1].split(", fewer")[0])  # and so no interval
    snips: only 2 of 4 rows carry the estimate
    >>> report.rows()[0]["position"], report.rows()[0]["low"]  # one JSON-ready dict per estimate
    ('all', None)
    """

    estimates: dict[str, Estimate]
    by_position: dict[int, dict[str, Estimate]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    source: str = "in memory"
    reward_model: str | None = None
    _noun: ClassVar[str] = "estimate"

    def _named(self) -> dict[str, Estimate]:
        return self.estimates

    def rows(self) -> list[dict[str, Any]]:
        """One dict per estimate (whole log first, then each position), ready for a table or JSON."""
        out = [{"position": "all", **estimate.to_dict()} for estimate in self.estimates.values()]
        for position, estimates in sorted(self.by_position.items()):
            out += [{"position": position, **estimate.to_dict()} for estimate in estimates.values()]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimates": self.rows(),
            "warnings": list(self.warnings),
            "source": self.source,
            "reward_model": self.reward_model,
        }

    def to_frame(self) -> Any:
        """A pandas DataFrame with one row per estimator (and per position for position-based logs)."""
        return _data_frame(self.rows())

    def plot(self, path: str | Path | None = None) -> Any:
        """Each estimate with its interval (and per position, for position-based logs); the matplotlib Figure."""
        from .rendering import plot_estimates

        groups = {"all": self.estimates, **{f"position {p}": e for p, e in sorted(self.by_position.items())}}
        return plot_estimates(groups, None, path)

    def to_html(self, path: str | Path) -> None:
        """A self-contained HTML page: the table, the plot (embedded PNG) and the warnings."""
        from .rendering import write_html

        write_html(path, "Offline evaluation", self.rows(), self.plot(), [], self.warnings)

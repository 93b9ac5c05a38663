"""What a simulation returns: regret curves with 95% intervals, pull shares, rewards, and their exports."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidParameterError
from .table import Table, missing_dependency

#: Horizons up to this many steps record every step; longer ones a log-spaced grid.
FULL_GRID_LIMIT = 10_000
#: Points of the log-spaced grid.
GRID_POINTS = 2_000


def recording_steps(horizon: int) -> np.ndarray:
    """Steps (1-based counts of decisions) at which cumulative regret is recorded.

    >>> recording_steps(5).tolist()
    [1, 2, 3, 4, 5]
    >>> grid = recording_steps(10**6); int(grid[0]), int(grid[-1]), grid.size <= 2000
    (1, 1000000, True)
    """
    if horizon <= FULL_GRID_LIMIT:
        return np.arange(1, horizon + 1)
    return np.unique(np.geomspace(1, horizon, GRID_POINTS).round().astype(np.int64))


def _student_quantile(replications: int) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(replications - 1, 0.975)) if replications > 1 else math.nan


@dataclass(frozen=True)
class SimulationResult:
    """Results of :func:`banditkit.sim.run`; per-policy arrays are indexed in ``policies`` order.

    Attributes
    ----------
    policies : list of str, length P
        Policy labels.
    steps : ndarray, shape (G,)
        Decision counts at which regret is recorded.
    regret_mean, regret_low, regret_high : ndarray, shape (P, G)
        Mean cumulative pseudo-regret and its 95% Student-t interval over replications
        (NaN bounds when R = 1).
    final_regret : ndarray, shape (P, R)
        Cumulative regret at the horizon per replication.
    reward_per_step : ndarray, shape (P, R)
        Mean reward per decision per replication.
    pull_shares : ndarray, shape (P, K)
        Share of all decisions given to each arm.
    seconds : ndarray, shape (P,)
        Wall-clock time per policy.

    Examples
    --------
    >>> import numpy as np
    >>> from banditkit.sim import Bernoulli, SimulationResult, run
    >>> result = run({"TS": "thompson", "greedy": "epsilon_greedy"}, Bernoulli([0.2, 0.8]), horizon=200,
    ...              replications=4, seed=0)
    >>> result.policies, result.regret_mean.shape, result.final_regret.shape
    (['TS', 'greedy'], (2, 200), (2, 4))
    >>> round(result.regret_at("TS", 200), 2), result.pull_shares.round(2).tolist()
    (3.3, [[0.03, 0.97], [0.09, 0.91]])
    >>> bool(np.array_equal(SimulationResult.from_json(result.to_json()).regret_mean, result.regret_mean))
    True
    """

    policies: list[str]
    policy_specs: list[dict[str, Any]]
    environment: dict[str, Any]
    horizon: int
    replications: int
    seed: int
    steps: np.ndarray
    regret_mean: np.ndarray
    regret_low: np.ndarray
    regret_high: np.ndarray
    final_regret: np.ndarray
    reward_per_step: np.ndarray
    pull_shares: np.ndarray
    seconds: np.ndarray
    lower_bound: float | None = None

    @classmethod
    def from_blocks(cls, named, outcomes, n_blocks, *, env, horizon, replications, seed, steps) -> SimulationResult:
        """Combine per-(policy, block) outcomes, listed policy-major, into one result."""
        quantile = _student_quantile(replications)
        rows: dict[str, list[np.ndarray]] = {
            key: [] for key in ("mean", "low", "high", "final", "reward", "shares", "seconds")
        }
        for p in range(len(named)):
            parts = outcomes[p * n_blocks : (p + 1) * n_blocks]
            total = sum(part.regret_sums for part in parts)
            squares = sum(part.regret_squares for part in parts)
            mean = total / replications
            variance = np.maximum(squares - total * mean, 0.0) / max(replications - 1, 1)
            half = quantile * np.sqrt(variance / replications)
            pulls = sum(part.pulls for part in parts)
            rows["mean"].append(mean)
            rows["low"].append(mean - half)
            rows["high"].append(mean + half)
            rows["final"].append(np.concatenate([part.final_regret for part in parts]))
            rows["reward"].append(np.concatenate([part.total_reward for part in parts]) / horizon)
            rows["shares"].append(pulls / pulls.sum())
            rows["seconds"].append(max(p.finished for p in parts) - min(p.started for p in parts))
        return cls(
            policies=list(named),
            policy_specs=[policy.to_dict() for policy in named.values()],
            environment=env.describe(),
            horizon=horizon,
            replications=replications,
            seed=int(seed),
            steps=steps,
            regret_mean=np.array(rows["mean"]),
            regret_low=np.array(rows["low"]),
            regret_high=np.array(rows["high"]),
            final_regret=np.array(rows["final"]),
            reward_per_step=np.array(rows["reward"]),
            pull_shares=np.array(rows["shares"]),
            seconds=np.array(rows["seconds"]),
            lower_bound=env.lower_bound_constant(),
        )

    def _index(self, name: str) -> int:
        if name not in self.policies:
            raise InvalidParameterError(f"no policy {name!r} in this result; policies are {self.policies}")
        return self.policies.index(name)

    def regret(self, name: str) -> np.ndarray:
        """Mean cumulative regret of policy ``name`` at each of ``steps``, shape (G,)."""
        return self.regret_mean[self._index(name)]

    def interval(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """95% interval of the mean cumulative regret at each of ``steps``: (low, high), each (G,)."""
        i = self._index(name)
        return self.regret_low[i], self.regret_high[i]

    def regret_at(self, name: str, step: int) -> float:
        """Mean cumulative regret after ``step`` decisions (the nearest recorded step at or below it)."""
        position = int(np.searchsorted(self.steps, step, side="right")) - 1
        if position < 0:
            raise InvalidParameterError(f"step must be in [1, {self.horizon}], got {step!r}")
        return float(self.regret(name)[position])

    def log_slope(self, name: str, start: int, end: int | None = None) -> float:
        """Least-squares slope of mean regret against ln(t) over recorded steps in [start, end].

        For a policy matching the Lai-Robbins rate the slope tends to ``lower_bound``.
        """
        end = self.horizon if end is None else end
        inside = (self.steps >= start) & (self.steps <= end)
        if inside.sum() < 2:
            raise InvalidParameterError(f"need at least 2 recorded steps in [{start}, {end}]")
        slope, _ = np.polyfit(np.log(self.steps[inside]), self.regret(name)[inside], 1)
        return float(slope)

    def summary(self) -> Table:
        """One row per policy: final regret mean and 95% interval, mean reward per decision."""
        return Table(
            {
                "policy": self.policies,
                "regret_mean": self.regret_mean[:, -1],
                "regret_low": self.regret_low[:, -1],
                "regret_high": self.regret_high[:, -1],
                "reward_mean": self.reward_per_step.mean(axis=1),
            }
        )

    def curves(self) -> Table:
        """Long table of the regret curves: policy, step, regret_mean, regret_low, regret_high."""
        n_steps = self.steps.size
        return Table(
            {
                "policy": np.repeat(self.policies, n_steps),
                "step": np.tile(self.steps, len(self.policies)),
                "regret_mean": self.regret_mean.ravel(),
                "regret_low": self.regret_low.ravel(),
                "regret_high": self.regret_high.ravel(),
            }
        )

    def plot(self, path: str | Path | None = None, *, title: str | None = None, log_x: bool | None = None):
        """Regret curves with 95% bands (and the Lai-Robbins bound for Bernoulli); saved if ``path``."""
        from .plotting import plot_regret

        return plot_regret(self, path, title=title, log_x=log_x)

    # ---- exports ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN written as None); :meth:`from_dict` restores the result exactly."""
        out: dict[str, Any] = {}
        for field in self.__dataclass_fields__:
            value = getattr(self, field)
            if isinstance(value, np.ndarray):
                # NaN as None (JSON null): an object array; numpy's stub has no overload for a None branch.
                value = (
                    np.where(np.isnan(value), None, value).tolist()  # type: ignore[call-overload]
                    if value.dtype.kind == "f"
                    else value.tolist()
                )
            out[field] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulationResult:
        arrays = {
            "steps": np.int64,
            "regret_mean": float,
            "regret_low": float,
            "regret_high": float,
            "final_regret": float,
            "reward_per_step": float,
            "pull_shares": float,
            "seconds": float,
        }
        values: dict[str, Any] = {k: (np.array(v, dtype=arrays[k]) if k in arrays else v) for k, v in data.items()}
        return cls(**values)

    def to_json(self, path: str | Path | None = None) -> str:
        """The result as JSON text, also written to ``path`` when given."""
        text = json.dumps(self.to_dict())
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> SimulationResult:
        """A result from :meth:`to_json`'s text, or from the file it wrote.

        ``source`` is the JSON text, or a path: a ``Path``, or a string that is not a JSON object, such as
        ``"runs/drifting/result.json"``.

        >>> import tempfile
        >>> from banditkit.sim import Bernoulli, run
        >>> result = run({"TS": "thompson"}, Bernoulli([0.2, 0.8]), horizon=20, replications=2)
        >>> path = Path(tempfile.mkdtemp()) / "result.json"
        >>> _ = result.to_json(path)
        >>> SimulationResult.from_json(path).policies == SimulationResult.from_json(str(path)).policies == ["TS"]
        True
        """
        if isinstance(source, str) and source.lstrip().startswith("{"):
            return cls.from_dict(json.loads(source))
        return cls.from_dict(json.loads(Path(source).read_text()))

    def to_parquet(self, path: str | Path) -> None:
        """Write the regret curves (:meth:`curves`) to Parquet; needs pyarrow (``banditkit[io]``)."""
        try:
            import pyarrow.parquet as parquet
        except ImportError as error:
            raise missing_dependency("io", "pyarrow") from error
        parquet.write_table(self.curves().to_arrow(), str(path))

"""Regret curves with 95% bands; matplotlib is imported here only, never at import of banditkit."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .table import missing_dependency


class RegretCurves(Protocol):
    """What a plot reads from a result (a :class:`~banditkit.sim.SimulationResult`); arrays are (P, G)."""

    # Read-only members: a frozen dataclass satisfies them.
    @property
    def policies(self) -> list[str]: ...
    @property
    def environment(self) -> dict[str, Any]: ...
    @property
    def horizon(self) -> int: ...
    @property
    def replications(self) -> int: ...
    @property
    def steps(self) -> np.ndarray: ...
    @property
    def regret_mean(self) -> np.ndarray: ...
    @property
    def regret_low(self) -> np.ndarray: ...
    @property
    def regret_high(self) -> np.ndarray: ...
    @property
    def lower_bound(self) -> float | None: ...


#: Environments whose regret grows in bursts through the run: plotted against linear time by default.
CHANGING_KINDS = frozenset({"non_stationary", "adversarial"})


def _kind(environment: dict) -> str:
    return _kind(environment["environment"]) if environment["kind"] == "delayed" else environment["kind"]


def plot_regret(
    result: RegretCurves, path: str | Path | None = None, *, title: str | None = None, log_x: bool | None = None
):
    """Draw each policy's mean cumulative regret and its 95% band; return the matplotlib Figure.

    For Bernoulli problems the Lai-Robbins rate ``C ln t`` is drawn dashed over the last
    two decades, from the lowest curve: asymptotically no consistent policy grows slower. ``log_x`` defaults to a
    log time axis, except for changing environments, whose regret comes in bursts.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise missing_dependency("viz", "matplotlib") from error
    # A bare Figure needs no pyplot backend: it saves headless and still displays in notebooks.
    figure = Figure(figsize=(7.5, 4.5), dpi=110)
    axis = figure.subplots()
    steps = result.steps
    for i, name in enumerate(result.policies):
        (line,) = axis.plot(steps, result.regret_mean[i], label=name, linewidth=1.6)
        if result.replications > 1:
            axis.fill_between(
                steps, result.regret_low[i], result.regret_high[i], color=line.get_color(), alpha=0.2, linewidth=0
            )
    if result.lower_bound is not None:
        # The bound is asymptotic: C ln t + o(ln t). Drawn as a slope over the last two decades,
        # from the lowest curve, it shows which policies grow faster than any consistent policy must.
        anchor = int(np.searchsorted(steps, max(result.horizon // 100, 1)))
        segment = steps[anchor:]
        start = result.regret_mean[:, anchor].min()
        axis.plot(
            segment,
            start + result.lower_bound * np.log(segment / segment[0]),
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"Lai-Robbins rate {result.lower_bound:.1f} ln t",
        )
    if log_x is None:
        log_x = _kind(result.environment) not in CHANGING_KINDS
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel("decisions t" + (" (log scale)" if log_x else ""))
    axis.set_ylabel("cumulative pseudo-regret")
    axis.set_title(title or f"{_kind(result.environment)} arms", fontsize=11)
    axis.text(
        0.99,
        0.02,
        f"mean and 95% interval over {result.replications} replications",
        transform=axis.transAxes,
        ha="right",
        va="bottom",
        fontsize=8,
        color="0.35",
    )
    axis.grid(True, alpha=0.3)
    axis.legend(loc="upper left", fontsize=9)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path)
    return figure
